//! The glue between the generated Wasm exports and an [`Operator`]. Used only
//! by [`export!`](crate::export); operator authors never touch it.
//!
//! One `Runtime` lives in each instance (a guest is single-threaded). It owns
//! the operator and the output buffer, decodes each framed input batch, and
//! turns operator errors into the `result` strings of the WIT world.

use crate::bindings::weir::operator::types;
use crate::operator::{Context, Emitter, InstanceInfo, Operator, Record};
use crate::state::{StateReader, StateWriter};
use crate::value::Decode;
use crate::{Error, frame};

/// Holds one instance's operator between calls.
#[doc(hidden)]
pub struct Runtime<O> {
    op: Option<O>,
    info: InstanceInfo,
    /// The output being built. It is handed to the host (and freed after
    /// the call), so each call starts a new one, sized by `out_hint`.
    out: Vec<u8>,
    /// The previous output's length: growing a buffer from empty by
    /// doubling would copy a batch's output many times over.
    out_hint: usize,
    emitted: u64,
}

impl<O: Operator> Default for Runtime<O> {
    fn default() -> Self {
        Self { op: None, info: InstanceInfo::default(), out: Vec::new(), out_hint: 0, emitted: 0 }
    }
}

impl<O: Operator> Runtime<O> {
    /// The operator's descriptor.
    pub fn describe(name: &str, version: &str) -> types::Descriptor {
        types::Descriptor {
            name: name.to_owned(),
            version: version.to_owned(),
            state_version: O::STATE_VERSION,
            sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Creates the operator, restoring `restored` if given.
    pub fn init(
        &mut self,
        info: types::InstanceInfo,
        config: String,
        restored: Option<types::State>,
    ) -> Result<(), String> {
        self.info = InstanceInfo {
            operator_id: info.operator_id,
            subtask: info.subtask,
            parallelism: info.parallelism,
            max_parallelism: info.max_parallelism,
            key_groups: info.key_group_start..info.key_group_end,
            attempt: info.attempt,
        };
        let mut op = O::default();
        op.init(&Context { info: &self.info, config: &config }).map_err(Error::into_message)?;
        if let Some(state) = restored {
            if state.version > O::STATE_VERSION {
                return Err(format!(
                    "cannot restore state version {}: this operator reads state versions up to {} \
                     (its STATE_VERSION); the state was written by a newer version of it",
                    state.version,
                    O::STATE_VERSION
                ));
            }
            let version = state.version;
            let reader = StateReader::new(
                state.version,
                state.operator_state,
                state.keyed.into_iter().map(|g| g.bytes).collect(),
            );
            op.restore(&reader).and_then(|()| all_keyed_state_read(&reader)).map_err(|e| {
                format!(
                    "cannot restore state version {version} (this operator's STATE_VERSION is {}): {}",
                    O::STATE_VERSION,
                    e.into_message()
                )
            })?;
        }
        self.op = Some(op);
        Ok(())
    }

    /// The output so far, for the host; remembers its size for the next call.
    fn take_output(&mut self) -> Vec<u8> {
        let out = core::mem::take(&mut self.out);
        self.out_hint = out.len();
        out
    }

    fn op(&mut self) -> Result<&mut O, String> {
        self.op.as_mut().ok_or_else(|| "operator called before init".to_owned())
    }

    /// Runs `process` over every record of `batch`; returns the framed output.
    pub fn process(&mut self, batch: &[u8]) -> Result<Vec<u8>, String> {
        self.out.reserve(self.out_hint + self.out_hint / 8);
        let op = self.op.as_mut().ok_or("operator called before init")?;
        for rec in frame::read(batch) {
            let rec = rec.map_err(|e| e.to_string())?;
            let value = O::In::decode(rec.value)
                .map_err(|e| format!("{} (in the record {})", e.into_message(), preview(rec.key, rec.value)))?;
            let mut out = Emitter::new(&mut self.out, rec.key, rec.timestamp, &mut self.emitted);
            op.process(Record { key: rec.key, timestamp: rec.timestamp, value }, &mut out)
                .map_err(Error::into_message)?;
        }
        Ok(self.take_output())
    }

    /// Runs `on_watermark`; returns the framed output.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<Vec<u8>, String> {
        let op = self.op.as_mut().ok_or("operator called before init")?;
        let mut out = Emitter::new(&mut self.out, None, Some(watermark), &mut self.emitted);
        op.on_watermark(watermark, &mut out).map_err(Error::into_message)?;
        Ok(core::mem::take(&mut self.out))
    }

    /// Runs `finish`; returns the framed output.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        let op = self.op.as_mut().ok_or("operator called before init")?;
        let mut out = Emitter::new(&mut self.out, None, None, &mut self.emitted);
        op.finish(&mut out).map_err(Error::into_message)?;
        Ok(core::mem::take(&mut self.out))
    }

    /// Runs `snapshot` and packages the state for the host.
    pub fn snapshot(&mut self, _checkpoint_id: u64) -> Result<types::State, String> {
        let mut writer = StateWriter::new(self.info.max_parallelism);
        self.op()?.snapshot(&mut writer).map_err(Error::into_message)?;
        Ok(types::State {
            version: O::STATE_VERSION,
            operator_state: vec![writer.operator],
            keyed: writer
                .keyed
                .into_iter()
                .enumerate()
                .filter(|(_, bytes)| !bytes.is_empty())
                .map(|(key_group, bytes)| types::KeyGroupState { key_group: key_group as u32, bytes })
                .collect(),
        })
    }

    /// Runs `on_checkpoint_complete`.
    pub fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), String> {
        self.op()?.on_checkpoint_complete(checkpoint_id).map_err(Error::into_message)
    }
}

/// Fails a restore that left keyed state unread: state written under a name
/// that no [`KeyedState`](crate::KeyedState) of this version restored would
/// otherwise be dropped without a word (and with the next checkpoint, lost).
fn all_keyed_state_read(reader: &StateReader) -> Result<(), Error> {
    let unread = reader.unread();
    let Some(first) = unread.first() else { return Ok(()) };
    let names: Vec<String> =
        unread.iter().map(|n| if n.is_empty() { "unnamed".to_owned() } else { format!("{n:?}") }).collect();
    Err(Error::msg(format!(
        "the state holds keyed state that `restore` did not read (names: {}); restore each with a KeyedState \
         of that name (KeyedState::named({first:?}), or ::default() for unnamed) or an `alias` of it, or drop it on \
         purpose with StateReader::discard_keyed({first:?})",
        names.join(", ")
    )))
}

/// A short, escaped look at a record for an error message: its key and the
/// start of its value, so a user can find it in the input.
fn preview(key: Option<&[u8]>, value: &[u8]) -> String {
    const SHOWN: usize = 60;
    let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(SHOWN)]).escape_debug().to_string();
    let more = if value.len() > SHOWN { format!("… ({} bytes)", value.len()) } else { String::new() };
    match key {
        Some(k) => format!("with key \"{}\" and value \"{}\"{more}", text(k), text(value)),
        None => format!("\"{}\"{more}", text(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyedState;

    /// Counts each key twice over, in two keyed states; emits `a b`.
    struct Two {
        a: KeyedState<u64>,
        b: KeyedState<u64>,
    }

    impl Default for Two {
        fn default() -> Self {
            Self { a: KeyedState::named("a"), b: KeyedState::named("b") }
        }
    }

    impl Operator for Two {
        type In<'a> = &'a [u8];

        fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let key = rec.key.unwrap_or_default();
            *self.a.get_or_default(key) += 1;
            *self.b.get_or_default(key) += 10;
            out.emit(&format!("{} {}", self.a.get(key).unwrap_or(&0), self.b.get(key).unwrap_or(&0)));
            Ok(())
        }

        fn snapshot(&mut self, state: &mut StateWriter) -> Result<(), Error> {
            self.a.snapshot_into(state)?;
            self.b.snapshot_into(state)
        }

        fn restore(&mut self, state: &StateReader) -> Result<(), Error> {
            self.a.restore_from(state)?;
            self.b.restore_from(state)
        }
    }

    /// Restores only `a` of [`Two`]'s state.
    #[derive(Default)]
    struct OnlyA(Two);

    impl Operator for OnlyA {
        type In<'a> = &'a [u8];

        fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<(), Error> {
            self.0.process(rec, out)
        }

        fn restore(&mut self, state: &StateReader) -> Result<(), Error> {
            self.0.a.restore_from(state)
        }
    }

    fn info() -> types::InstanceInfo {
        types::InstanceInfo {
            operator_id: "two".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            key_group_start: 0,
            key_group_end: 128,
            attempt: 0,
        }
    }

    fn batch(keys: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for k in keys {
            frame::write(&mut out, Some(k.as_bytes()), None, b"");
        }
        out
    }

    fn values(batch: &[u8]) -> Vec<String> {
        frame::read(batch).map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()).collect()
    }

    /// Both keyed states of an operator come back from a checkpoint whole.
    #[test]
    fn an_operator_with_two_keyed_states_resumes_both() {
        let mut first = Runtime::<Two>::default();
        first.init(info(), "{}".into(), None).unwrap();
        first.process(&batch(&["x", "y", "x"])).unwrap();
        let state = first.snapshot(1).unwrap();
        let mut second = Runtime::<Two>::default();
        second.init(info(), "{}".into(), Some(state)).unwrap();
        assert_eq!(values(&second.process(&batch(&["x", "y"])).unwrap()), ["3 30", "2 20"]);
    }

    /// A restore that leaves a keyed state unread fails, naming it.
    #[test]
    fn a_keyed_state_left_unread_fails_the_restore() {
        let mut first = Runtime::<Two>::default();
        first.init(info(), "{}".into(), None).unwrap();
        first.process(&batch(&["x"])).unwrap();
        let state = first.snapshot(1).unwrap();
        let err = Runtime::<OnlyA>::default().init(info(), "{}".into(), Some(state)).unwrap_err();
        for needle in ["did not read", "\"b\"", "discard_keyed(\"b\")"] {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
    }
}
