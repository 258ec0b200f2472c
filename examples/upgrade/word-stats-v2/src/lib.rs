//! `word-stats` v2: counts words and remembers which version of the operator
//! first saw each one. State: a [`Stats`] struct per word, the keyed state
//! named `stats` (state version 2). Restoring version-1 state (a bare count
//! per word, named `counts`: v2 renamed it, so it keeps the old name as an
//! alias) migrates it: those words were first seen by v1. Emits
//! `{"key":"<word>","count":<n>,"since":<version>}`.

use weir_sdk::{Emitter, Json, KeyedState, Operator, Record, Result, StateReader, StateWriter};

/// What v2 keeps per word.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stats {
    count: u64,
    /// The operator version that counted this word first.
    since: u32,
}

struct WordStats {
    stats: KeyedState<Stats>,
}

impl Default for WordStats {
    fn default() -> Self {
        Self { stats: KeyedState::named("stats").alias("counts") }
    }
}

#[derive(serde::Serialize)]
struct Update<'a> {
    key: &'a str,
    count: u64,
    since: u32,
}

impl Operator for WordStats {
    type In<'a> = &'a str;
    const STATE_VERSION: u32 = 2;

    fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
        let key = rec.key.unwrap_or(rec.value.as_bytes());
        if self.stats.get(key).is_none() {
            self.stats.insert(key, Stats { count: 0, since: Self::STATE_VERSION });
        }
        let stats = self.stats.get_mut(key).expect("inserted above");
        stats.count += 1;
        out.emit(&Json(Update { key: rec.value, count: stats.count, since: stats.since }));
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.stats.snapshot_into(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        match state.version() {
            1 => self.stats.restore_migrated(state, |count: u64| Stats { count, since: 1 }),
            _ => self.stats.restore_from(state),
        }
    }
}

weir_sdk::export!(WordStats);
