//! Connectors: where records enter and leave a job. A [`Source`] fills
//! framed batches; a [`Sink`] consumes them. Each parallel subtask gets its
//! own instance. All file I/O of the data path happens here.

pub mod file_sink;
pub mod file_source;
pub mod generator;
pub mod stdout_sink;

use crate::Error;

/// Whether a source has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Call again.
    More,
    /// Bounded input fully read; the batch just returned was the last.
    Exhausted,
}

/// One subtask's share of a source.
pub trait Source: Send {
    /// Appends up to `max_records` framed records to `out`.
    ///
    /// # Errors
    /// When the underlying input cannot be read.
    fn next_batch(&mut self, out: &mut Vec<u8>, max_records: usize) -> Result<SourceStatus, Error>;
}

/// One subtask's share of a sink.
pub trait Sink: Send {
    /// Writes a framed batch (pending until [`finish`](Self::finish)).
    ///
    /// # Errors
    /// When the output cannot be written.
    fn write(&mut self, batch: &[u8]) -> Result<(), Error>;

    /// All input arrived: make everything written visible.
    ///
    /// # Errors
    /// When the output cannot be committed.
    fn finish(&mut self) -> Result<(), Error>;

    /// The job failed: discard what is pending.
    fn abort(&mut self);
}
