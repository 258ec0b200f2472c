//! What one subtask's snapshot holds, and its byte encoding.
//!
//! A state object is `WEIRST` + a format version (u16 LE) + a bincode body of
//! [`TaskState`]. Byte blobs use `serde_bytes`, so a 200 MB keyed state is
//! copied in bulk, not element by element.

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 6] = b"WEIRST";
/// Format 2 added [`SinkState::dir`], format 3 [`OperatorState::watermark`];
/// format 1 and 2 objects still decode.
const FORMAT: u16 = 3;

/// One subtask's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Where a source subtask stood.
    Source(SourcePosition),
    /// A Wasm operator instance.
    Operator(OperatorState),
    /// A sink subtask's uncommitted output.
    Sink(SinkState),
    /// A `kafka` sink subtask's sealed, maybe unpublished, output.
    KafkaSink(KafkaSinkState),
}

impl TaskState {
    /// A sink's state: whether it had consumed all its input (`None` for
    /// other kinds).
    pub fn sink_finished(&self) -> Option<bool> {
        match self {
            Self::Sink(s) => Some(s.finished),
            Self::KafkaSink(s) => Some(s.finished),
            _ => None,
        }
    }

    /// `source`, `operator` or `sink`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(_) => "source",
            Self::Operator(_) => "operator",
            Self::Sink(_) | Self::KafkaSink(_) => "sink",
        }
    }
}

/// A source's position: everything before it was emitted before the barrier.
///
/// Bincode encodes a variant by its index: new variants go at the end, and
/// none is ever reordered or removed, so older checkpoints keep decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourcePosition {
    /// Byte `offset` into the subtask's `file`-th file. Written by Weir
    /// before [`FileAt`](Self::FileAt); still restored, by index.
    File {
        /// Index into the subtask's sorted file list.
        file: u64,
        /// Bytes of that file already read.
        offset: u64,
    },
    /// Next sequence number of a generator subtask.
    Generator {
        /// Next record number.
        next: u64,
    },
    /// The source was exhausted.
    Finished,
    /// Byte `offset` into the subtask's `split`-th byte range (a file source
    /// with fewer files than subtasks cuts each file into ranges). Written by
    /// Weir before [`FileAt`](Self::FileAt); still restored, by index.
    FileRange {
        /// Index into the subtask's list of ranges.
        split: u64,
        /// Absolute offset in that range's file of the next unread line.
        offset: u64,
    },
    /// Where a `file` source subtask stands, naming its file and the input
    /// it was reading, so a restore can tell that it reads the same files.
    FileAt(FilePosition),
    /// Where a `kafka` source subtask stands in each of its partitions.
    Kafka(KafkaPosition),
    /// A source with a watermark strategy: its position, and the largest
    /// event timestamp it had read (its watermark follows from it), so
    /// event time resumes where it stood.
    EventTime {
        /// Where it stood (never `EventTime` itself).
        position: Box<SourcePosition>,
        /// The largest timestamp read (`i64::MIN`: none yet).
        max_timestamp: i64,
    },
}

impl SourcePosition {
    /// The position without event time, and the largest timestamp read if kept.
    pub fn split_event_time(self) -> (SourcePosition, Option<i64>) {
        match self {
            Self::EventTime { position, max_timestamp } => (*position, Some(max_timestamp)),
            other => (other, None),
        }
    }
}

/// A `kafka` source subtask's partitions (after a rescale: every old
/// subtask's, each new subtask keeping those assigned to it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPosition {
    /// The subtask had assigned its partitions (resolved its start and stop
    /// offsets). If not, restoring it is a fresh start.
    pub started: bool,
    /// The source reads a bounded range (`stop = "latest"`): the partitions
    /// listed are all it reads.
    pub bounded: bool,
    /// One entry per partition.
    pub partitions: Vec<KafkaPartitionPosition>,
}

/// One partition's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPartitionPosition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset of the next record to emit.
    pub next: i64,
    /// Bounded reads: the end offset fixed at the first start.
    pub stop: Option<i64>,
    /// Bounded reads: everything before `stop` was emitted.
    pub done: bool,
}

/// A `kafka` sink subtask's output sealed at checkpoints and not yet known
/// to be in Kafka (see `connectors::kafka::sink`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSinkState {
    /// The sink had consumed all its input.
    pub finished: bool,
    /// Per writer id (several after a rescale to fewer subtasks).
    pub writers: Vec<KafkaWriterState>,
}

/// What one writer (a sink subtask's id) sealed and may not have published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaWriterState {
    /// The writer's id, in a header of every record it publishes.
    pub writer: String,
    /// Sealed segments, oldest first.
    pub segments: Vec<KafkaSegment>,
}

/// Records written between two barriers, sealed at checkpoint `checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSegment {
    /// The checkpoint whose barrier sealed them (`u64::MAX`: end of input).
    pub checkpoint: u64,
    /// Each partition's end offset when they were sealed: none of them can
    /// be before it (they are published only once the checkpoint completes).
    pub from: Vec<(i32, i64)>,
    /// The records, framed.
    #[serde(with = "serde_bytes")]
    pub records: Vec<u8>,
}

/// A `file` source subtask's position by file name (see
/// `connectors::file_source` for how a restore checks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// Whether the input was read as byte ranges (else as whole files).
    pub ranged: bool,
    /// The input the job read: a restore refuses any other.
    pub input: InputListing,
    /// The file being read, by its name in the input (relative to the
    /// source's `path`); `None` once every file of the subtask's share is read.
    pub file: Option<String>,
    /// Offset in that file of the next unread line.
    pub offset: u64,
    /// XXH3-64 of the file's first `min(offset, 4 KiB)` bytes, to tell the
    /// same file from another of the same name; `None` when this run had not
    /// opened the file yet (nothing of it was read, so there is nothing to check).
    pub head: Option<u64>,
}

/// Which files a `file` source reads: enough to tell that a restore sees
/// the same input, small enough to store at every checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputListing {
    /// Number of files.
    pub files: u64,
    /// XXH3-64 of the sorted names (and, for byte ranges, each file's
    /// length, since the ranges depend on it).
    pub hash: u64,
    /// The sorted names, kept only while they are short (at most 4 KiB in
    /// all) so a refused restore can say which files were added or removed;
    /// empty otherwise. Not part of equality.
    pub names: Vec<String>,
}

impl PartialEq for InputListing {
    fn eq(&self, other: &Self) -> bool {
        (self.files, self.hash) == (other.files, other.hash)
    }
}

impl Eq for InputListing {}

/// A Wasm operator's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator had consumed all its input and finished.
    pub finished: bool,
    /// What the guest's `snapshot` returned (none once finished).
    pub guest: Option<GuestState>,
    /// The operator's event time at the snapshot: its task's watermark
    /// (`None`: none yet). A restore hands it back before any record, so
    /// what was late stays late and no window fires twice.
    pub watermark: Option<i64>,
}

/// The guest's exported state (the WIT `state` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestState {
    /// The operator's `state-version`.
    pub version: u32,
    /// Non-keyed state blobs.
    pub operator: Vec<serde_bytes::ByteBuf>,
    /// Keyed state by key group.
    pub keyed: Vec<KeyGroupBytes>,
}

/// One key group's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupBytes {
    /// Key group.
    pub group: u32,
    /// Framed `(key, value)` entries.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A file sink's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// The sink had consumed all its input.
    pub finished: bool,
    /// In-progress files (names in the output directory) to commit once
    /// this checkpoint is complete — or on restore from it.
    pub pending: Vec<String>,
    /// Next part number; parts numbered from here on belong to later checkpoints.
    pub next_part: u64,
    /// The absolute output directory the names above are in (format 2; a
    /// job resumed from a savepoint may write somewhere else).
    pub dir: Option<String>,
}

/// Format 2, for decoding old state objects: as [`TaskState`] before
/// [`OperatorState::watermark`].
mod v2 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub enum TaskState {
        Source(super::SourcePosition),
        Operator(OperatorState),
        Sink(super::SinkState),
        KafkaSink(super::KafkaSinkState),
    }

    #[derive(Deserialize)]
    pub struct OperatorState {
        finished: bool,
        guest: Option<super::GuestState>,
    }

    impl From<OperatorState> for super::OperatorState {
        fn from(OperatorState { finished, guest }: OperatorState) -> Self {
            Self { finished, guest, watermark: None }
        }
    }

    impl From<TaskState> for super::TaskState {
        fn from(old: TaskState) -> Self {
            match old {
                TaskState::Source(p) => Self::Source(p),
                TaskState::Operator(o) => Self::Operator(o.into()),
                TaskState::Sink(s) => Self::Sink(s),
                TaskState::KafkaSink(k) => Self::KafkaSink(k),
            }
        }
    }
}

/// Format 1, for decoding old state objects: as [`TaskState`] before
/// [`SinkState::dir`].
mod v1 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub enum TaskState {
        Source(super::SourcePosition),
        Operator(super::v2::OperatorState),
        Sink(SinkState),
    }

    #[derive(Deserialize)]
    pub struct SinkState {
        finished: bool,
        pending: Vec<String>,
        next_part: u64,
    }

    impl From<TaskState> for super::TaskState {
        fn from(old: TaskState) -> Self {
            match old {
                TaskState::Source(p) => Self::Source(p),
                TaskState::Operator(o) => Self::Operator(o.into()),
                TaskState::Sink(SinkState { finished, pending, next_part }) => {
                    Self::Sink(super::SinkState { finished, pending, next_part, dir: None })
                }
            }
        }
    }
}

/// Encodes a state object.
pub fn encode(state: &TaskState) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    bincode::serde::encode_into_std_write(state, &mut out, bincode::config::standard())
        .expect("encoding into a Vec cannot fail");
    out
}

/// Decodes a state object.
///
/// # Errors
/// A message saying what is wrong with the bytes.
pub fn decode(bytes: &[u8]) -> Result<TaskState, String> {
    decode_versioned(bytes).map_err(|e| match e {
        Undecodable::Unsupported(m) | Undecodable::Corrupt(m) => m,
    })
}

/// Why a state object cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecodable {
    /// A format this build does not read (written by a newer Weir): not
    /// damage, so no reason to fall back to an older checkpoint.
    Unsupported(String),
    /// Damaged or not a state object.
    Corrupt(String),
}

/// As [`decode`], telling an unsupported format from damage.
///
/// # Errors
/// [`Undecodable`] saying which, and what is wrong.
pub fn decode_versioned(bytes: &[u8]) -> Result<TaskState, Undecodable> {
    let corrupt = |m: &str| Undecodable::Corrupt(m.to_owned());
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| corrupt("not a Weir state object (bad magic)"))?;
    let (version, body) = body.split_at_checked(2).ok_or_else(|| corrupt("truncated state object"))?;
    let version = u16::from_le_bytes([version[0], version[1]]);
    match version {
        1 => decode_body::<v1::TaskState>(body).map(Into::into).map_err(Undecodable::Corrupt),
        2 => decode_body::<v2::TaskState>(body).map(Into::into).map_err(Undecodable::Corrupt),
        FORMAT => decode_body(body).map_err(Undecodable::Corrupt),
        _ => Err(Undecodable::Unsupported(format!(
            "state object format {version} is not supported (this weir reads 1 to {FORMAT}): it was written by a \
             newer Weir"
        ))),
    }
}

/// Decodes `body`, never allocating for a length the bytes cannot hold: a
/// hostile length field (a valid checksum is easy to compute) would
/// otherwise make the allocator abort the host. bincode checks every
/// container's claimed size against a limit before allocating; the limit is
/// a constant, so it is picked by tier — at least 32× the body (a valid
/// container may claim up to `size_of` of its elements per encoded byte).
fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    const KIB: usize = 1 << 10;
    let decoded = match body.len() {
        n if n <= 2 * KIB => limited::<T, { 64 * KIB }>(body),
        n if n <= 2 * KIB * KIB => limited::<T, { 64 * KIB * KIB }>(body),
        n if n <= 64 * KIB * KIB => limited::<T, { 2 * KIB * KIB * KIB }>(body),
        _ => limited::<T, { 64 * KIB * KIB * KIB }>(body),
    };
    let (state, used) = decoded.map_err(|e| format!("corrupt state object: {e}"))?;
    if used != body.len() {
        return Err("corrupt state object: trailing bytes".into());
    }
    Ok(state)
}

fn limited<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<LIMIT>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the bounded fuzzing (`no_panic`): a length field claiming
    /// petabytes made the allocator abort the host.
    #[test]
    fn a_hostile_length_is_an_error_not_an_abort() {
        let mut bomb = MAGIC.to_vec();
        bomb.extend_from_slice(&FORMAT.to_le_bytes());
        // TaskState::Operator, not finished, Some(guest), version 1, no blobs,
        // one keyed entry: group 0, then a byte length of u64::MAX / 2.
        bomb.extend_from_slice(&[1, 0, 1, 1, 0, 1, 0, 253]);
        bomb.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(decode(&bomb).unwrap_err().contains("corrupt"));
    }

    #[test]
    fn every_kind_round_trips() {
        let states = [
            TaskState::Source(SourcePosition::File { file: 2, offset: 1 << 40 }),
            TaskState::Source(SourcePosition::Finished),
            TaskState::Source(SourcePosition::FileRange { split: 1, offset: 77 }),
            TaskState::Source(SourcePosition::FileAt(FilePosition {
                ranged: true,
                input: InputListing { files: 2, hash: 99, names: vec!["a.txt".into(), "b.txt".into()] },
                file: Some("b.txt".into()),
                offset: 12,
                head: Some(7),
            })),
            TaskState::Operator(OperatorState {
                finished: false,
                guest: Some(GuestState {
                    version: 3,
                    operator: vec![serde_bytes::ByteBuf::from(vec![1, 2])],
                    keyed: vec![KeyGroupBytes { group: 7, bytes: vec![9; 1000] }],
                }),
                watermark: Some(-5),
            }),
            TaskState::Sink(SinkState {
                finished: true,
                pending: vec![".part-0-3.inprogress".into()],
                next_part: 4,
                dir: Some("/out".into()),
            }),
            TaskState::Source(SourcePosition::Kafka(KafkaPosition {
                started: true,
                bounded: true,
                partitions: vec![KafkaPartitionPosition {
                    topic: "t".into(),
                    partition: 3,
                    next: 10,
                    stop: Some(12),
                    done: false,
                }],
            })),
            TaskState::KafkaSink(KafkaSinkState {
                finished: false,
                writers: vec![KafkaWriterState {
                    writer: "weir-j-out-0".into(),
                    segments: vec![KafkaSegment {
                        checkpoint: 4,
                        from: vec![(0, 17), (1, 3)],
                        records: vec![0, 1, 0, 0, 0, b'a'],
                    }],
                }],
            }),
        ];
        for s in states {
            assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }

    /// Format 1 objects (before the sink's directory was recorded) still decode.
    #[test]
    fn format_1_sink_state_decodes() {
        let mut old = MAGIC.to_vec();
        old.extend_from_slice(&1u16.to_le_bytes());
        // TaskState::Sink (variant 2), finished, one pending name, next_part 4.
        old.extend_from_slice(&[2, 1, 1, 3, b'a', b'b', b'c', 4]);
        let expected = SinkState { finished: true, pending: vec!["abc".into()], next_part: 4, dir: None };
        assert_eq!(decode(&old).unwrap(), TaskState::Sink(expected));
    }

    /// The variants before `FileAt` keep their bincode encoding (variant
    /// index, then fields): checkpoints written by earlier versions decode.
    #[test]
    fn earlier_source_positions_keep_their_encoding() {
        let encoded = |p: SourcePosition| encode(&TaskState::Source(p))[8..].to_vec();
        // TaskState::Source = 0, then the SourcePosition variant, then varints.
        assert_eq!(encoded(SourcePosition::File { file: 1, offset: 5 }), [0, 0, 1, 5]);
        assert_eq!(encoded(SourcePosition::Generator { next: 3 }), [0, 1, 3]);
        assert_eq!(encoded(SourcePosition::Finished), [0, 2]);
        assert_eq!(encoded(SourcePosition::FileRange { split: 2, offset: 9 }), [0, 3, 2, 9]);
        let old = [MAGIC.as_slice(), &1u16.to_le_bytes(), &[0, 0, 1, 5]].concat();
        assert_eq!(decode(&old).unwrap(), TaskState::Source(SourcePosition::File { file: 1, offset: 5 }));
    }

    #[test]
    fn garbage_is_rejected_not_misread() {
        assert!(decode(b"hello").is_err());
        let mut bytes = encode(&TaskState::Source(SourcePosition::Generator { next: 5 }));
        bytes.truncate(bytes.len() - 1);
        assert!(decode(&bytes).is_err());
        let mut future = encode(&TaskState::Source(SourcePosition::Finished));
        future[6] = 9;
        assert!(decode(&future).unwrap_err().contains("format 9"));
    }
}
