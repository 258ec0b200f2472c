//! Choosing what to restore, and fitting it to the job.
//!
//! - After a crash or failure: the newest complete checkpoint whose every
//!   state object is present with the recorded size and checksum. Only
//!   *verified damage* — a size or checksum mismatch, an object the manifest
//!   names that the store says is not there, an unparseable manifest or
//!   state — skips a checkpoint (with a warning naming what is wrong) for
//!   the one before it. Any other storage error (a timeout, a 5xx, a
//!   permission error) was already retried by [`Storage::get`] and now fails
//!   the attempt without touching any output: falling back would make sinks
//!   retract output committed for a checkpoint that is perfectly fine. A
//!   checkpoint of a different job graph is an error too: restoring it
//!   would silently drop state.
//! - From a savepoint (`--from-savepoint`): state is matched to nodes by id.
//!   A node without saved state starts empty; saved state without a node is
//!   an error unless allowed. An operator may change its module (the new
//!   one gets the old state version and may migrate) and its parallelism:
//!   keyed state moves by key group, operator-wide blobs go to every new
//!   subtask (union). Sources and sinks keep their parallelism.

use std::collections::HashMap;

use object_store::path::Path;
use weir_sdk::keygroup;

use super::manifest::{Manifest, NodeEntry, checksum};
use super::paths::Paths;
use super::state::{self, GuestState, KafkaPosition, KafkaSinkState, OperatorState, SourcePosition, TaskState};
use crate::job::plan::LOCAL_SUFFIX;
use std::time::Duration;

use super::coordinator::{NodeInfo, node_entries, subtask_entry, unix_ms};
use super::storage::{JobListing, Storage};
use crate::Error;
use crate::connectors::file_sink;
use crate::job::{JobPlan, NodeKind};
use crate::wasm::OperatorModule;

/// A checkpoint loaded and verified, ready to hand out per-subtask state.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint's manifest.
    pub manifest: Manifest,
    states: HashMap<(String, u32), TaskState>,
}

impl Restored {
    /// The checkpoint id.
    pub fn id(&self) -> u64 {
        self.manifest.checkpoint_id
    }

    /// The state of `node`'s `subtask`, if the checkpoint has it.
    pub fn state(&self, node: &str, subtask: u32) -> Option<&TaskState> {
        self.states.get(&(node.to_owned(), subtask))
    }
}

/// What [`find_latest`] found.
#[derive(Debug)]
pub struct Found {
    /// The checkpoint to restore, if any is usable.
    pub restored: Option<Restored>,
    /// Complete checkpoints skipped as damaged, newest first, with why.
    pub skipped: Vec<(u64, String)>,
    /// What the store held (ids, retention, owners).
    pub listing: JobListing,
}

/// Finds and loads the newest usable complete checkpoint of `plan`'s job
/// among those numbered `since` or later (a `--fresh` run ignores older ones).
///
/// # Errors
/// [`Error::Storage`] when the store cannot be listed; [`Error::InvalidJob`]
/// when the newest usable checkpoint belongs to a different job graph;
/// [`Error::Corrupt`] when complete checkpoints exist but none is usable.
pub fn find_latest(storage: &Storage, plan: &JobPlan, since: u64) -> Result<Found, Error> {
    let listing = storage.list_job()?;
    let mut skipped = Vec::new();
    let complete: Vec<u64> =
        listing.checkpoints.iter().rev().filter(|l| l.has_manifest && l.id >= since).map(|l| l.id).collect();
    for id in complete {
        match load(storage, id, plan) {
            Ok(restored) => return Ok(Found { restored: Some(restored), skipped, listing }),
            Err(e) if !is_damage(&e) => return Err(e),
            Err(e) => {
                tracing::warn!("checkpoint {id} is unusable ({e}); falling back to the previous complete checkpoint");
                skipped.push((id, e.to_string()));
            }
        }
    }
    if let Some((newest, why)) = skipped.first() {
        return Err(Error::Corrupt(format!(
            "no usable checkpoint in {}: the newest, {newest}, is unusable ({why}), and so is every older one; \
             repair or remove them, or start over with --fresh",
            storage.url()
        )));
    }
    Ok(Found { restored: None, skipped, listing })
}

/// Verified damage (a reason to fall back), as opposed to a failing store
/// or a checkpoint that does not fit the job (reasons to stop).
fn is_damage(e: &Error) -> bool {
    matches!(e, Error::Corrupt(_)) || e.is_not_found()
}

/// Loads and verifies checkpoint `id`.
fn load(storage: &Storage, id: u64, plan: &JobPlan) -> Result<Restored, Error> {
    let dir = storage.paths().checkpoint(id);
    let manifest = storage.read_manifest_in(&dir)?;
    check_graph(&manifest, plan)?;
    let states = load_states(storage, &dir, &manifest)?;
    Ok(Restored { manifest, states })
}

/// Every state object of the checkpoint or savepoint in `dir`, verified.
fn load_states(storage: &Storage, dir: &Path, manifest: &Manifest) -> Result<HashMap<(String, u32), TaskState>, Error> {
    let mut states = HashMap::new();
    for node in &manifest.nodes {
        // Every subtask exactly once: a manifest that leaves one out would
        // restore it empty, silently.
        let mut indices: Vec<u32> = node.subtasks.iter().map(|s| s.subtask).collect();
        indices.sort_unstable();
        if !indices.iter().copied().eq(0..node.parallelism) {
            return Err(Error::Corrupt(format!(
                "the manifest lists subtasks {indices:?} of `{}`, which has parallelism {}",
                node.id, node.parallelism
            )));
        }
        for sub in &node.subtasks {
            let bytes = storage.get(&Paths::object_in(dir, &sub.object))?;
            if bytes.len() as u64 != sub.size || checksum(&bytes) != sub.checksum {
                return Err(Error::Corrupt(format!(
                    "state object {} has {} bytes with checksum {}, the manifest says {} bytes with {}",
                    sub.object,
                    bytes.len(),
                    checksum(&bytes),
                    sub.size,
                    sub.checksum
                )));
            }
            let state = state::decode_versioned(&bytes).map_err(|e| match e {
                state::Undecodable::Unsupported(m) => Error::InvalidJob(format!("state object {}: {m}", sub.object)),
                state::Undecodable::Corrupt(m) => Error::Corrupt(format!("state object {}: {m}", sub.object)),
            })?;
            states.insert((node.id.clone(), sub.subtask), state);
        }
    }
    Ok(states)
}

/// The state of an operator instance that holds none: what a restore
/// point records for a pre-aggregation's local instance new to the job.
const EMPTY_OPERATOR: TaskState =
    TaskState::Operator(state::OperatorState { finished: false, guest: None, watermark: None });

/// Whether every saved subtask of `node` holds no state: what a
/// pre-aggregation's local instance saves.
fn stateless(saved: &HashMap<(String, u32), TaskState>, node: &str, parallelism: u32) -> bool {
    (0..parallelism).all(|s| match saved.get(&(node.to_owned(), s)) {
        Some(TaskState::Operator(op)) => {
            op.guest.as_ref().is_none_or(|g| g.keyed.is_empty() && g.operator.iter().all(|blob| blob.is_empty()))
        }
        _ => false,
    })
}

/// Writes `restored` (a savepoint fitted to `plan`) into the job's store as
/// complete checkpoint `id`, before the job starts: from then on, failovers
/// and plain reruns resume from it — not from a checkpoint older than the
/// savepoint, whose output the savepoint's run may have committed past.
/// Returns false (writing nothing) when some node has no saved state to
/// write (it starts empty; then only this process can resume from the
/// savepoint).
///
/// # Errors
/// [`Error::Storage`] when the store fails; [`Error::Conflict`] if fenced.
pub fn write_restore_point(
    storage: &Storage,
    lease: Option<&super::lease::Lease>,
    plan: &JobPlan,
    nodes: &[NodeInfo],
    restored: &Restored,
    id: u64,
) -> Result<bool, Error> {
    let mut objects = Vec::new();
    for (n, node) in plan.nodes.iter().enumerate() {
        for s in 0..node.parallelism {
            let state = match restored.state(&node.id, s) {
                Some(state) => state,
                // A local instance new to the job: it has nothing to save anyway.
                None if node.is_local_instance() => &EMPTY_OPERATOR,
                None => return Ok(false),
            };
            objects.push(((n, s), state::encode(state)));
        }
    }
    if let Some(lease) = lease {
        lease.check()?;
    }
    let dir = storage.paths().checkpoint(id);
    let mut entries = std::collections::BTreeMap::new();
    for ((n, s), bytes) in objects {
        let entry = subtask_entry(&plan.nodes[n].id, s, &bytes, Duration::ZERO, Duration::ZERO);
        storage.put_new(&Paths::object_in(&dir, &entry.object), bytes)?;
        entries.insert((n, s), entry);
    }
    let nodes =
        node_entries(nodes, &entries).ok_or_else(|| Error::Internal("restore point: a node is missing".into()))?;
    let manifest = Manifest {
        format: super::manifest::FORMAT,
        job: plan.name.clone(),
        checkpoint_id: id,
        kind: "checkpoint".into(),
        finished: restored.manifest.finished,
        triggered_at_ms: unix_ms(),
        duration_ms: 0,
        max_parallelism: plan.max_parallelism,
        total_bytes: nodes.iter().flat_map(|n| &n.subtasks).map(|e| e.size).sum(),
        nodes,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(format!("restore point: {e}")))?;
    storage.put_new(&Paths::manifest_in(&dir), json)?;
    tracing::info!(
        "checkpoint {id} holds the state of {} {} (a restore point for failovers and reruns)",
        restored.manifest.kind,
        restored.id()
    );
    Ok(true)
}

/// Loads the savepoint (or retained checkpoint) at `storage`'s root and fits
/// it to `plan`, whose operator modules are `modules` (index-aligned).
///
/// # Errors
/// [`Error::InvalidJob`] when the savepoint does not fit the job (state for
/// a node that is gone — unless `allow_non_restored` —, a changed source or
/// sink parallelism, a different `max_parallelism`, a state version newer
/// than the new module's); [`Error::Corrupt`] / [`Error::Storage`] when it
/// cannot be read.
pub fn from_savepoint(
    storage: &Storage,
    plan: &JobPlan,
    modules: &[Option<OperatorModule>],
    allow_non_restored: bool,
) -> Result<Restored, Error> {
    let dir = storage.root_dir();
    let manifest = storage.read_manifest_in(&dir).map_err(|e| match e {
        Error::Storage { .. } => {
            Error::InvalidJob(format!("{} is not a savepoint: it has no readable _manifest.json ({e})", storage.url()))
        }
        other => other,
    })?;
    let saved = load_states(storage, &dir, &manifest)?;
    let what = format!("{} {} of job `{}` ({})", manifest.kind, manifest.checkpoint_id, manifest.job, storage.url());
    let misfit = |msg: String| Error::InvalidJob(format!("{what} does not fit this job: {msg}"));
    if manifest.max_parallelism != plan.max_parallelism {
        return Err(misfit(format!(
            "it has {} key groups (max_parallelism), the job {}; max_parallelism cannot change",
            manifest.max_parallelism, plan.max_parallelism
        )));
    }
    // A pre-aggregation's local instance holds no state: it may come and go.
    let orphans: Vec<&str> = manifest
        .nodes
        .iter()
        .filter(|n| !plan.nodes.iter().any(|p| p.id == n.id))
        .filter(|n| !(n.id.ends_with(LOCAL_SUFFIX) && stateless(&saved, &n.id, n.parallelism)))
        .map(|n| n.id.as_str())
        .collect();
    if !orphans.is_empty() {
        if !allow_non_restored {
            return Err(misfit(format!(
                "it has state for {}, which the job no longer has; rename the node back, or pass \
                 --allow-non-restored-state to drop that state",
                orphans.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        tracing::warn!("dropping the state of {} (--allow-non-restored-state)", orphans.join(", "));
    }
    let mut states = HashMap::new();
    for (n, node) in plan.nodes.iter().enumerate() {
        let Some(entry) = manifest.nodes.iter().find(|e| e.id == node.id) else {
            tracing::info!("`{}` has no state in the {}: it starts empty", node.id, manifest.kind);
            continue;
        };
        let old: Vec<&TaskState> = (0..entry.parallelism).filter_map(|s| saved.get(&(entry.id.clone(), s))).collect();
        if let (Some(module), Some(saved_module)) = (&modules[n], &entry.module) {
            let new_version = module.descriptor().state_version;
            if saved_module.state_version > new_version {
                return Err(misfit(format!(
                    "operator `{}` has state version {} (written by {} {}), but {} {} reads state versions up to {new_version}",
                    node.id,
                    saved_module.state_version,
                    saved_module.name,
                    saved_module.version,
                    module.descriptor().name,
                    module.descriptor().version
                )));
            }
        }
        if entry.parallelism == node.parallelism {
            for (s, state) in old.into_iter().enumerate() {
                states.insert((node.id.clone(), s as u32), state.clone());
            }
            continue;
        }
        if matches!(node.kind, NodeKind::KafkaSource(_) | NodeKind::KafkaSink(_)) {
            tracing::info!(
                "rescaling `{}` from {} to {} subtasks by Kafka partition / writer",
                node.id,
                entry.parallelism,
                node.parallelism
            );
            for s in 0..node.parallelism {
                let state = rescale_kafka(entry, &old, s, node.parallelism).map_err(misfit)?;
                states.insert((node.id.clone(), s), state);
            }
            continue;
        }
        if !matches!(node.kind, NodeKind::Operator { .. }) {
            return Err(misfit(format!(
                "`{}` had parallelism {}, now {}; only operators and Kafka sources and sinks can be rescaled",
                node.id, entry.parallelism, node.parallelism
            )));
        }
        tracing::info!(
            "rescaling `{}` from {} to {} subtasks by key group",
            node.id,
            entry.parallelism,
            node.parallelism
        );
        for s in 0..node.parallelism {
            let state = rescale(entry, &old, s, node.parallelism, plan.max_parallelism).map_err(misfit)?;
            states.insert((node.id.clone(), s), state);
        }
    }
    retarget_sinks(plan, &mut states)?;
    Ok(Restored { manifest, states })
}

/// A savepoint's file-sink state belongs to the directory it was taken in.
/// A job resumed with the sink pointed elsewhere starts that directory
/// afresh (the savepoint's own output stays where it is: a stop savepoint
/// committed it there), so the saved pending files and part numbers are
/// replaced by a fresh state for the new directory.
fn retarget_sinks(plan: &JobPlan, states: &mut HashMap<(String, u32), TaskState>) -> Result<(), Error> {
    for node in &plan.nodes {
        let NodeKind::FileSink { path } = &node.kind else { continue };
        for s in 0..node.parallelism {
            let Some(TaskState::Sink(state)) = states.get_mut(&(node.id.clone(), s)) else { continue };
            let same = state.dir.as_deref().is_none_or(|saved| file_sink::same_dir(std::path::Path::new(saved), path));
            if same {
                let missing = file_sink::missing_pending(path, s, state);
                if let Some(name) = missing.first() {
                    return Err(Error::InvalidJob(format!(
                        "sink `{}` subtask {s}: the savepoint's output {name} in {} is gone ({} file(s) in all): a \
                         savepoint taken while the job ran leaves its last output uncommitted until the next \
                         checkpoint, and a failover or rerun before that checkpoint removed it. Resume from a stop \
                         savepoint, a later savepoint, or the job's checkpoints",
                        node.id,
                        path.display(),
                        missing.len()
                    )));
                }
            }
            if !same {
                tracing::info!(
                    "sink `{}`: the savepoint was taken writing to {}; {} starts afresh",
                    node.id,
                    state.dir.as_deref().unwrap_or_default(),
                    path.display()
                );
                *state = file_sink::fresh_state(path, s, state.finished)?;
            }
        }
    }
    Ok(())
}

/// The state of new subtask `subtask` of `parallelism` for an operator saved
/// with other parallelism: the key groups it now owns, and every old
/// operator-wide blob (union redistribution).
fn rescale(
    entry: &NodeEntry,
    old: &[&TaskState],
    subtask: u32,
    parallelism: u32,
    max_parallelism: u32,
) -> Result<TaskState, String> {
    let mut ops: Vec<&OperatorState> = Vec::with_capacity(old.len());
    for state in old {
        match state {
            TaskState::Operator(op) => ops.push(op),
            other => return Err(format!("`{}` holds {} state, not operator state", entry.id, other.kind())),
        }
    }
    if ops.iter().all(|op| op.finished) {
        return Ok(TaskState::Operator(OperatorState { finished: true, guest: None, watermark: None }));
    }
    if ops.iter().any(|op| op.finished) {
        return Err(format!("`{}` cannot be rescaled: some of its subtasks had already finished", entry.id));
    }
    let owned = keygroup::key_group_range(subtask, parallelism, max_parallelism);
    let guests: Vec<&GuestState> = ops.iter().filter_map(|op| op.guest.as_ref()).collect();
    let version = guests.first().map_or(1, |g| g.version);
    let guest = GuestState {
        version,
        operator: guests.iter().flat_map(|g| g.operator.iter().cloned()).collect(),
        keyed: guests.iter().flat_map(|g| g.keyed.iter()).filter(|k| owned.contains(&k.group)).cloned().collect(),
    };
    // Behind a `key` edge every subtask had the same watermark at the
    // barrier; the largest keeps any window that fired from firing again.
    let watermark = ops.iter().filter_map(|op| op.watermark).max();
    Ok(TaskState::Operator(OperatorState { finished: false, guest: Some(guest), watermark }))
}

/// The state of new subtask `subtask` of `parallelism` for a Kafka source
/// or sink saved with other parallelism. A source gets every old
/// subtask's partitions (it keeps those assigned to it); a sink gets the
/// writers of old subtasks `j` with `j % parallelism == subtask`, so each
/// old writer's sealed output is published by exactly one new subtask.
fn rescale_kafka(entry: &NodeEntry, old: &[&TaskState], subtask: u32, parallelism: u32) -> Result<TaskState, String> {
    let finished = |f: &[bool]| -> Result<bool, String> {
        if f.iter().all(|&x| x) {
            Ok(true)
        } else if f.iter().any(|&x| x) {
            Err(format!("`{}` cannot be rescaled: some of its subtasks had already finished", entry.id))
        } else {
            Ok(false)
        }
    };
    if old.iter().all(|s| matches!(s, TaskState::Source(_))) {
        // Event time restarts from the least advanced old subtask's: no new
        // subtask may be ahead of a partition it takes over.
        let mut max_timestamp: Option<i64> = None;
        let old: Vec<TaskState> = old
            .iter()
            .map(|s| match s {
                TaskState::Source(p) => {
                    let (p, t) = p.clone().split_event_time();
                    if let Some(t) = t {
                        max_timestamp = Some(max_timestamp.map_or(t, |m| m.min(t)));
                    }
                    TaskState::Source(p)
                }
                other => (*other).clone(),
            })
            .collect();
        let timed = |position: SourcePosition| match max_timestamp {
            Some(max_timestamp) => SourcePosition::EventTime { position: Box::new(position), max_timestamp },
            None => position,
        };
        let mut bounded = false;
        let mut started = Vec::new();
        let mut partitions = Vec::new();
        let mut done = Vec::new();
        for state in &old {
            match state {
                TaskState::Source(SourcePosition::Kafka(p)) => {
                    bounded |= p.bounded;
                    started.push(p.started);
                    partitions.extend(p.partitions.iter().cloned());
                    done.push(false);
                }
                TaskState::Source(SourcePosition::Finished) => done.push(true),
                other => return Err(format!("`{}` holds {} state, not a Kafka source's", entry.id, other.kind())),
            }
        }
        if finished(&done)? {
            return Ok(TaskState::Source(SourcePosition::Finished));
        }
        let started = match (started.iter().all(|&s| s), started.iter().any(|&s| s)) {
            (true, _) => true,
            (false, false) => false,
            (false, true) => {
                return Err(format!(
                    "`{}` cannot be rescaled: some of its subtasks had not started reading when it was taken \
                     (take a later savepoint)",
                    entry.id
                ));
            }
        };
        return Ok(TaskState::Source(timed(SourcePosition::Kafka(KafkaPosition { started, bounded, partitions }))));
    }
    let mut flags = Vec::new();
    let mut writers = Vec::new();
    for (j, state) in old.iter().enumerate() {
        let TaskState::KafkaSink(s) = state else {
            return Err(format!("`{}` holds {} state, not a Kafka sink's", entry.id, state.kind()));
        };
        flags.push(s.finished);
        if j as u32 % parallelism == subtask {
            writers.extend(s.writers.iter().cloned());
        }
    }
    Ok(TaskState::KafkaSink(KafkaSinkState { finished: finished(&flags)?, writers }))
}

/// The checkpoint must describe the same nodes with the same parallelism.
fn check_graph(manifest: &Manifest, plan: &JobPlan) -> Result<(), Error> {
    let mismatch = |what: String| {
        Error::InvalidJob(format!(
            "checkpoint {} of job `{}` does not fit this job file: {what}. Start over with --fresh \
             (changing operators or parallelism needs a savepoint)",
            manifest.checkpoint_id, manifest.job
        ))
    };
    if manifest.max_parallelism != plan.max_parallelism {
        return Err(mismatch(format!(
            "max_parallelism was {}, is now {}",
            manifest.max_parallelism, plan.max_parallelism
        )));
    }
    for node in &plan.nodes {
        let Some(saved) = manifest.nodes.iter().find(|n| n.id == node.id) else {
            if node.is_local_instance() {
                continue;
            }
            return Err(mismatch(format!("it has no state for `{}`", node.id)));
        };
        if saved.parallelism != node.parallelism {
            return Err(mismatch(format!(
                "`{}` had parallelism {}, now {}",
                node.id, saved.parallelism, node.parallelism
            )));
        }
    }
    // A stateless local instance may go (pre_aggregate switched off).
    if let Some(extra) =
        manifest.nodes.iter().find(|n| !plan.nodes.iter().any(|p| p.id == n.id) && !n.id.ends_with(LOCAL_SUFFIX))
    {
        return Err(mismatch(format!("it has state for `{}`, which is not in the job", extra.id)));
    }
    Ok(())
}
