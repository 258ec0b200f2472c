//! The checkpoint manifest: the last object written for a checkpoint, and
//! the only proof that it is complete. JSON, so a person can read it;
//! versioned by `format`. Documented in the README ("Checkpoint storage").

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// A complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`FORMAT`]).
    pub format: u32,
    /// Job name.
    pub job: String,
    /// Checkpoint id (increases across runs of the job).
    pub checkpoint_id: u64,
    /// `checkpoint` (periodic, owned by the job's store and its retention)
    /// or `savepoint` (taken on request, self-contained, never deleted by Weir).
    #[serde(default = "checkpoint_kind")]
    pub kind: String,
    /// Every task had finished: restoring it ends the job at once.
    pub finished: bool,
    /// When the checkpoint was triggered (ms since the Unix epoch).
    pub triggered_at_ms: u64,
    /// Trigger to manifest, in ms.
    pub duration_ms: u64,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// Sum of all state object sizes.
    pub total_bytes: u64,
    /// Sources, operators and sinks, in plan order.
    pub nodes: Vec<NodeEntry>,
}

/// One node's state objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Node id from the job file.
    pub id: String,
    /// `source`, `operator` or `sink`.
    pub kind: String,
    /// Parallelism when the checkpoint was taken.
    pub parallelism: u32,
    /// For operators: the module's name, version and state version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleEntry>,
    /// One entry per subtask, by subtask index.
    pub subtasks: Vec<SubtaskEntry>,
}

/// Which operator build wrote a node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleEntry {
    /// Crate name from the operator's descriptor.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// State layout version.
    pub state_version: u32,
}

/// One subtask's state object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskEntry {
    /// Subtask index.
    pub subtask: u32,
    /// Object path relative to the checkpoint directory.
    pub object: String,
    /// Size in bytes.
    pub size: u64,
    /// `xxh3-64:<16 hex digits>` of the object's bytes.
    pub checksum: String,
    /// Time the subtask spent aligning barriers, in ms.
    pub alignment_ms: u64,
    /// Time the subtask's record path paused to snapshot, in ms.
    pub sync_ms: u64,
}

/// The checksum string of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    format!("xxh3-64:{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

impl Manifest {
    /// Parses a manifest.
    ///
    /// # Errors
    /// When the bytes are not a manifest of a supported format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
        if m.format != FORMAT {
            return Err(format!("manifest format {} is not supported (this weir reads {FORMAT})", m.format));
        }
        Ok(m)
    }

    /// The `format` of a manifest, if `bytes` say one, however the rest
    /// reads: a newer format is not damage, but the wrong Weir.
    pub fn format_of(bytes: &[u8]) -> Option<u32> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        serde_json::from_slice::<Format>(bytes).ok().map(|f| f.format)
    }
}

fn checkpoint_kind() -> String {
    "checkpoint".into()
}
