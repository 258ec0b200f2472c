//! Keys and event timestamps read from the records themselves, at the
//! source: `key = { json = "user" }`, `timestamp = { csv = 1, format =
//! "epoch-s" }`, … — so a job needs no custom operator just to key a stream
//! or to give it event time. Applied to every batch a source produces,
//! before it leaves the source task.

use std::borrow::Cow;
use std::time::UNIX_EPOCH;

use weir_sdk::frame;

use crate::Error;
use crate::job::spec::{FieldSpec, OnBadRecord, TimeFormat};

/// Where a value is in a record.
#[derive(Debug, Clone)]
enum Field {
    /// A JSON object's field, by path (`a.b` → `["a", "b"]`).
    Json(Vec<String>),
    /// A column of separated text (no quoting), 0-based.
    Csv { column: usize, separator: u8 },
    /// The first capture group of a regex (the whole match without one).
    Regex(regex::bytes::Regex),
}

impl Field {
    fn new(spec: &FieldSpec) -> Result<Self, String> {
        match (&spec.json, spec.csv, &spec.regex) {
            (Some(path), None, None) => {
                if path.is_empty() {
                    return Err("json = \"\" names no field".into());
                }
                Ok(Self::Json(path.split('.').map(str::to_owned).collect()))
            }
            (None, Some(column), None) => {
                let separator = spec.separator.unwrap_or(',');
                let separator = u8::try_from(separator)
                    .ok()
                    .filter(u8::is_ascii)
                    .ok_or_else(|| format!("separator {separator:?} must be one ASCII character"))?;
                Ok(Self::Csv { column, separator })
            }
            (None, None, Some(re)) => {
                Ok(Self::Regex(regex::bytes::Regex::new(re).map_err(|e| format!("regex {re:?} is not valid: {e}"))?))
            }
            _ => Err("set exactly one of `json = \"field\"`, `csv = COLUMN` or `regex = \"…\"`".into()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Json(path) => format!("JSON field `{}`", path.join(".")),
            Self::Csv { column, .. } => format!("column {column}"),
            Self::Regex(re) => format!("regex `{}`", re.as_str()),
        }
    }

    /// The field's text in `value` (`json`: the parsed record, if parsed).
    fn pick<'a>(&self, value: &'a [u8], json: Option<&serde_json::Value>) -> Option<Cow<'a, [u8]>> {
        match self {
            Self::Json(path) => {
                let mut at = json?;
                for part in path {
                    at = at.get(part)?;
                }
                let text = match at {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some(Cow::Owned(text.into_bytes()))
            }
            Self::Csv { column, separator } => {
                value.split(|b| b == separator).nth(*column).map(|c| Cow::Borrowed(c.trim_ascii()))
            }
            Self::Regex(re) => {
                let caps = re.captures(value)?;
                caps.get(1).or_else(|| caps.get(0)).map(|m| Cow::Borrowed(m.as_bytes()))
            }
        }
    }
}

/// A time in `format` as ms since the epoch.
fn parse_time(text: &[u8], format: TimeFormat) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.trim();
    match format {
        TimeFormat::EpochMs => text.parse::<i64>().ok().or_else(|| float_ms(text, 1.0)),
        TimeFormat::EpochS => float_ms(text, 1000.0),
        TimeFormat::Rfc3339 => {
            let t = humantime::parse_rfc3339_weak(text).ok()?;
            match t.duration_since(UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_millis()).ok(),
                Err(before) => i64::try_from(before.duration().as_millis()).ok().map(|ms| -ms),
            }
        }
    }
}

fn float_ms(text: &str, scale: f64) -> Option<i64> {
    let ms = text.parse::<f64>().ok()? * scale;
    // Finite and within i64 (NaN fails the comparison).
    (ms.abs() < 9.0e18).then(|| ms.round() as i64)
}

/// The side output of a source that bad records go to with
/// `on_bad_record = "side-output"`.
pub const ERRORS: &str = "errors";

/// A source's key and timestamp extraction.
#[derive(Debug, Clone)]
pub struct Extractor {
    node: String,
    key: Option<Field>,
    timestamp: Option<(Field, TimeFormat)>,
    on_bad: OnBadRecord,
    skipped: u64,
    /// Reused output buffer.
    out: Vec<u8>,
    /// For each main-output record of the last batch, its index in the input.
    kept: Vec<u32>,
}

impl Extractor {
    /// The extraction `key` and `timestamp` describe for source `node`
    /// (`None` when neither is set); `Err` is the message.
    pub fn new(
        node: &str,
        key: Option<&FieldSpec>,
        timestamp: Option<&FieldSpec>,
        on_bad: Option<OnBadRecord>,
    ) -> Result<Option<Self>, String> {
        if key.is_none() && timestamp.is_none() {
            return Ok(None);
        }
        if key.is_some_and(|k| k.format.is_some()) {
            return Err("key: `format` is for timestamps".into());
        }
        let key = key.map(Field::new).transpose().map_err(|e| format!("key: {e}"))?;
        let timestamp = timestamp
            .map(|t| Field::new(t).map(|f| (f, t.format.unwrap_or_default())))
            .transpose()
            .map_err(|e| format!("timestamp: {e}"))?;
        Ok(Some(Self {
            node: node.into(),
            key,
            timestamp,
            on_bad: on_bad.unwrap_or_default(),
            skipped: 0,
            out: Vec::new(),
            kept: Vec::new(),
        }))
    }

    /// The source's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records skipped (or sent to `errors`) so far for having no
    /// readable key or timestamp.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The batch the last [`apply`](Self::apply) made.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// For each main-output record of the last [`apply`](Self::apply), its
    /// index in that call's input (records skipped or sent to `errors` have none).
    pub fn kept(&self) -> &[u32] {
        &self.kept
    }

    /// What happened to bad records, for the log at the end; `None` if there were none.
    pub fn summary(&self) -> Option<String> {
        let what = "record(s) without a readable key or timestamp";
        match (self.skipped, self.on_bad) {
            (0, _) | (_, OnBadRecord::Fail) => None,
            (n, OnBadRecord::Skip) => Some(format!("skipped {n} {what}")),
            (n, OnBadRecord::SideOutput) => Some(format!("sent {n} {what} to its side output `{ERRORS}`")),
        }
    }

    /// Rewrites `batch` with each record's key and timestamp set from its
    /// value; returns the new batch (borrowed until the next call).
    ///
    /// # Errors
    /// A record without a readable key or timestamp, unless skipped.
    pub fn apply(&mut self, batch: &[u8]) -> Result<&[u8], Error> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(batch.len() + batch.len() / 4);
        let parse_json =
            matches!(self.key, Some(Field::Json(_))) || matches!(self.timestamp, Some((Field::Json(_), _)));
        self.kept.clear();
        for (index, rec) in frame::read(batch).enumerate() {
            let rec = rec.map_err(|e| Error::Internal(format!("source `{}` framed a bad batch: {e}", self.node)))?;
            let json = if parse_json { serde_json::from_slice::<serde_json::Value>(rec.value).ok() } else { None };
            let key = match &self.key {
                Some(field) => match field.pick(rec.value, json.as_ref()) {
                    Some(k) => Some(k),
                    None => {
                        self.bad(&mut out, &rec, &format!("no key at {}", field.describe()))?;
                        continue;
                    }
                },
                None => rec.key.map(Cow::Borrowed),
            };
            let timestamp = match &self.timestamp {
                Some((field, format)) => {
                    match field.pick(rec.value, json.as_ref()).and_then(|t| parse_time(&t, *format)) {
                        Some(t) => Some(t),
                        None => {
                            let what = format!("no {} timestamp at {}", format.name(), field.describe());
                            self.bad(&mut out, &rec, &what)?;
                            continue;
                        }
                    }
                }
                None => rec.timestamp,
            };
            frame::write(&mut out, key.as_deref(), timestamp, rec.value);
            self.kept.push(index as u32);
        }
        self.out = out;
        Ok(&self.out)
    }

    /// A record without what was asked for: fail, count and drop it, or
    /// send it on (as it came) to the side output `errors`.
    fn bad(&mut self, out: &mut Vec<u8>, rec: &frame::RecordRef<'_>, what: &str) -> Result<(), Error> {
        let shown = preview(rec.value);
        match self.on_bad {
            OnBadRecord::Fail => Err(Error::InvalidJob(format!(
                "source `{}`: the record {shown} has {what}; fix the input, or set on_bad_record = \"skip\" to \
                 drop such records (or \"side-output\" to send them to `{}.errors`)",
                self.node, self.node
            ))),
            OnBadRecord::SideOutput => {
                self.skipped += 1;
                frame::write_to(out, ERRORS.as_bytes(), rec.key, rec.timestamp, rec.value);
                Ok(())
            }
            OnBadRecord::Skip => {
                self.skipped += 1;
                if self.skipped == 1 {
                    tracing::warn!(
                        "source `{}`: skipping records with {what} (on_bad_record = \"skip\"), first {shown}",
                        self.node
                    );
                }
                Ok(())
            }
        }
    }
}

/// A short escaped look at a record value (bounded and escaped as any
/// untrusted text is, see `wasm::text`).
fn preview(value: &[u8]) -> String {
    const SHOWN: usize = 60;
    let head = String::from_utf8_lossy(&value[..value.len().min(SHOWN)]);
    let more = if value.len() > SHOWN { format!("… ({} bytes)", value.len()) } else { String::new() };
    format!("\"{}\"{more}", crate::wasm::text::untrusted(&head, SHOWN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> FieldSpec {
        toml::from_str(toml_text).unwrap()
    }

    /// A record's key and timestamp after extraction.
    type Stamped = (Option<String>, Option<i64>);

    fn one(e: &mut Extractor, value: &str) -> Result<Option<Stamped>, Error> {
        let mut batch = Vec::new();
        frame::write(&mut batch, None, None, value.as_bytes());
        let out = e.apply(&batch)?.to_vec();
        Ok(frame::read(&out).next().map(|r| {
            let r = r.unwrap();
            (r.key.map(|k| String::from_utf8_lossy(k).into_owned()), r.timestamp)
        }))
    }

    #[test]
    fn json_csv_and_regex_fields() {
        let mut e = Extractor::new(
            "s",
            Some(&spec("json = \"user.id\"")),
            Some(&spec("json = \"ts\"\nformat = \"epoch-s\"")),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(one(&mut e, r#"{"user":{"id":7},"ts":1.5}"#).unwrap(), Some((Some("7".into()), Some(1500))));
        let mut e = Extractor::new("s", Some(&spec("csv = 0")), Some(&spec("csv = 2\nformat = \"rfc3339\"")), None)
            .unwrap()
            .unwrap();
        assert_eq!(one(&mut e, "alice, x, 1970-01-01T00:00:01Z").unwrap(), Some((Some("alice".into()), Some(1000))));
        let mut e = Extractor::new("s", None, Some(&spec(r#"regex = "at (\\d+)""#)), None).unwrap().unwrap();
        assert_eq!(one(&mut e, "clicked at 42 ms").unwrap(), Some((None, Some(42))));
    }

    #[test]
    fn bad_records_fail_or_are_skipped_and_counted() {
        let ts = spec("json = \"ts\"");
        let mut fail = Extractor::new("clicks", None, Some(&ts), None).unwrap().unwrap();
        let err = one(&mut fail, r#"{"ts":"soon"}"#).unwrap_err().to_string();
        assert!(err.contains("source `clicks`") && err.contains("epoch-ms") && err.contains("soon"), "{err}");
        let mut skip = Extractor::new("clicks", None, Some(&ts), Some(OnBadRecord::Skip)).unwrap().unwrap();
        assert_eq!(one(&mut skip, "not json").unwrap(), None);
        assert_eq!(skip.skipped(), 1);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Extractor::new("s", Some(&spec("json = \"a\"\ncsv = 1")), None, None).is_err());
        assert!(Extractor::new("s", Some(&spec("json = \"a\"\nformat = \"epoch-s\"")), None, None).is_err());
        assert!(Extractor::new("s", None, Some(&spec("regex = \"(\"")), None).is_err());
        assert!(Extractor::new("s", None, None, None).unwrap().is_none());
    }
}
