//! One guest instance: its own [`Store`] (memory, limits, WASI context with
//! no capabilities), the typed export bindings, and the call wrappers that
//! arm the deadline before each call and classify every failure.
//!
//! An instance lives on one subtask thread for the life of a job attempt.
//! After any failed call it is poisoned (a trapped component cannot be
//! re-entered) and must be dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, weir::operator::types};
use super::limits::MemoryLimiter;
use super::module::{Descriptor, OperatorModule};
use super::output::GuestOutput;
use crate::checkpoint::state::{GuestState, KeyGroupBytes};
use crate::error::{GuestError, GuestFailure};
use crate::{Error, wasm::Limits};

/// Store data of one guest.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: GuestOutput,
    operator: Arc<str>,
    subtask: u32,
    /// Epoch ticks the current call may still run.
    ticks_left: u64,
    /// Raised when the job stops: a running call is interrupted at the next tick.
    stop: Option<Arc<AtomicBool>>,
    /// The last interrupt was for `stop`, not the deadline.
    stopped: bool,
    /// Processing time as the guest's `now()` reads it: set by the task
    /// from its clock before calls, so a batch sees one time and reading
    /// it costs no syscall.
    now: i64,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::weir::operator::types::Host for StoreData {}

impl bindings::weir::operator::host::Host for StoreData {
    fn log(&mut self, level: types::Level, message: String) {
        let (op, subtask) = (&*self.operator, self.subtask);
        let message = super::text::untrusted(&message, super::text::MAX_MESSAGE);
        match level {
            types::Level::Trace => tracing::trace!(operator = op, subtask, "{message}"),
            types::Level::Debug => tracing::debug!(operator = op, subtask, "{message}"),
            types::Level::Info => tracing::info!(operator = op, subtask, "{message}"),
            types::Level::Warn => tracing::warn!(operator = op, subtask, "{message}"),
            types::Level::Error => tracing::error!(operator = op, subtask, "{message}"),
        }
    }

    fn now(&mut self) -> i64 {
        self.now
    }
}

/// Where an instance runs (the WIT `instance-info`, host side).
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// This subtask's index.
    pub subtask: u32,
    /// Number of subtasks of the operator.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Restarts of the job so far.
    pub attempt: u32,
}

/// A live, sandboxed operator instance.
pub struct GuestInstance {
    store: Store<StoreData>,
    bindings: bindings::Operator,
    limits: Limits,
    operator: Arc<str>,
    subtask: u32,
}

impl GuestInstance {
    pub(crate) fn new(
        module: &OperatorModule,
        subtask: u32,
        memory_gauge: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<Self, Error> {
        let stderr = GuestOutput::new(module.operator.clone(), subtask, "stderr");
        // No preopened directories, environment, arguments or sockets; stdout
        // and stderr go to the host log.
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(module.operator.clone(), subtask, "stdout"))
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = StoreData {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(module.limits.memory).with_gauge(memory_gauge),
            stderr,
            operator: module.operator.clone(),
            subtask,
            ticks_left: module.limits.deadline_ticks(),
            stop: None,
            stopped: false,
            now: 0,
        };
        let mut store = Store::new(module.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // What a guest may hand the host in one call (a batch, a snapshot):
        // wasmtime's default is 128 MiB; the memory limit already bounds it,
        // and a large keyed state must be able to snapshot in one piece.
        store.set_hostcall_fuel(usize::try_from(module.limits.memory).unwrap_or(usize::MAX));
        // Woken every tick: a call ends when its deadline passes or the job stops.
        store.epoch_deadline_callback(|mut ctx| {
            let data = ctx.data_mut();
            if data.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                data.stopped = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            if data.ticks_left <= 1 {
                return Ok(UpdateDeadline::Interrupt);
            }
            data.ticks_left -= 1;
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        Ok(Self {
            bindings: match module.pre.instantiate(&mut store) {
                Ok(b) => b,
                Err(e) => {
                    let cause = classify(&e, &store, &module.limits);
                    return Err(GuestError {
                        operator: module.operator.to_string(),
                        subtask,
                        call: "instantiate",
                        cause,
                    }
                    .into());
                }
            },
            store,
            limits: module.limits,
            operator: module.operator.clone(),
            subtask,
        })
    }

    /// Interrupts any call into this instance, at the next epoch tick
    /// (≤ 10 ms), once `stop` is raised — so a failing job need not wait
    /// for a long `snapshot` or `process` of another task to end.
    pub fn interrupt_on(&mut self, stop: Arc<AtomicBool>) {
        self.store.data_mut().stop = Some(stop);
    }

    /// Runs one export under the deadline, turning every failure into a [`GuestError`].
    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&bindings::Operator, &mut Store<StoreData>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, GuestError> {
        self.store.data_mut().ticks_left = self.limits.deadline_ticks();
        self.store.set_epoch_deadline(1);
        let cause = match f(&self.bindings, &mut self.store) {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(message)) => GuestFailure::Returned(super::text::untrusted(&message, super::text::MAX_MESSAGE)),
            Err(e) => classify(&e, &self.store, &self.limits),
        };
        Err(GuestError { operator: self.operator.to_string(), subtask: self.subtask, call, cause })
    }

    /// Calls `describe`.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn describe(&mut self) -> Result<Descriptor, GuestError> {
        let d = self.call("describe", |b, s| b.call_describe(s).map(Ok))?;
        let bounded = |s: &str| super::text::untrusted(s, super::text::MAX_NAME);
        Ok(Descriptor {
            name: bounded(&d.name),
            version: bounded(&d.version),
            state_version: d.state_version,
            sdk_version: bounded(&d.sdk_version),
        })
    }

    /// Calls `init` with the operator's config (JSON) and the state to resume from.
    ///
    /// # Errors
    /// When the guest rejects its config or state, or fails.
    pub fn init(
        &mut self,
        info: &InstanceInfo,
        config_json: &str,
        restored: Option<&GuestState>,
    ) -> Result<(), GuestError> {
        let range = weir_sdk::keygroup::key_group_range(info.subtask, info.parallelism, info.max_parallelism);
        let wit_info = types::InstanceInfo {
            operator_id: self.operator.to_string(),
            subtask: info.subtask,
            parallelism: info.parallelism,
            max_parallelism: info.max_parallelism,
            key_group_start: range.start,
            key_group_end: range.end,
            attempt: info.attempt,
        };
        let restored = restored.map(|g| types::State {
            version: g.version,
            operator_state: g.operator.iter().map(|b| b.to_vec()).collect(),
            keyed: g
                .keyed
                .iter()
                .map(|k| types::KeyGroupState { key_group: k.group, bytes: k.bytes.clone() })
                .collect(),
        });
        let restoring = restored.is_some();
        self.call("init", |b, s| b.call_init(s, &wit_info, config_json, restored.as_ref())).map_err(|mut e| {
            // The SDK restores inside `init` and says so; name the call that failed.
            if restoring && matches!(&e.cause, GuestFailure::Returned(m) if m.starts_with("cannot restore")) {
                e.call = "restore";
            }
            e
        })
    }

    /// Calls `snapshot` for checkpoint `checkpoint`.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn snapshot(&mut self, checkpoint: u64) -> Result<GuestState, GuestError> {
        let state = self.call("snapshot", |b, s| b.call_snapshot(s, checkpoint))?;
        Ok(GuestState {
            version: state.version,
            operator: state.operator_state.into_iter().map(serde_bytes::ByteBuf::from).collect(),
            keyed: state.keyed.into_iter().map(|k| KeyGroupBytes { group: k.key_group, bytes: k.bytes }).collect(),
        })
    }

    /// Calls `checkpoint-complete`.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), GuestError> {
        self.call("checkpoint-complete", |b, s| b.call_checkpoint_complete(s, checkpoint))
    }

    /// Calls `process` with a framed batch; returns the framed output.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn process(&mut self, batch: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.call("process", |b, s| b.call_process(s, batch))
    }

    /// Sets the processing time the guest's `now()` reads until the next call of this.
    pub fn set_now(&mut self, now_ms: i64) {
        self.store.data_mut().now = now_ms;
    }

    /// Calls `on-watermark`: event time reached `watermark`; returns the framed output.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<Vec<u8>, GuestError> {
        self.call("on-watermark", |b, s| b.call_on_watermark(s, watermark))
    }

    /// Calls `on-processing-time` (with [`set_now`](Self::set_now) already
    /// at `now_ms`); returns the framed output.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn on_processing_time(&mut self, now_ms: i64) -> Result<Vec<u8>, GuestError> {
        self.set_now(now_ms);
        self.call("on-processing-time", |b, s| b.call_on_processing_time(s, now_ms))
    }

    /// Calls `finish` (end of input); returns the framed output.
    ///
    /// # Errors
    /// When the guest fails.
    pub fn finish(&mut self) -> Result<Vec<u8>, GuestError> {
        self.call("finish", |b, s| b.call_finish(s))
    }
}

/// Works out why a call failed, most specific cause first.
fn classify(e: &wasmtime::Error, store: &Store<StoreData>, limits: &Limits) -> GuestFailure {
    if store.data().limiter.exceeded {
        return GuestFailure::OutOfMemory(limits.memory);
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        if store.data().stopped {
            return GuestFailure::Interrupted;
        }
        return GuestFailure::Timeout(limits.call_timeout);
    }
    let stderr = store.data().stderr.tail();
    let stderr = String::from_utf8_lossy(&stderr);
    if let Some(message) = panic_message(&stderr) {
        return GuestFailure::Panic(super::text::untrusted(&message, super::text::MAX_MESSAGE));
    }
    if e.chain().any(|cause| cause.to_string() == super::engine::NO_SLEEP) {
        return GuestFailure::Protocol(super::engine::NO_SLEEP.into());
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => GuestFailure::Trap(trap.to_string()),
        None => GuestFailure::Trap(format!("{e:#}")),
    }
}

/// Extracts "MESSAGE (at FILE:LINE:COL)" from Rust's panic output.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let (location, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let message: Vec<&str> = body.lines().take_while(|l| !l.starts_with("note: ")).collect();
    Some(format!("{} (at {})", message.join("\n").trim(), location.trim_end_matches(':')))
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn extracts_panic_message_and_location() {
        let stderr =
            "\nthread '<unnamed>' panicked at src/lib.rs:33:13:\nboom at record 5\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).unwrap(), "boom at record 5 (at src/lib.rs:33:13)");
        assert_eq!(panic_message("just some logging\n"), None);
    }
}
