//! `count`: a keyed running count. For each input record it adds one to its
//! key's count and emits the new count as `{"key":"<key>","count":<n>}`,
//! keyed by the same key.
//!
//! Config (optional): `emit = "every"` (the default) emits each update as
//! above; `emit = "final"` emits nothing per record and one line per key,
//! its final count, when the input ends (as a batch WordCount does). With
//! `"final"` an unbounded job emits nothing until its input ends; the counts
//! are still checkpointed and exactly-once.
//!
//! It can be pre-aggregated (`pre_aggregate = true` in its job table): each
//! upstream subtask then counts records per key and sends the partial
//! counts on every 100 ms (and before every barrier), which this operator
//! adds. Final counts are the
//! same; with `emit = "every"` it emits one update per partial instead of
//! one per record (the last update of each key is still its count).
//!
//! State: one `u64` per key, in the [`KeyedState`] named `counts`, so counts
//! survive failures and follow their key groups when the operator is
//! rescaled. State version 2 is the named one; version 1 (written before
//! keyed state had names) is the unnamed namespace, read through the alias
//! `""`. Run it behind
//! a `partition = "key"` edge: there every record has a key (the host keys
//! a keyless record by its value, the key it routes it by), so a count
//! always sits in the key group its records go to.

use weir_sdk::{
    Combine, Context, Emitter, Encode, Json, KeyedState, Operator, Record, Result, StateReader, StateWriter,
};

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    emit: Emit,
}

/// When `count` emits.
#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Emit {
    /// Every update, as it happens.
    #[default]
    Every,
    /// Each key's count once, at the end of the input.
    Final,
}

struct Count {
    counts: KeyedState<u64>,
    emit: Emit,
}

impl Default for Count {
    fn default() -> Self {
        Self { counts: KeyedState::named("counts").alias(""), emit: Emit::Every }
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

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        self.emit = ctx.config::<Config>()?.emit;
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        self.merge(rec.key.unwrap_or_default(), 1, out)
    }

    fn finish(&mut self, out: &mut Emitter<'_>) -> Result<()> {
        if self.emit == Emit::Final {
            for (key, &count) in self.counts.iter() {
                // Keyless records are counted under the empty key; their count stays keyless.
                Self::update(key, count, Some(key).filter(|k| !k.is_empty()), out)?;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.counts.snapshot_into(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.counts.restore_from(state)
    }
}

impl Combine for Count {
    /// How many records of the key the local instance saw since it last sent.
    type Partial = u64;

    fn combine(&self, partial: &mut u64, _: Record<'_, &[u8]>) -> Result<()> {
        *partial += 1;
        Ok(())
    }

    fn merge(&mut self, key: &[u8], partial: u64, out: &mut Emitter<'_>) -> Result<()> {
        let n = self.counts.get_or_default(key);
        *n += partial;
        if self.emit == Emit::Every {
            let count = *n;
            Self::update(key, count, None, out)?;
        }
        Ok(())
    }
}

/// `{"key":"<key>","count":<count>}` for a key that JSON takes as it is,
/// written by hand into the output frame (no line buffer to copy from).
struct Line<'a> {
    key: &'a [u8],
    count: u64,
}

impl Encode for Line<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"key":""#);
        out.extend_from_slice(self.key);
        out.extend_from_slice(br#"","count":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.count).as_bytes());
        out.push(b'}');
    }
}

impl Count {
    /// Emits `{"key":"<key>","count":<count>}`, under the key `rekey`, or
    /// (`None`) the record's own (none for a keyless record, as always).
    fn update(key: &[u8], count: u64, rekey: Option<&[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        // One pass decides the hot path: printable ASCII without `"` or `\\`
        // is valid UTF-8 that JSON takes as it is.
        if !key.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            // Non-ASCII or needs escaping: let serde do it.
            let key = core::str::from_utf8(key).map_err(|_| weir_sdk::Error::msg("count: record key is not UTF-8"))?;
            let json = Json(Update { key, count });
            match rekey {
                Some(k) => out.emit_keyed(k, &json),
                None => out.emit(&json),
            }
            return Ok(());
        }
        // The hot path, by hand, straight into the output.
        let line = Line { key, count };
        match rekey {
            Some(k) => out.emit_keyed(k, &line),
            None => out.emit(&line),
        }
        Ok(())
    }
}

weir_sdk::export!(Count, combine);
