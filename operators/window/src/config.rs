//! The `window` operator's config: the job file's table (as JSON), checked
//! field by field, so that an error names the field and what it accepts.

use serde_json::Value;
use weir_sdk::window::Windows;
use weir_sdk::{Error, Result};

use crate::aggregate::{Function, Numeric};

/// The table as written; every field is read by hand below.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    kind: Option<Value>,
    size: Option<Value>,
    slide: Option<Value>,
    gap: Option<Value>,
    offset: Option<Value>,
    aggregate: Option<Value>,
    field: Option<Value>,
    allowed_lateness: Option<Value>,
}

/// Most sliding windows one record may fall in (`size / slide`): more is
/// almost surely a mistake of units, and costs that much per record.
const MAX_WINDOWS_PER_RECORD: i64 = 1000;

/// What the operator was configured to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) kind: Kind,
    pub(crate) function: Function,
    /// The dotted path of the aggregated field, split; empty for `count`.
    pub(crate) field: Vec<String>,
    /// Allowed lateness, ms.
    pub(crate) lateness: i64,
}

/// The windows, durations in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tumbling { size: i64, offset: i64 },
    Sliding { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
}

impl Config {
    /// Reads and checks the table.
    ///
    /// # Errors
    /// When a field is missing, unknown, of the wrong kind or out of range;
    /// the message names it and what it accepts.
    pub(crate) fn parse(table: Value) -> Result<Self> {
        let raw: Raw = serde_json::from_value(table).map_err(|e| Error::msg(format!("window: invalid config: {e}")))?;
        let kind = kind(&raw)?;
        let function = match one_of("aggregate", raw.aggregate.as_ref(), &["count", "sum", "min", "max", "avg"])? {
            None | Some("count") => Function::Count,
            Some("sum") => Function::Sum,
            Some("min") => Function::Min,
            Some("max") => Function::Max,
            Some(_) => Function::Avg,
        };
        let field = field(function, raw.field.as_ref())?;
        let lateness = duration("allowed_lateness", raw.allowed_lateness.as_ref())?.unwrap_or(0);
        Ok(Self { kind, function, field, lateness })
    }

    /// The windows this config describes.
    pub(crate) fn windows(&self) -> Windows<Numeric> {
        let aggregate = Numeric(self.function);
        let windows = match self.kind {
            Kind::Tumbling { size, offset } => Windows::tumbling(size, aggregate).offset(offset),
            Kind::Sliding { size, slide, offset } => Windows::sliding(size, slide, aggregate).offset(offset),
            Kind::Session { gap } => Windows::session(gap, aggregate),
        };
        windows.allowed_lateness(self.lateness)
    }
}

/// `kind` and the durations it needs (and only those).
fn kind(raw: &Raw) -> Result<Kind> {
    let kind = one_of("kind", raw.kind.as_ref(), &["tumbling", "sliding", "session"])?;
    let kind =
        kind.ok_or_else(|| Error::msg(r#"window: `kind` is required: "tumbling", "sliding" or "session""#.to_owned()))?;
    let forbid = |field: &str, value: &Option<Value>| match value {
        Some(_) => Err(Error::msg(format!("window: `{field}` does not apply to {kind} windows"))),
        None => Ok(()),
    };
    let offset = || Ok::<_, Error>(duration("offset", raw.offset.as_ref())?.unwrap_or(0));
    match kind {
        "tumbling" => {
            forbid("slide", &raw.slide)?;
            forbid("gap", &raw.gap)?;
            Ok(Kind::Tumbling { size: positive("size", raw.size.as_ref(), kind)?, offset: offset()? })
        }
        "sliding" => {
            forbid("gap", &raw.gap)?;
            let size = positive("size", raw.size.as_ref(), kind)?;
            let slide = positive("slide", raw.slide.as_ref(), kind)?;
            let per_record = (size - 1) / slide + 1;
            if per_record > MAX_WINDOWS_PER_RECORD {
                return Err(Error::msg(format!(
                    "window: `size` / `slide` puts each record in {per_record} windows; at most \
                     {MAX_WINDOWS_PER_RECORD} are allowed (make `slide` larger)"
                )));
            }
            Ok(Kind::Sliding { size, slide, offset: offset()? })
        }
        _ => {
            forbid("size", &raw.size)?;
            forbid("slide", &raw.slide)?;
            forbid("offset", &raw.offset)?;
            Ok(Kind::Session { gap: positive("gap", raw.gap.as_ref(), kind)? })
        }
    }
}

/// `field`, split at dots: required by every aggregate but `count`.
fn field(function: Function, value: Option<&Value>) -> Result<Vec<String>> {
    let path = match (function, value) {
        (Function::Count, None) => return Ok(Vec::new()),
        (Function::Count, Some(_)) => {
            return Err(Error::msg(
                "window: `field` is for the aggregates \"sum\", \"min\", \"max\" and \"avg\"; `count` counts \
                 records (set `aggregate`)",
            ));
        }
        (_, None) => {
            return Err(Error::msg(format!(
                "window: aggregate \"{}\" needs `field`: the record's JSON field to aggregate, e.g. \"amount\" \
                 or \"order.total\"",
                function.name()
            )));
        }
        (_, Some(Value::String(path))) => path,
        (_, Some(other)) => {
            return Err(Error::msg(format!("window: `field` must be a string like \"order.total\", not {other}")));
        }
    };
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(Error::msg(format!(
            "window: `field` must be a field name or a dotted path like \"order.total\", not {path:?}"
        )));
    }
    Ok(parts)
}

/// A text field that must be one of `accepted`, if set.
fn one_of<'a>(field: &str, value: Option<&'a Value>, accepted: &[&str]) -> Result<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if accepted.contains(&s.as_str()) => Ok(Some(s)),
        Some(other) => {
            let accepted: Vec<String> = accepted.iter().map(|a| format!("{a:?}")).collect();
            Err(Error::msg(format!("window: `{field}` must be one of {}, not {other}", accepted.join(", "))))
        }
    }
}

/// A duration that `kind` windows need, more than 0.
fn positive(field: &str, value: Option<&Value>, kind: &str) -> Result<i64> {
    match duration(field, value)? {
        None => Err(Error::msg(format!("window: {kind} windows need `{field}`, a duration like \"1m\""))),
        Some(0) => Err(Error::msg(format!("window: `{field}` must be more than 0"))),
        Some(ms) => Ok(ms),
    }
}

/// A duration in ms, if set: `"500ms"`, `"10s"`, `"1m"`, `"2h"`, `"1d"`,
/// combinations like `"1h30m"`, or a number of ms.
fn duration(field: &str, value: Option<&Value>) -> Result<Option<i64>> {
    let parsed = match value {
        None => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().filter(|ms| *ms >= 0),
        Some(Value::String(s)) => parse_duration(s),
        Some(_) => None,
    };
    parsed.map(Some).ok_or_else(|| {
        Error::msg(format!(
            "window: `{field}` must be a duration like \"500ms\", \"10s\", \"1m\", \"2h\" or \"1d\" (or a whole \
             number of ms), not {}",
            value.map(Value::to_string).unwrap_or_default()
        ))
    })
}

/// `"1h30m"` → 5_400_000; `None` if it is not a duration.
fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let mut rest = text;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let units = rest[digits..].find(|c: char| c.is_ascii_digit()).map_or(rest.len(), |u| u + digits);
        let n: i64 = rest[..digits].parse().ok()?;
        let ms_per = match rest[digits..units].trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms_per)?)?;
        rest = rest[units..].trim_start();
    }
    (!text.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(config: &str) -> Result<Config, String> {
        Config::parse(serde_json::from_str(config).unwrap()).map_err(|e| e.to_string())
    }

    /// Durations read as the job-file examples write them.
    #[test]
    fn durations_read_like_humans_write_them() {
        for (text, ms) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("1m", 60_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("1m 30s", 90_000),
            ("250", 250),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration(text), Some(ms), "{text}");
        }
        for bad in ["", "ten", "5w", "1.5s", "-1s", "s", "1 minute", "99999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    /// Each kind takes its durations, with defaults for the rest.
    #[test]
    fn valid_configs_parse() {
        let c = parse(r#"{"kind":"tumbling","size":"1m"}"#).unwrap();
        assert_eq!(
            c,
            Config {
                kind: Kind::Tumbling { size: 60_000, offset: 0 },
                function: Function::Count,
                field: vec![],
                lateness: 0
            }
        );
        let c = parse(r#"{"kind":"sliding","size":"1m","slide":10000,"offset":"5s","aggregate":"avg","field":"a.b"}"#)
            .unwrap();
        assert_eq!(c.kind, Kind::Sliding { size: 60_000, slide: 10_000, offset: 5_000 });
        assert_eq!((c.function, c.field), (Function::Avg, vec!["a".to_owned(), "b".to_owned()]));
        let c =
            parse(r#"{"kind":"session","gap":"30m","aggregate":"max","field":"x","allowed_lateness":"10s"}"#).unwrap();
        assert_eq!((c.kind, c.lateness), (Kind::Session { gap: 1_800_000 }, 10_000));
    }

    /// Every bad config fails, naming the field and what it accepts.
    #[test]
    fn bad_configs_name_the_field_and_the_accepted_values() {
        for (config, needles) in [
            (r#"{}"#, &["`kind` is required", "\"tumbling\", \"sliding\" or \"session\""][..]),
            (
                r#"{"kind":"hopping","size":"1m"}"#,
                &["`kind` must be one of \"tumbling\", \"sliding\", \"session\", not \"hopping\""],
            ),
            (r#"{"kind":"tumbling"}"#, &["tumbling windows need `size`"]),
            (r#"{"kind":"tumbling","size":"0s"}"#, &["`size` must be more than 0"]),
            (r#"{"kind":"tumbling","size":"1 minute"}"#, &["`size` must be a duration like", "\"1 minute\""]),
            (r#"{"kind":"tumbling","size":true}"#, &["`size` must be a duration", "not true"]),
            (r#"{"kind":"tumbling","size":-5}"#, &["`size` must be a duration", "not -5"]),
            (r#"{"kind":"tumbling","size":"1m","gap":"1m"}"#, &["`gap` does not apply to tumbling windows"]),
            (r#"{"kind":"sliding","size":"1m"}"#, &["sliding windows need `slide`"]),
            (r#"{"kind":"sliding","size":"1d","slide":"1s"}"#, &["86400 windows", "at most 1000"]),
            (r#"{"kind":"session","size":"1m","gap":"1m"}"#, &["`size` does not apply to session windows"]),
            (r#"{"kind":"session"}"#, &["session windows need `gap`"]),
            (
                r#"{"kind":"session","gap":"1m","aggregate":"median"}"#,
                &["`aggregate` must be one of \"count\", \"sum\", \"min\", \"max\", \"avg\", not \"median\""],
            ),
            (r#"{"kind":"session","gap":"1m","aggregate":"sum"}"#, &["\"sum\" needs `field`"]),
            (r#"{"kind":"session","gap":"1m","field":"x"}"#, &["`field` is for the aggregates"]),
            (r#"{"kind":"session","gap":"1m","aggregate":"sum","field":"a..b"}"#, &["`field` must be", "\"a..b\""]),
            (r#"{"kind":"session","gap":"1m","aggregate":"sum","field":3}"#, &["`field` must be a string", "not 3"]),
            (r#"{"kind":"session","gap":"1m","allowed_lateness":"soon"}"#, &["`allowed_lateness` must be a duration"]),
            (r#"{"kind":"session","gap":"1m","lateness":"1s"}"#, &["unknown field `lateness`", "`allowed_lateness`"]),
        ] {
            let err = parse(config).unwrap_err();
            for needle in needles {
                assert!(err.contains(needle), "{config}: {needle:?} missing from: {err}");
            }
            assert!(err.starts_with("window: "), "{err}");
        }
    }
}
