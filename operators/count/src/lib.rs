//! `count`: a keyed running count. For each input record it adds one to its
//! key's count and emits the new count as `{"key":"<key>","count":<n>}`,
//! keyed by the same key.
//!
//! State: one `u64` per key, in the [`KeyedState`] named `counts`, so counts
//! survive failures and follow their key groups when the operator is
//! rescaled. State version 2 is the named one; version 1 (written before
//! keyed state had names) is the unnamed namespace, read through the alias
//! `""`. Run it behind
//! a `partition = "key"` edge: there every record has a key (the host keys
//! a keyless record by its value, the key it routes it by), so a count
//! always sits in the key group its records go to.

use weir_sdk::{Emitter, Json, KeyedState, Operator, Record, Result, StateReader, StateWriter};

struct Count {
    counts: KeyedState<u64>,
    /// The output line being built (reused: no allocation per record).
    line: Vec<u8>,
}

impl Default for Count {
    fn default() -> Self {
        Self { counts: KeyedState::named("counts").alias(""), line: Vec::new() }
    }
}

#[derive(serde::Serialize)]
struct Update<'a> {
    key: &'a str,
    count: u64,
}

impl Operator for Count {
    type In<'a> = &'a [u8];
    const STATE_VERSION: u32 = 2;

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let key = rec.key.unwrap_or_default();
        let n = self.counts.get_or_default(key);
        *n += 1;
        let count = *n;
        // One pass decides the hot path: printable ASCII without `"` or `\\`
        // is valid UTF-8 that JSON takes as it is.
        if !key.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            // Non-ASCII or needs escaping: let serde do it.
            let key = core::str::from_utf8(key).map_err(|_| weir_sdk::Error::msg("count: record key is not UTF-8"))?;
            out.emit(&Json(Update { key, count }));
            return Ok(());
        }
        // The hot path, by hand: `{"key":"<key>","count":<n>}`.
        self.line.clear();
        self.line.extend_from_slice(br#"{"key":""#);
        self.line.extend_from_slice(key);
        self.line.extend_from_slice(br#"","count":"#);
        self.line.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
        self.line.push(b'}');
        out.emit(self.line.as_slice());
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
