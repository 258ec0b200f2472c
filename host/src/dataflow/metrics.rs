//! Live counters per node, shared by its subtasks (writers) and the
//! progress display and final summary (readers). Relaxed atomics: the
//! numbers are for humans, not for correctness.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Records in and out of one node, summed over its subtasks.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// When a subtask of the node first got records (recovery timing).
    first_input: OnceLock<Instant>,
    /// Subtasks that are open: instantiated, and their state restored.
    opened: AtomicU32,
}

impl NodeMetrics {
    /// Counts `n` records received.
    pub fn add_in(&self, n: u64) {
        self.first_input.get_or_init(Instant::now);
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }

    /// One more subtask is open (its state, if any, restored).
    pub fn mark_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// How many subtasks are open.
    pub fn opened(&self) -> u32 {
        self.opened.load(Ordering::Relaxed)
    }

    /// When the node first got records, if it has.
    pub fn first_input(&self) -> Option<Instant> {
        self.first_input.get().copied()
    }

    /// Counts `n` records emitted.
    pub fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Records received so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records emitted so far.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
}

/// Where one node-subtask's thread spends its time, as Flink measures it:
/// waiting for input (*idle*) and waiting for room downstream
/// (*backpressured*); the rest is *busy*. Counted only when the thread
/// blocks — one clock read before and one after a wait that blocks, never
/// per record — so the record path pays nothing.
#[derive(Debug, Default)]
pub struct TaskTime {
    idle_ns: AtomicU64,
    backpressured_ns: AtomicU64,
    /// Its thread has ended: no time is spent any more.
    ended: std::sync::atomic::AtomicBool,
    /// Its event time (`i64::MIN`: none yet; the default 0 is read as none too
    /// until the first is set).
    watermark: std::sync::atomic::AtomicI64,
    has_watermark: std::sync::atomic::AtomicBool,
    /// Bytes of linear memory of its guest (operators).
    pub guest_memory: Arc<AtomicU64>,
    /// Its guest's `process` calls by duration: counts per bucket of
    /// [`CALL_BUCKETS_US`] (the last: longer), and their total ns.
    calls: [AtomicU64; CALL_BUCKETS_US.len() + 1],
    call_ns: AtomicU64,
    /// Records handed to this node's subtask (operators and sinks): how a
    /// key edge spread the load, which the node's total cannot show.
    records_in: AtomicU64,
}

/// Upper bounds (µs) of the guest call-time histogram's buckets.
pub const CALL_BUCKETS_US: [u64; 9] = [100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000];

impl TaskTime {
    /// Its thread has ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// A guest call took `d`.
    pub fn call(&self, d: Duration) {
        let us = d.as_micros();
        let bucket = CALL_BUCKETS_US.iter().position(|&b| us <= u128::from(b)).unwrap_or(CALL_BUCKETS_US.len());
        self.calls[bucket].fetch_add(1, Ordering::Relaxed);
        self.call_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Guest calls per bucket of [`CALL_BUCKETS_US`] (not cumulative), and their total ns.
    pub fn calls(&self) -> (Vec<u64>, u64) {
        (self.calls.iter().map(|c| c.load(Ordering::Relaxed)).collect(), self.call_ns.load(Ordering::Relaxed))
    }

    /// Counts `n` records handed to this subtask.
    pub fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Records handed to this subtask so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Its event time, once it has one.
    pub fn watermark(&self) -> Option<i64> {
        self.has_watermark.load(Ordering::Relaxed).then(|| self.watermark.load(Ordering::Relaxed))
    }

    /// Nanoseconds idle so far.
    pub fn idle_ns(&self) -> u64 {
        self.idle_ns.load(Ordering::Relaxed)
    }

    /// Nanoseconds backpressured so far.
    pub fn backpressured_ns(&self) -> u64 {
        self.backpressured_ns.load(Ordering::Relaxed)
    }
}

/// What a task thread writes its waits into: the [`TaskTime`] of its
/// subtask of every node chained in it (they share the thread, so they
/// share its time, as in Flink).
#[derive(Debug, Clone, Default)]
pub struct Meter {
    cells: Vec<Arc<TaskTime>>,
}

impl Meter {
    /// A meter writing into `cells`.
    pub fn new(cells: Vec<Arc<TaskTime>>) -> Self {
        Self { cells }
    }

    /// The thread waited `d` for input.
    pub fn idle(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.cells.iter().for_each(|c| _ = c.idle_ns.fetch_add(ns, Ordering::Relaxed));
    }

    /// The thread waited `d` for room downstream.
    pub fn backpressured(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.cells.iter().for_each(|c| _ = c.backpressured_ns.fetch_add(ns, Ordering::Relaxed));
    }

    /// The task's event time moved to `watermark`.
    pub fn watermark(&self, watermark: i64) {
        for c in &self.cells {
            c.watermark.store(watermark, Ordering::Relaxed);
            c.has_watermark.store(true, Ordering::Relaxed);
        }
    }

    /// The cell of the `i`-th node of the chain (its own numbers: guest memory, calls).
    pub fn cell(&self, i: usize) -> Option<&Arc<TaskTime>> {
        self.cells.get(i)
    }

    /// The thread ended.
    pub fn end(&self) {
        self.cells.iter().for_each(|c| c.ended.store(true, Ordering::Relaxed));
    }
}
