//! Connectors: where records enter and leave a job. A [`Source`] fills
//! framed batches; a [`Sink`] consumes them. Each parallel subtask gets its
//! own instance. All file I/O of the data path happens here.

pub mod extract;
pub mod file_sink;
pub mod file_source;
pub mod generator;
pub mod kafka;
pub(crate) mod pacer;
pub mod stdout_sink;

use crate::Error;
use crate::checkpoint::state::{SourcePosition, TaskState};

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

    /// Where the source stands: every record before it has been returned.
    fn position(&self) -> SourcePosition;

    /// Continues from `position` (taken by [`position`](Self::position) of
    /// the same subtask in an earlier run).
    ///
    /// # Errors
    /// When the position does not fit the input (e.g. a file shrank).
    fn restore(&mut self, position: SourcePosition) -> Result<(), Error>;

    /// For watermarks per split (Kafka partitions): how many splits this
    /// subtask reads, and the split of each record of the last batch, in
    /// order. By default one split, and an empty list (all in split 0).
    fn splits(&self) -> (usize, &[u32]) {
        (1, &[])
    }

    /// Checkpoint `checkpoint` took [`position`](Self::position) just now.
    fn checkpoint_taken(&mut self, _checkpoint: u64) {}

    /// Checkpoint `checkpoint` is complete (e.g. to publish offsets for
    /// monitoring; recovery never depends on it).
    fn checkpoint_complete(&mut self, _checkpoint: u64) {}
}

/// One subtask's share of a sink: two-phase, so output is exactly-once.
///
/// [`pre_commit`](Self::pre_commit) at each barrier seals what was
/// [`write`](Self::write)n so far under that checkpoint, and
/// [`commit`](Self::commit) makes it visible once the checkpoint is
/// complete; after the end of input, [`commit_all`](Self::commit_all) once
/// the checkpoint holding the final state is complete. (Every job has a
/// coordinator: without `[checkpoint]` it takes only that final one.)
pub trait Sink: Send {
    /// Writes a framed batch (pending until committed).
    ///
    /// # Errors
    /// When the output cannot be written.
    fn write(&mut self, batch: &[u8]) -> Result<(), Error>;

    /// Seals everything written so far as belonging to `checkpoint`; returns
    /// the state to store with it ([`TaskState::Sink`] or [`TaskState::KafkaSink`]).
    ///
    /// # Errors
    /// When pending output cannot be made durable.
    fn pre_commit(&mut self, checkpoint: u64, finished: bool) -> Result<TaskState, Error>;

    /// Makes visible everything sealed for checkpoints up to `checkpoint`.
    ///
    /// # Errors
    /// When output cannot be committed.
    fn commit(&mut self, checkpoint: u64) -> Result<(), Error>;

    /// Makes everything written visible (end of input, or final checkpoint complete).
    ///
    /// # Errors
    /// When output cannot be committed.
    fn commit_all(&mut self) -> Result<(), Error>;

    /// Resumes from `state`: commits what it names as pending, discards
    /// any other uncommitted output of this subtask.
    ///
    /// # Errors
    /// When the output cannot be fixed up, or `state` is another sink's kind.
    fn restore(&mut self, state: &TaskState) -> Result<(), Error>;

    /// Starts without restored state: discards uncommitted output an
    /// earlier, killed run of this subtask left behind.
    ///
    /// # Errors
    /// When the leftovers cannot be removed.
    fn clean_start(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// The job failed: discard output not yet sealed by a checkpoint.
    fn abort(&mut self);
}
