//! `word-stats` v1: counts words. State: one `u64` per word, the keyed state
//! named `counts` (state version 1). Emits `{"key":"<word>","count":<n>}`
//! for every word it sees.

use weir_sdk::{Emitter, Json, KeyedState, Operator, Record, Result, StateReader, StateWriter};

struct WordStats {
    counts: KeyedState<u64>,
}

impl Default for WordStats {
    fn default() -> Self {
        Self { counts: KeyedState::named("counts") }
    }
}

#[derive(serde::Serialize)]
struct Update<'a> {
    key: &'a str,
    count: u64,
}

impl Operator for WordStats {
    type In<'a> = &'a str;
    const STATE_VERSION: u32 = 1;

    fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
        // State is keyed by the record key (the word, from `tokenize`), so it
        // follows its key group on a rescale.
        let count = self.counts.get_or_default(rec.key.unwrap_or(rec.value.as_bytes()));
        *count += 1;
        out.emit(&Json(Update { key: rec.value, count: *count }));
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.counts.snapshot_into(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.counts.restore_from(state)
    }
}

weir_sdk::export!(WordStats);
