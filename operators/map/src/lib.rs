//! `map`: transforms each record's value, keeping its key and timestamp.
//!
//! Config: `transform = "uppercase" | "lowercase" | "trim" | "json-field"`.
//! With `"json-field"`, `field = "name"` picks that field of a JSON object
//! value; strings are emitted as plain text, other values as JSON. Records
//! without the field are dropped.

use weir_sdk::{Context, Emitter, Error, Json, Operator, Record, Result};

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
    buf: String,
}

impl Operator for Map {
    type In<'a> = &'a str;

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config: Config = ctx.config()?;
        self.transform = config.transform;
        if let Transform::JsonField = config.transform {
            self.field = config.field.ok_or_else(|| Error::msg("map: `json-field` needs `field` in its config"))?;
        }
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
        match self.transform {
            Transform::Uppercase if rec.value.is_ascii() => {
                self.buf.clear();
                self.buf.push_str(rec.value);
                self.buf.make_ascii_uppercase();
                out.emit(self.buf.as_str());
            }
            Transform::Uppercase => out.emit(&rec.value.to_uppercase()),
            Transform::Lowercase => out.emit(&rec.value.to_lowercase()),
            Transform::Trim => out.emit(rec.value.trim()),
            Transform::JsonField => {
                let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(rec.value)?;
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

weir_sdk::export!(Map);
