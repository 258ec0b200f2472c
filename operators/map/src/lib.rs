//! `map`: transforms each record's value, keeping its key and timestamp.
//!
//! Config: `transform = "uppercase" | "lowercase" | "trim" | "json-field"`.
//! With `"json-field"`, `field = "name"` picks that field of a JSON object
//! value; strings are emitted as plain text, other values as JSON. Records
//! without the field are dropped.

use weir_sdk::{Context, Emitter, Encode, Error, Json, Operator, Record, Result};

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Transform {
    #[default]
    Uppercase,
    Lowercase,
    Trim,
    JsonField,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    transform: Transform,
    field: Option<String>,
}

#[derive(Default)]
struct Map {
    transform: Transform,
    field: String,
}

/// ASCII `text` in upper (or lower) case, written straight into the output
/// frame and cased there: one copy, no buffer in between.
struct AsciiCase<'a> {
    text: &'a [u8],
    upper: bool,
}

impl Encode for AsciiCase<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(self.text);
        if self.upper {
            out[at..].make_ascii_uppercase();
        } else {
            out[at..].make_ascii_lowercase();
        }
    }
}

impl Operator for Map {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config: Config = ctx.config()?;
        self.transform = config.transform;
        if let Transform::JsonField = config.transform {
            self.field = config.field.ok_or_else(|| Error::msg("map: `json-field` needs `field` in its config"))?;
        }
        Ok(())
    }

    /// Bytes in, so ASCII values (the common case) are checked once, by
    /// `is_ascii`, rather than by a UTF-8 decode and then again.
    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let ascii = rec.value.is_ascii();
        match self.transform {
            Transform::Uppercase | Transform::Lowercase if ascii => {
                out.emit(&AsciiCase { text: rec.value, upper: matches!(self.transform, Transform::Uppercase) });
            }
            Transform::Uppercase => out.emit(&text(rec.value)?.to_uppercase()),
            Transform::Lowercase => out.emit(&text(rec.value)?.to_lowercase()),
            Transform::Trim => out.emit(text(rec.value)?.trim()),
            Transform::JsonField => {
                let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(rec.value)?;
                match object.get(&self.field) {
                    Some(serde_json::Value::String(text)) => out.emit(text.as_str()),
                    Some(other) => out.emit(&Json(other)),
                    None => {}
                }
            }
        }
        Ok(())
    }
}

/// A value as text; the transforms other than `json-field` need UTF-8.
fn text(value: &[u8]) -> Result<&str> {
    core::str::from_utf8(value).map_err(|_| Error::msg("map: the record value is not UTF-8 text"))
}

weir_sdk::export!(Map);
