//! The [`Operator`] trait and what it is handed: [`Record`], [`Emitter`],
//! [`Context`]. The emitter is also where an operator reads the time and
//! sets timers; the state behind that ([`Services`]) is the runtime's.

use core::cell::Cell;

use crate::timer::{Timer, TimerService, Timers};
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
/// processed (like a map over values; in [`Operator::on_timer`], the timer's
/// key and time); the other methods set them. The `_to` methods send a
/// record to a side output instead of the main one. It also tells the time
/// ([`watermark`](Self::watermark), [`processing_time`](Self::processing_time))
/// and holds the current key's [`timers`](Self::timers).
pub struct Emitter<'a> {
    out: &'a mut Vec<u8>,
    key: Option<&'a [u8]>,
    timestamp: Option<i64>,
    services: &'a mut Services,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        key: Option<&'a [u8]>,
        timestamp: Option<i64>,
        services: &'a mut Services,
    ) -> Self {
        Self { out, key, timestamp, services }
    }

    /// An emitter into the same output whose default key and timestamp
    /// are `key` and `timestamp`.
    pub(crate) fn scoped<'b>(&'b mut self, key: Option<&'b [u8]>, timestamp: Option<i64>) -> Emitter<'b> {
        Emitter { out: &mut *self.out, key, timestamp, services: &mut *self.services }
    }

    /// The timer service, for timers of any key (the SDK's windows).
    pub(crate) fn timer_service(&mut self) -> &mut TimerService {
        &mut self.services.timers
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
    }

    /// Emits `value` with the current key and timestamp to the side output
    /// `output` (e.g. `"late"`, `"errors"`): the job reads it as
    /// `input = "<this node>.<output>"`, and drops it if no node does.
    ///
    /// A name is 1 to 255 bytes; another fails the call (when it returns)
    /// with an error saying so.
    pub fn emit_to<V: Encode + ?Sized>(&mut self, output: &str, value: &V) {
        self.emit_record_to(output, self.key, self.timestamp, value);
    }

    /// Emits `value` with exactly the given key and timestamp to the side
    /// output `output`; see [`emit_to`](Self::emit_to).
    pub fn emit_record_to<V: Encode + ?Sized>(
        &mut self,
        output: &str,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
        value: &V,
    ) {
        if output.is_empty() || output.len() > usize::from(u8::MAX) {
            let shown: String = output.chars().take(40).collect();
            self.services.misuse.get_or_insert_with(|| {
                format!("a side output's name is 1 to 255 bytes long, not {} (\"{shown}\")", output.len())
            });
            return;
        }
        let bytes = match value.as_raw() {
            Some(bytes) => bytes,
            None => {
                self.services.scratch.clear();
                value.encode(&mut self.services.scratch);
                &self.services.scratch
            }
        };
        frame::write_to(self.out, output.as_bytes(), key, timestamp, bytes);
    }

    /// The watermark, in ms: event time up to which every record has come
    /// (no record with an earlier or equal timestamp should follow);
    /// `i64::MIN` before the first.
    pub fn watermark(&self) -> i64 {
        self.services.watermark
    }

    /// Processing time: ms since the Unix epoch, from the host's clock
    /// (which tests can set), not the system's. One call (a batch, a
    /// watermark) sees one time; in a processing-time
    /// [`on_timer`](Operator::on_timer), the time the host reported.
    pub fn processing_time(&self) -> i64 {
        let now = self.services.now.get().unwrap_or_else(self.services.clock);
        self.services.now.set(Some(now));
        now
    }

    /// The timers of the current key: the record's (or, in
    /// [`on_timer`](Operator::on_timer), the timer's). Where there is no
    /// key — a record without one, [`on_watermark`](Operator::on_watermark),
    /// [`finish`](Operator::finish) — they are the empty key's.
    pub fn timers(&mut self) -> Timers<'_> {
        Timers { key: self.key.unwrap_or_default(), service: &mut self.services.timers }
    }
}

/// What an instance's emitters reach besides the output: time, timers, and
/// a misuse to report when the call returns. The runtime owns it and lends
/// it to one [`Emitter`] at a time.
#[derive(Debug)]
pub(crate) struct Services {
    /// The watermark (`i64::MIN` before the first).
    pub(crate) watermark: i64,
    /// This call's processing time, once read (or handed in); a cell so
    /// that reading it takes `&Emitter`.
    now: Cell<Option<i64>>,
    /// Where processing time comes from: the host, or a test's clock.
    pub(crate) clock: fn() -> i64,
    /// Every timer of the instance (checkpointed by the runtime).
    pub(crate) timers: TimerService,
    /// The first misuse of an emitter in this call (e.g. a side output
    /// without a name): an error from a method that returns nothing,
    /// reported when the call returns.
    misuse: Option<String>,
    /// Reused for side-output values that are not their own bytes.
    scratch: Vec<u8>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            watermark: i64::MIN,
            now: Cell::new(None),
            clock: host_clock,
            timers: TimerService::default(),
            misuse: None,
            scratch: Vec::new(),
        }
    }
}

impl Services {
    /// A call starts: processing time is `now` if the host handed it in,
    /// else read from the clock when first asked; no misuse yet.
    pub(crate) fn start_call(&mut self, now: Option<i64>) {
        self.now.set(now);
        self.misuse = None;
    }

    /// A call ends: the misuse it made, if any, fails it.
    pub(crate) fn end_call(&mut self) -> Result<(), Error> {
        self.misuse.take().map_or(Ok(()), |m| Err(Error::msg(m)))
    }
}

/// Processing time from the host (`host.now`); natively, where there is no
/// host (unit tests), the system clock.
fn host_clock() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::weir::operator::host::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since_epoch.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A stream operator. Only [`process`](Self::process) is required.
///
/// The host creates one instance per subtask with `Default`, calls
/// [`init`](Self::init) once, then [`process`](Self::process) for every input
/// record, [`on_timer`](Self::on_timer) for every due timer,
/// [`on_watermark`](Self::on_watermark) as event time advances, and
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

    /// A timer of [`timer.key`](Timer::key) is due (see
    /// [`Emitter::timers`]): event-time timers fire as the watermark
    /// reaches them, before [`on_watermark`](Self::on_watermark);
    /// processing-time ones as the host's clock does. `out` emits with the
    /// timer's key and time by default; read and write the key's
    /// [`KeyedState`](crate::KeyedState) with `timer.key`, and register
    /// further timers through `out.timers()` (for that key). Timers fire in
    /// order of time, then key, each once, across failures too.
    ///
    /// # Errors
    /// As for [`process`](Self::process).
    fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let _ = (timer, out);
        Ok(())
    }

    /// The input ended: emit anything still buffered. Event time has ended
    /// too: before this, the runtime advances the watermark to `i64::MAX`
    /// (unless the host already did), firing every event-time timer and
    /// calling [`on_watermark`](Self::on_watermark).
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
