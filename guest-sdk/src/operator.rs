//! The [`Operator`] trait and what it is handed: [`Record`], [`Emitter`], [`Context`].

use crate::value::{Decode, Encode};
use crate::{Error, frame};

/// Where an operator instance runs; see the WIT `instance-info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The operator's stable id from the job file.
    pub operator_id: String,
    /// This subtask's index, `0 .. parallelism`.
    pub subtask: u32,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// Key groups owned by this subtask.
    pub key_groups: core::ops::Range<u32>,
    /// Restarts of the job so far (0 on the first attempt), as Flink's attempt number.
    pub attempt: u32,
}

/// Handed to [`Operator::init`]: the instance's place and its configuration.
#[derive(Debug)]
pub struct Context<'a> {
    pub(crate) info: &'a InstanceInfo,
    pub(crate) config: &'a str,
}

impl Context<'_> {
    /// Where this instance runs.
    pub fn info(&self) -> &InstanceInfo {
        self.info
    }

    /// The operator's `config` table from the job file, as `T`.
    ///
    /// # Errors
    /// When the table does not match `T`; the message names the field.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(self.config).map_err(|e| Error::msg(format!("invalid operator config: {e}")))
    }
}

/// One input record, its value decoded as the operator's `In` type.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a, T> {
    /// The record's key, if any.
    pub key: Option<&'a [u8]>,
    /// Event time in ms, if any.
    pub timestamp: Option<i64>,
    /// The decoded value.
    pub value: T,
}

impl<T> Record<'_, T> {
    /// The key as UTF-8 text, if there is a key and it is text.
    pub fn key_str(&self) -> Option<&str> {
        self.key.and_then(|k| core::str::from_utf8(k).ok())
    }
}

/// Collects an operator's output records (zero or more per input). Values may
/// be any [`Encode`] type: `str`, `[u8]`, `String`, `Vec<u8>`, or `Json<T>`.
///
/// [`emit`](Self::emit) keeps the key and timestamp of the record being
/// processed (like a map over values); the other methods set them.
pub struct Emitter<'a> {
    out: &'a mut Vec<u8>,
    key: Option<&'a [u8]>,
    timestamp: Option<i64>,
    count: &'a mut u64,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, key: Option<&'a [u8]>, timestamp: Option<i64>, count: &'a mut u64) -> Self {
        Self { out, key, timestamp, count }
    }

    /// Emits `value` with the current record's key and timestamp.
    pub fn emit<V: Encode + ?Sized>(&mut self, value: &V) {
        self.emit_record(self.key, self.timestamp, value);
    }

    /// Emits `value` under a new key, keeping the current timestamp.
    pub fn emit_keyed<V: Encode + ?Sized>(&mut self, key: impl AsRef<[u8]>, value: &V) {
        self.emit_record(Some(key.as_ref()), self.timestamp, value);
    }

    /// Emits `value` with exactly the given key and timestamp.
    #[inline]
    pub fn emit_record<V: Encode + ?Sized>(&mut self, key: Option<&[u8]>, timestamp: Option<i64>, value: &V) {
        match value.as_raw() {
            Some(bytes) => frame::write(self.out, key, timestamp, bytes),
            None => {
                let at = frame::begin(self.out, key, timestamp);
                value.encode(self.out);
                frame::end(self.out, at);
            }
        }
        *self.count += 1;
    }
}

/// A stream operator. Only [`process`](Self::process) is required.
///
/// The host creates one instance per subtask with `Default`, calls
/// [`init`](Self::init) once, then [`process`](Self::process) for every input
/// record, [`on_watermark`](Self::on_watermark) as event time advances, and
/// [`finish`](Self::finish) when a bounded input ends.
///
/// ```
/// use weir_sdk::{Emitter, Operator, Record, Result};
///
/// /// Splits lines into words, keyed by word.
/// #[derive(Default)]
/// struct Split;
///
/// impl Operator for Split {
///     type In<'a> = &'a str;
///
///     fn process(&mut self, line: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
///         for word in line.value.split_whitespace() {
///             out.emit_keyed(word, word);
///         }
///         Ok(())
///     }
/// }
/// weir_sdk::export!(Split);
/// # fn main() {}
/// ```
pub trait Operator: Default + 'static {
    /// How input values are read: `&str`, `&[u8]`, `String`, `Vec<u8>` or `Json<T>`.
    type In<'a>: Decode<'a>;
    /// Version of this operator's state layout; see [`restore`](Self::restore).
    const STATE_VERSION: u32 = 1;

    /// Handles one record, emitting zero or more outputs.
    ///
    /// # Errors
    /// An error fails the job (and, with checkpoints, triggers recovery).
    fn process(&mut self, record: Record<'_, Self::In<'_>>, out: &mut Emitter<'_>) -> Result<(), Error>;

    /// Called once before any record, with the job file's `config` table.
    ///
    /// # Errors
    /// An error (e.g. invalid config) stops the job before it starts.
    fn init(&mut self, ctx: &Context<'_>) -> Result<(), Error> {
        let _ = ctx;
        Ok(())
    }

    /// Event time reached `watermark` (ms): fire whatever was waiting for it.
    ///
    /// # Errors
    /// As for [`process`](Self::process).
    fn on_watermark(&mut self, watermark: i64, out: &mut Emitter<'_>) -> Result<(), Error> {
        let _ = (watermark, out);
        Ok(())
    }

    /// The input ended: emit anything still buffered.
    ///
    /// # Errors
    /// As for [`process`](Self::process).
    fn finish(&mut self, out: &mut Emitter<'_>) -> Result<(), Error> {
        let _ = out;
        Ok(())
    }

    /// Exports this instance's state (called at each checkpoint).
    ///
    /// # Errors
    /// An error fails the checkpoint.
    fn snapshot(&mut self, state: &mut crate::state::StateWriter) -> Result<(), Error> {
        let _ = state;
        Ok(())
    }

    /// Resumes from state written by [`snapshot`](Self::snapshot) — possibly by
    /// an older version of this operator (`state.version()`), in which case
    /// migrate it here.
    ///
    /// Every keyed state in `state` must be read — by the
    /// [`KeyedState`](crate::KeyedState) of its name (or an alias of it), or
    /// [`StateReader::keyed`](crate::StateReader::keyed) for the unnamed one
    /// — or dropped on purpose with
    /// [`StateReader::discard_keyed`](crate::StateReader::discard_keyed);
    /// otherwise the restore fails, naming what was left unread.
    ///
    /// # Errors
    /// When the state cannot be read; the job then refuses to start.
    fn restore(&mut self, state: &crate::state::StateReader) -> Result<(), Error> {
        let _ = state;
        Ok(())
    }

    /// Checkpoint `checkpoint_id` completed everywhere (e.g. commit side effects).
    ///
    /// # Errors
    /// An error fails the job.
    fn on_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), Error> {
        let _ = checkpoint_id;
        Ok(())
    }
}
