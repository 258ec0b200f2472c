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
    /// Checkpoint barrier: every record before it belongs to checkpoint `n`.
    Barrier(u64),
    /// The sender has no more records, ever. A channel that disconnects
    /// without `End` means the sender failed.
    End,
}
