//! `count`: a keyed running count. For each input record it adds one to its
//! key's count and emits the new count as `{"key":"<key>","count":<n>}`,
//! keyed by the same key.
//!
//! State: one `u64` per key, in [`KeyedState`], so counts survive failures
//! and follow their key groups when the operator is rescaled.

use weir_sdk::{Emitter, Json, KeyedState, Operator, Record, Result, StateReader, StateWriter};

#[derive(Default)]
struct Count {
    counts: KeyedState<u64>,
    /// The output line being built (reused: no allocation per record).
    line: String,
}

#[derive(serde::Serialize)]
struct Update<'a> {
    key: &'a str,
    count: u64,
}

impl Operator for Count {
    type In<'a> = &'a [u8];

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let key = rec.key.unwrap_or_default();
        let n = self.counts.get_or_default(key);
        *n += 1;
        let count = *n;
        let key = core::str::from_utf8(key).map_err(|_| weir_sdk::Error::msg("count: record key is not UTF-8"))?;
        if key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            // Needs JSON escaping: let serde do it.
            out.emit(&Json(Update { key, count }));
            return Ok(());
        }
        // The hot path, by hand: `{"key":"<key>","count":<n>}`.
        self.line.clear();
        self.line.push_str(r#"{"key":""#);
        self.line.push_str(key);
        self.line.push_str(r#"","count":"#);
        self.line.push_str(itoa::Buffer::new().format(count));
        self.line.push('}');
        out.emit(self.line.as_str());
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.counts.snapshot_into(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.counts.restore_from(state)
    }
}

weir_sdk::export!(Count);
