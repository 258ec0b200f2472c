//! Guest limits, all in one place.
//!
//! - **Memory**: a [`ResourceLimiter`] per store refuses to grow a guest's
//!   linear memory past [`Limits::memory`] and remembers that it did, so the
//!   resulting trap is reported as "out of memory", not a generic trap.
//! - **CPU**: epoch interruption, not fuel. Fuel costs ~10–30 % on every
//!   instruction; epochs cost one check per loop header/function entry, and
//!   a ticker thread ([`super::engine`]) advances the epoch every
//!   [`EPOCH_TICK`]. A call may run [`Limits::call_timeout`] (rounded up to
//!   ticks) before it traps with `Trap::Interrupt`.
//! - **Capabilities**: guests get WASI with no files, no sockets, no
//!   environment and no arguments (see [`super::instance`]).

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// How often the engine's epoch advances.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits for each guest instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory in bytes.
    pub memory: u64,
    /// Longest a single call into the guest may run.
    pub call_timeout: Duration,
}

impl Limits {
    /// The call timeout in epoch ticks (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
    }
}

/// Per-store memory accounting.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: u64,
    /// Set when a growth was refused; read when classifying a trap.
    pub(crate) exceeded: bool,
    /// Bytes of linear memory the instance has, all its memories together,
    /// for the metrics (growth is the only change: memories never shrink).
    pub(crate) gauge: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit, exceeded: false, gauge: None }
    }

    /// Also adds the memory's growth to `gauge`.
    pub(crate) fn with_gauge(mut self, gauge: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>) -> Self {
        self.gauge = gauge;
        self
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if let Some(gauge) = &self.gauge
            && desired as u64 <= self.limit
        {
            gauge.fetch_add(desired.saturating_sub(current) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if desired as u64 > self.limit {
            self.exceeded = true;
            // An error (rather than `Ok(false)`) traps right at `memory.grow`,
            // instead of letting the guest's allocator abort somewhere later.
            wasmtime::bail!("memory limit of {} bytes reached", self.limit);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let l = |ms| Limits { memory: 0, call_timeout: Duration::from_millis(ms) }.deadline_ticks();
        assert_eq!(l(0), 1);
        assert_eq!(l(1), 1);
        assert_eq!(l(10), 1);
        assert_eq!(l(11), 2);
        assert_eq!(l(5000), 500);
    }

    #[test]
    fn limiter_refuses_and_remembers() {
        let mut m = MemoryLimiter::new(1 << 20);
        assert!(m.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!m.exceeded);
        assert!(m.memory_growing(1 << 20, 2 << 20, None).is_err());
        assert!(m.exceeded);
    }
}
