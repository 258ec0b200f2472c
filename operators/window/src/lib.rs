//! `window`: keyed event-time windows. Each record is added to its key's
//! windows by its timestamp; when the watermark passes a window, one line
//! is emitted for it, keyed by its key at timestamp `end - 1`:
//!
//! ```text
//! {"key":"<key as UTF-8>","start":<ms>,"end":<ms>,"value":<number>}
//! ```
//!
//! Config (durations as `"500ms"`, `"10s"`, `"1m"`, `"2h"`, `"1d"`,
//! combinations like `"1h30m"`, or a whole number of ms):
//!
//! - `kind`: `"tumbling"` (needs `size`), `"sliding"` (`size` and `slide`;
//!   at most 1000 windows per record) or `"session"` (`gap`: a key's
//!   session ends after that long without a record); `offset` shifts
//!   tumbling and sliding windows;
//! - `aggregate`: `"count"` (the default), `"sum"`, `"min"`, `"max"` or
//!   `"avg"`; all but `count` need `field`, the JSON field of the value to
//!   aggregate (a dotted path like `"order.total"`). Counts, and sums, mins
//!   and maxes of integers, print as integers; `avg` as a float;
//! - `allowed_lateness` (default `"0s"`): how long after a window fired a
//!   record for it still counts — the window then fires again, updated.
//!
//! Side outputs: `late` gets each record that came after all its windows
//! closed (fired, plus the allowed lateness), unchanged; `errors` gets each
//! record that cannot be aggregated — no timestamp, a value that is not
//! JSON, a `field` that is missing or not a number — as
//! `{"error":"<why>","value":"<the value as text>"}` with its key and
//! timestamp. Read them with `input = "<this node>.late"` (or `.errors`);
//! unread, they are dropped.
//!
//! Run it behind a `partition = "key"` edge (a record without a key counts
//! for the empty key). State: the open windows in the keyed state
//! `windows`, and their timers, which the SDK keeps; both follow their key
//! groups on a rescale. At the end of bounded input every window fires.

mod aggregate;
mod config;

use weir_sdk::window::Windows;
use weir_sdk::{Context, Emitter, Json, Operator, Record, Result, StateReader, StateWriter, Timer};

use crate::aggregate::{Number, Numeric, number_at, shorten};
use crate::config::Config;

/// The side output of records that cannot be aggregated.
const ERRORS: &str = "errors";

struct Window {
    windows: Windows<Numeric>,
    /// The aggregated field's path; empty for `count`, which reads none.
    field: Vec<String>,
    /// Said in the log that records go to `errors`.
    warned: bool,
}

impl Default for Window {
    fn default() -> Self {
        // Replaced in `init`, which always comes first.
        let config = Config {
            kind: config::Kind::Tumbling { size: 1, offset: 0 },
            function: aggregate::Function::Count,
            field: Vec::new(),
            lateness: 0,
        };
        Self { windows: config.windows(), field: Vec::new(), warned: false }
    }
}

#[derive(serde::Serialize)]
struct Failed<'a> {
    error: &'a str,
    value: &'a str,
}

impl Window {
    /// Sends `rec` to [`ERRORS`], saying `why` (and, the first time, in
    /// the log: if nothing reads `errors`, the record is gone).
    fn reject(&mut self, rec: &Record<'_, &[u8]>, why: &str, out: &mut Emitter<'_>) {
        let value = String::from_utf8_lossy(rec.value);
        out.emit_to(ERRORS, &Json(Failed { error: why, value: &value }));
        if !std::mem::replace(&mut self.warned, true) {
            #[cfg(target_arch = "wasm32")]
            weir_sdk::log::warn(&format!(
                "sent a record to the side output `errors` ({why}); records there are dropped unless a node \
                 reads them with input = \"<this node>.errors\" (only this first one is logged)"
            ));
        }
    }
}

impl Operator for Window {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config = Config::parse(ctx.config()?)?;
        self.windows = config.windows();
        self.field = config.field;
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        if rec.timestamp.is_none() {
            let why = "the record has no timestamp: windows need event time (set the source's `timestamp`)";
            self.reject(&rec, why, out);
            return Ok(());
        }
        let input = if self.field.is_empty() {
            Number::RECORD
        } else {
            match number_at(rec.value, &self.field) {
                Ok(number) => number,
                Err(why) => {
                    self.reject(&rec, &shorten(&why), out);
                    return Ok(());
                }
            }
        };
        self.windows.add(&rec, &input, out)
    }

    fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<()> {
        self.windows.on_timer(&timer, out)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.windows.snapshot_into(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.windows.restore_from(state)
    }
}

weir_sdk::export!(Window);

#[cfg(test)]
mod tests {
    use weir_sdk::bindings::weir::operator::types::InstanceInfo;
    use weir_sdk::frame;
    use weir_sdk::runtime::{Runtime, only_subtask};

    use super::*;

    /// The only subtask of the operator, in attempt `attempt`.
    fn info(attempt: u32) -> InstanceInfo {
        InstanceInfo { attempt, ..only_subtask("window") }
    }

    fn started(config: &str) -> Result<Runtime<Window>, String> {
        let mut rt = Runtime::default();
        rt.init(info(0), config.into(), None)?;
        Ok(rt)
    }

    fn batch(records: &[(&str, Option<i64>, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, ts, value) in records {
            frame::write(&mut out, Some(key.as_bytes()), *ts, value.as_bytes());
        }
        out
    }

    /// Each record as `[output:]value@timestamp` (`-`: none).
    fn shown(batch: &[u8]) -> Vec<String> {
        frame::read(batch)
            .map(|r| {
                let r = r.unwrap();
                let to = r.output.map(|o| format!("{}:", String::from_utf8_lossy(o))).unwrap_or_default();
                let at = r.timestamp.map_or_else(|| "-".to_owned(), |t| t.to_string());
                format!("{to}{}@{at}", String::from_utf8_lossy(r.value))
            })
            .collect()
    }

    /// Sums per tumbling window, in the documented format and field order.
    #[test]
    fn tumbling_sums_emit_one_line_per_window() {
        let mut rt = started(r#"{"kind":"tumbling","size":"1s","aggregate":"sum","field":"order.amount"}"#).unwrap();
        let input = [
            ("ada", Some(100), r#"{"order":{"amount":5}}"#),
            ("ada", Some(900), r#"{"order":{"amount":7}}"#),
            ("bob", Some(1500), r#"{"order":{"amount":0.5}}"#),
        ];
        assert!(rt.process(&batch(&input)).unwrap().is_empty());
        assert_eq!(shown(&rt.on_watermark(999).unwrap()), [r#"{"key":"ada","start":0,"end":1000,"value":12}@999"#]);
        assert_eq!(shown(&rt.finish().unwrap()), [r#"{"key":"bob","start":1000,"end":2000,"value":0.5}@1999"#]);
    }

    /// Sessions count per key, and merge.
    #[test]
    fn sessions_count_per_key() {
        let mut rt = started(r#"{"kind":"session","gap":"10s"}"#).unwrap();
        let input = [("k", Some(0), "a"), ("k", Some(9_000), "b"), ("k", Some(30_000), "c"), ("j", Some(0), "d")];
        rt.process(&batch(&input)).unwrap();
        assert_eq!(
            shown(&rt.on_watermark(20_000).unwrap()),
            [
                r#"{"key":"j","start":0,"end":10000,"value":1}@9999"#,
                r#"{"key":"k","start":0,"end":19000,"value":2}@18999"#
            ]
        );
    }

    /// Late records go to `late` unchanged; ones that cannot be aggregated
    /// to `errors`, saying why; neither fails the job.
    #[test]
    fn late_and_bad_records_go_to_side_outputs() {
        let mut rt = started(r#"{"kind":"tumbling","size":10,"aggregate":"max","field":"v"}"#).unwrap();
        rt.process(&batch(&[("k", Some(1), r#"{"v":3}"#)])).unwrap();
        rt.on_watermark(9).unwrap();
        let input = [
            ("k", Some(5), r#"{"v":4}"#),
            ("k", None, r#"{"v":4}"#),
            ("k", Some(12), r#"{"w":4}"#),
            ("k", Some(12), r#"{"v":"four"}"#),
            ("k", Some(12), "not json"),
        ];
        let out = shown(&rt.process(&batch(&input)).unwrap());
        assert_eq!(out[0], r#"late:{"v":4}@5"#);
        assert!(out[1].starts_with(r#"errors:{"error":"the record has no timestamp"#), "{}", out[1]);
        assert_eq!(out[2], r#"errors:{"error":"the field \"v\" is missing","value":"{\"w\":4}"}@12"#);
        assert!(out[3].contains(r#"is not a number: it is \"four\""#), "{}", out[3]);
        assert!(out[4].contains("the value is not JSON"), "{}", out[4]);
        assert_eq!(out.len(), 5);
    }

    /// Allowed lateness keeps a fired window open: a record for it fires
    /// it again, updated; avg prints as a float.
    #[test]
    fn allowed_lateness_refires_with_the_update() {
        let mut rt =
            started(r#"{"kind":"tumbling","size":"10ms","aggregate":"avg","field":"v","allowed_lateness":"5ms"}"#)
                .unwrap();
        rt.process(&batch(&[("k", Some(1), r#"{"v":2}"#)])).unwrap();
        assert_eq!(shown(&rt.on_watermark(9).unwrap()), [r#"{"key":"k","start":0,"end":10,"value":2.0}@9"#]);
        let out = rt.process(&batch(&[("k", Some(2), r#"{"v":3}"#)])).unwrap();
        assert_eq!(shown(&out), [r#"{"key":"k","start":0,"end":10,"value":2.5}@9"#]);
        rt.on_watermark(14).unwrap();
        assert_eq!(shown(&rt.process(&batch(&[("k", Some(3), r#"{"v":3}"#)])).unwrap()), [r#"late:{"v":3}@3"#]);
    }

    /// Open windows survive a checkpoint and fire after the restore.
    #[test]
    fn windows_resume_from_a_checkpoint() {
        let config = r#"{"kind":"sliding","size":"10ms","slide":"5ms"}"#;
        let mut first = started(config).unwrap();
        first.process(&batch(&[("k", Some(7), "")])).unwrap();
        let state = first.snapshot(1).unwrap();
        let mut second = Runtime::<Window>::default();
        second.init(info(1), config.into(), Some(state)).unwrap();
        assert_eq!(
            shown(&second.on_watermark(100).unwrap()),
            [r#"{"key":"k","start":0,"end":10,"value":1}@9"#, r#"{"key":"k","start":5,"end":15,"value":1}@14"#]
        );
    }

    /// A bad config stops the operator in `init`, naming the field.
    #[test]
    fn a_bad_config_fails_init() {
        let err = started(r#"{"kind":"tumbling","size":"1m","aggregate":"sum"}"#).err().unwrap();
        assert!(err.contains("\"sum\" needs `field`"), "{err}");
        let err = started(r#"{"kind":"rolling"}"#).err().unwrap();
        assert!(err.contains("`kind` must be one of \"tumbling\", \"sliding\", \"session\""), "{err}");
    }
}
