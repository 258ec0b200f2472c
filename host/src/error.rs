//! The crate's one public error type. Variants are coarse and tell the caller
//! what to do: fix the job file, fix the module, look at the guest, retry I/O.
//! Guest failures carry the operator id and a classified cause, so recovery
//! (and the user) can tell a panic from a timeout from a memory blow-up.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong running a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job file (or a `--set` override) is wrong. Fix it; retrying won't help.
    #[error("{0}")]
    InvalidJob(String),
    /// An operator's `.wasm` cannot be used. Rebuild it with weir-sdk.
    #[error("operator `{operator}`: {} {reason}", path.display())]
    InvalidModule {
        /// Operator id.
        operator: String,
        /// The `.wasm` file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A guest failed at run time.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// Reading or writing data failed (a source, a sink, the compile cache).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint store failed; the store may be unreachable (retry later)
    /// or misconfigured (check the URL and credentials).
    #[error("{context}: {source}")]
    Storage {
        /// What was being done, naming the object.
        context: String,
        /// The underlying error.
        source: Box<object_store::Error>,
    },
    /// Checkpointing failed more often than the job tolerates.
    #[error("{0}")]
    Checkpoint(String),
    /// Stored data is damaged or not what Weir wrote (a checkpoint object).
    #[error("{0}")]
    Corrupt(String),
    /// Building an operator (`weir build`) failed.
    #[error("{0}")]
    Build(String),
    /// The job kept failing: `[restart]` allows no more restarts.
    #[error("{cause}\n(the job was restarted {restarts} time(s) and failed again; [restart] attempts allows no more)")]
    GaveUp {
        /// Restarts made before giving up.
        restarts: u32,
        /// The last failure.
        cause: Box<Error>,
    },
    /// Talking to a job's control API failed.
    #[error("{0}")]
    Api(String),
    /// Another run owns the job (or took it over from this one): two runs of
    /// one job must never write its store and output at once.
    #[error("{0}")]
    Conflict(String),
    /// A stop-with-savepoint failed after the sources had stopped for it:
    /// nothing failed, and the job goes on from its latest checkpoint.
    #[error("{0}")]
    StopFailed(String),
    /// Cancelled on request (`weir cancel`, or the control API).
    #[error("job cancelled on request")]
    Cancelled,
    /// A bug in Weir.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// Whether the input (job file, module) is at fault rather than the run.
    ///
    /// An operator refusing its `config` in `init`, or its saved state in
    /// `restore`, counts as invalid input.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Self::InvalidJob(_) | Self::InvalidModule { .. } | Self::Conflict(_) => true,
            Self::Guest(g) => matches!(g.call, "init" | "restore") && matches!(g.cause, GuestFailure::Returned(_)),
            Self::GaveUp { cause, .. } => cause.is_invalid_input(),
            _ => false,
        }
    }

    /// Whether this is the store answering "no such object" (an answer
    /// about the data, unlike a timeout or a 5xx, which are faults).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Storage { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// Whether restarting the job (from its latest checkpoint) may help:
    /// failures of the run itself — guests, I/O, storage, checkpointing —
    /// but not bad input or damaged checkpoints.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Guest(_) | Self::Io { .. } | Self::Storage { .. } | Self::Checkpoint(_) => !self.is_invalid_input(),
            _ => false,
        }
    }
}

/// A guest instance failed.
#[derive(Debug, thiserror::Error)]
#[error("operator `{operator}` (subtask {subtask}) failed in `{call}`: {cause}")]
pub struct GuestError {
    /// Operator id.
    pub operator: String,
    /// Subtask index.
    pub subtask: u32,
    /// The export that was running (`init`, `process`, …).
    pub call: &'static str,
    /// What happened.
    pub cause: GuestFailure,
}

/// Why a guest call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestFailure {
    /// The operator returned an error.
    #[error("the operator returned an error: {0}")]
    Returned(String),
    /// The guest panicked.
    #[error("the operator panicked: {0}")]
    Panic(String),
    /// The call ran past the per-call deadline.
    #[error("the call ran longer than the {}s limit ([limits] call_timeout); the operator may loop forever", .0.as_secs_f64())]
    Timeout(Duration),
    /// The guest tried to grow its memory past the limit.
    #[error("the operator needed more than the {} MiB memory limit ([limits] memory)", .0 >> 20)]
    OutOfMemory(u64),
    /// The guest broke the protocol (e.g. returned a malformed batch).
    #[error("the operator broke the Weir protocol: {0}")]
    Protocol(String),
    /// Any other trap (out-of-bounds access, unreachable, …).
    #[error("the operator trapped: {0}")]
    Trap(String),
    /// The job was stopping (another task failed, or it was cancelled), so
    /// the call was interrupted. Never a job's root cause.
    #[error("the call was interrupted because the job is stopping")]
    Interrupted,
}
