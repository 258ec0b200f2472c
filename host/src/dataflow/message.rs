//! What flows between tasks: one enum, sent over bounded channels.

/// A framed batch of records (see `weir_sdk::frame`).
#[derive(Debug, Default)]
pub struct Batch {
    /// Concatenated framed records.
    pub bytes: Vec<u8>,
    /// How many records `bytes` holds.
    pub records: usize,
}

/// A message on a channel between two subtasks.
#[derive(Debug)]
pub enum Message {
    /// Records.
    Batch(Batch),
    /// Checkpoint barrier: every record before it belongs to the checkpoint.
    Barrier(Barrier),
    /// Event time on this channel: no later record has a timestamp at or
    /// below it (records at or below it that still come are *late*).
    Watermark(i64),
    /// The sender has no records for a while (an idle source): ignore this
    /// channel's watermark until it sends a record or a watermark again.
    Idle,
    /// The sender has no more records, ever. A channel that disconnects
    /// without `End` means the sender failed.
    End,
}

/// A checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// Checkpoint (or savepoint) id.
    pub id: u64,
    /// Stop-with-savepoint: after snapshotting, every task stops (without
    /// `finish`, so the job can resume from the savepoint).
    pub stop: bool,
}

impl Barrier {
    /// A periodic checkpoint's (or a savepoint's) barrier.
    pub fn new(id: u64) -> Self {
        Self { id, stop: false }
    }
}
