//! `dedup`: forwards a record only the first time its key is seen (records
//! without a key are deduplicated by value). Keyed, so run it behind a
//! `partition = "key"` edge; the set of seen keys is checkpointed state, the
//! [`KeyedState`] named `seen` (state version 2; version 1, written before
//! keyed state had names, is read through the alias `""`).

use weir_sdk::{Emitter, KeyedState, Operator, Record, Result, StateReader, StateWriter};

struct Dedup {
    seen: KeyedState<()>,
}

impl Default for Dedup {
    fn default() -> Self {
        Self { seen: KeyedState::named("seen").alias("") }
    }
}

impl Operator for Dedup {
    type In<'a> = &'a [u8];
    const STATE_VERSION: u32 = 2;

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let id = rec.key.unwrap_or(rec.value);
        if self.seen.insert(id, ()).is_none() {
            out.emit(rec.value);
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.seen.snapshot_into(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.seen.restore_from(state)
    }
}

weir_sdk::export!(Dedup);
