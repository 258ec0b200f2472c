//! `weir checkpoints list` (what a job's checkpoint store holds, one row per
//! checkpoint, complete or not, read from listings and manifests only) and
//! `weir inspect` (one manifest in human form, with where each source
//! stood and what each sink held, read from their state objects).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::HumanBytes;

use weir_sdk::keygroup;

use super::manifest::Manifest;
use super::paths::Paths;
use super::state::{self, SourcePosition, TaskState};
use super::storage::Storage;
use crate::Error;

/// One checkpoint in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Checkpoint id.
    pub id: u64,
    /// `complete`, `final` (complete, taken at the end of input),
    /// `incomplete` (no manifest: in flight, abandoned or cut off), or
    /// `unreadable` (a manifest that cannot be parsed).
    pub status: &'static str,
    /// When it was triggered (complete) or last written to (incomplete).
    pub time: SystemTime,
    /// Trigger to manifest, for complete ones.
    pub duration: Option<Duration>,
    /// Bytes of state (complete: from the manifest; else what is stored).
    pub bytes: u64,
}

/// Every checkpoint of the store's job, ascending by id.
///
/// # Errors
/// [`Error::Storage`] when the store cannot be listed.
pub fn rows(storage: &Storage) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for listed in storage.list()? {
        let mut row =
            Row { id: listed.id, status: "incomplete", time: listed.modified, duration: None, bytes: listed.bytes };
        if listed.has_manifest {
            match storage.read_manifest(listed.id) {
                Ok(m) => {
                    row.status = if m.finished { "final" } else { "complete" };
                    row.time = UNIX_EPOCH + Duration::from_millis(m.triggered_at_ms);
                    row.duration = Some(Duration::from_millis(m.duration_ms));
                    row.bytes = m.total_bytes;
                }
                Err(e) => {
                    tracing::warn!("checkpoint {}: {e}", listed.id);
                    row.status = "unreadable";
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// `rows` as an aligned text table with a header.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!("{:>10}  {:<10}  {:<24}  {:>9}  {:>10}\n", "ID", "STATUS", "TIME (UTC)", "DURATION", "SIZE");
    for r in rows {
        let time = humantime::format_rfc3339_millis(r.time).to_string();
        let duration = r.duration.map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()));
        let _ = writeln!(
            out,
            "{:>10}  {:<10}  {time:<24}  {duration:>9}  {:>10}",
            r.id,
            r.status,
            HumanBytes(r.bytes).to_string()
        );
    }
    out
}

/// `weir inspect`: a manifest in human form — job, operators, module
/// versions, parallelism, key-group ranges, sizes.
pub fn inspect(m: &Manifest, location: &str, storage: &Storage) -> String {
    let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(m.triggered_at_ms));
    let mut out = format!(
        "{} {} of job `{}` at {location}\n  taken {time} in {} ms{}; {} in all; {} key groups (max_parallelism)\n",
        m.kind,
        m.checkpoint_id,
        m.job,
        m.duration_ms,
        if m.finished { ", after all input was processed (final)" } else { "" },
        HumanBytes(m.total_bytes),
        m.max_parallelism
    );
    for node in &m.nodes {
        let module = node.module.as_ref().map_or_else(String::new, |md| {
            format!(" — {} {} (state version {})", md.name, md.version, md.state_version)
        });
        let _ = writeln!(out, "\n  {} `{}` ×{}{module}", node.kind, node.id, node.parallelism);
        for s in &node.subtasks {
            let groups = if node.kind == "operator" {
                let r = keygroup::key_group_range(s.subtask, node.parallelism, m.max_parallelism);
                format!("  key groups {}..{}", r.start, r.end)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "    subtask {:<3} {:>10}  {}{groups}",
                s.subtask,
                HumanBytes(s.size).to_string(),
                s.object
            );
            if node.kind == "source" || node.kind == "sink" {
                let at = storage
                    .get(&Paths::object_in(&storage.root_dir(), &s.object))
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| state::decode(&bytes))
                    .map_or_else(|e| format!("unreadable: {e}"), |st| describe(&st));
                let _ = writeln!(out, "                {at}");
            }
        }
    }
    out
}

/// Where a source stood, or what a sink held, in one line.
pub fn describe(state: &TaskState) -> String {
    match state {
        TaskState::Source(SourcePosition::EventTime { position, max_timestamp }) => {
            let at = describe(&TaskState::Source((**position).clone()));
            if *max_timestamp == i64::MIN {
                format!("{at}; no event time read yet")
            } else {
                format!("{at}; event time read up to {max_timestamp} ms")
            }
        }
        TaskState::Source(p) => match p {
            SourcePosition::EventTime { .. } => unreachable!("matched above"),
            SourcePosition::Finished => "finished: all input read".into(),
            SourcePosition::Generator { next } => format!("next record {next}"),
            SourcePosition::File { file, offset } => format!("file #{file} at byte {offset}"),
            SourcePosition::FileRange { split, offset } => format!("range #{split} at byte {offset}"),
            SourcePosition::FileAt(f) => match &f.file {
                Some(name) => format!("{name} at byte {}", f.offset),
                None => "every file of its share read".into(),
            },
            SourcePosition::Kafka(k) if !k.started => "had not started reading (restores as a fresh start)".into(),
            SourcePosition::Kafka(k) => {
                const SHOWN: usize = 8;
                let mut parts: Vec<String> = k
                    .partitions
                    .iter()
                    .take(SHOWN)
                    .map(|p| {
                        let stop = match (p.stop, p.done) {
                            (_, true) => " done".to_owned(),
                            (Some(s), false) => format!(" of {s}"),
                            (None, false) => String::new(),
                        };
                        format!("{}/{} @{}{stop}", p.topic, p.partition, p.next)
                    })
                    .collect();
                if k.partitions.len() > SHOWN {
                    parts.push(format!("… {} more", k.partitions.len() - SHOWN));
                }
                if parts.is_empty() {
                    "no partitions assigned".into()
                } else {
                    format!("next offsets {}", parts.join(", "))
                }
            }
        },
        TaskState::Sink(s) if s.pending.is_empty() => "nothing pending".into(),
        TaskState::Sink(s) => format!("{} file(s) to commit: {}", s.pending.len(), s.pending.join(", ")),
        TaskState::KafkaSink(k) => {
            let segments: Vec<_> = k.writers.iter().flat_map(|w| &w.segments).collect();
            if segments.is_empty() {
                return "nothing to publish".into();
            }
            let records: usize = segments.iter().map(|s| weir_sdk::frame::read(&s.records).count()).sum();
            let first = segments.iter().map(|s| s.checkpoint).min().unwrap_or(0);
            let last = segments.iter().map(|s| s.checkpoint).max().unwrap_or(0);
            format!("{records} record(s) sealed at checkpoints {first}..={last}, published unless Kafka has them")
        }
        TaskState::Operator(_) => String::new(),
    }
}
