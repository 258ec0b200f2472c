//! Live counters per node, shared by its subtasks (writers) and the
//! progress display and final summary (readers). Relaxed atomics: the
//! numbers are for humans, not for correctness.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

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
