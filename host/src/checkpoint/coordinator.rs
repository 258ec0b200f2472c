//! The checkpoint coordinator's driver: one thread per job attempt that
//! does the I/O the pure [`protocol`](super::protocol) decides — sends
//! triggers to sources, holds acked state bytes, uploads them in the
//! background, writes manifests, tells tasks a checkpoint is complete,
//! deletes what retention or an abandoned checkpoint gives up — and feeds
//! every outcome back in. No decision is made here.
//!
//! Before anything that publishes or deletes (a manifest, a commit, a
//! delete) the driver checks that this run still owns the job
//! ([`Lease::check`]); a fenced run fails without touching the store again.
//!
//! Savepoints are checkpoints taken on request ([`SavepointRequest`], from
//! the control API) into a directory of their own, named with this run's
//! nonce so that no two runs ever write the same one; they are never
//! deleted once complete. Only a *stop* savepoint commits sink output.
//!
//! A subtask that has finished (consumed all input) registers its final
//! state once; every later checkpoint uses it in place of an ack. When all
//! subtasks have finished, the coordinator takes a last checkpoint made only
//! of final states — the *final checkpoint* — whose completion lets sinks
//! commit their last files; then the job is done.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, select};

use object_store::path::Path;
use serde::Serialize;

use super::lease::Lease;
use super::manifest::{self, Manifest, ModuleEntry, NodeEntry, SubtaskEntry};
use super::paths::Paths;
use super::protocol::{Action, End, Facts, Input, Key, Protocol, PutResult, Settings};
use super::storage::Storage;
use crate::Error;
use crate::dataflow::message::Barrier;
use crate::job::spec::CheckpointSpec;

/// From a task to the coordinator.
#[derive(Debug)]
pub enum TaskEvent {
    /// The subtask snapshotted for `checkpoint`.
    Ack {
        /// Checkpoint id.
        checkpoint: u64,
        /// Node index.
        node: usize,
        /// Subtask.
        subtask: u32,
        /// Encoded [`super::state::TaskState`].
        state: Vec<u8>,
        /// Time spent aligning barriers.
        alignment: Duration,
        /// Time the record path paused for the snapshot.
        sync: Duration,
    },
    /// The subtask consumed all its input; `state` stands for it from now on.
    Finished {
        /// Node index.
        node: usize,
        /// Subtask.
        subtask: u32,
        /// Encoded final state.
        state: Vec<u8>,
    },
}

/// From the coordinator to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// (Sources only.) Snapshot your position and emit this barrier.
    Trigger(Barrier),
    /// Checkpoint `checkpoint` is complete. `includes_final`: it holds this
    /// subtask's final state, so a finished sink may commit everything.
    Complete {
        /// Checkpoint id.
        checkpoint: u64,
        /// The node it is for (a chained task gets one per member).
        node: usize,
        /// Whether the subtask's final state is in it.
        includes_final: bool,
    },
}

/// What the coordinator needs to know about a node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
    /// Number of subtasks.
    pub parallelism: u32,
    /// For operators, the module that writes the state.
    pub module: Option<ModuleEntry>,
}

/// A request for a savepoint (from the control API).
#[derive(Debug)]
pub struct SavepointRequest {
    /// Where the savepoint directory goes.
    pub target: Arc<Storage>,
    /// Stop the job once the savepoint is complete.
    pub stop: bool,
    /// Gets the outcome.
    pub reply: Sender<Result<SavepointInfo, String>>,
}

/// A completed savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavepointInfo {
    /// Its id (shared with checkpoints).
    pub id: u64,
    /// Its directory: pass it to `weir run --from-savepoint`.
    pub path: String,
}

/// One line of checkpoint history (for the control API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Id.
    pub id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: &'static str,
    /// `completed` or `abandoned`.
    pub status: &'static str,
    /// Trigger time, ms since the Unix epoch.
    pub triggered_at_ms: u64,
    /// Trigger to completion (or abandonment), ms.
    pub duration_ms: u64,
    /// Bytes of state (completed ones).
    pub bytes: u64,
    /// Longest barrier alignment of any subtask, ms.
    pub max_alignment_ms: u64,
    /// Where it is (savepoints), or why it was abandoned.
    pub detail: String,
    /// Completed ones: each node's subtasks, as in the manifest (size,
    /// alignment, sync time); served by `/v1/checkpoints/details/{id}`.
    #[serde(skip)]
    pub nodes: Vec<super::manifest::NodeEntry>,
}

/// Counters for the progress display.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Completed checkpoints in this run.
    pub completed: AtomicU64,
    /// Id of the last completed one.
    pub last_id: AtomicU64,
    /// Its duration in ms.
    pub last_duration_ms: AtomicU64,
    /// Its size in bytes.
    pub last_bytes: AtomicU64,
    /// Its longest alignment in ms.
    pub last_alignment_ms: AtomicU64,
    /// The highest id triggered so far in this process: a restarted attempt
    /// continues after it, even when abandoned checkpoints left no trace.
    pub last_triggered: AtomicU64,
    /// The last [`HISTORY`] checkpoints and savepoints, oldest first.
    pub history: Mutex<VecDeque<HistoryEntry>>,
    /// Checkpoints and savepoints abandoned in this run.
    pub abandoned: AtomicU64,
}

/// How many entries [`CheckpointStats::history`] keeps.
pub const HISTORY: usize = 100;

impl CheckpointStats {
    fn record(&self, entry: HistoryEntry) {
        if entry.status == "abandoned" {
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(entry);
    }
}

/// How the coordinator ended.
#[derive(Debug)]
pub enum Outcome {
    /// The final checkpoint completed: the job is done.
    Finished,
    /// Stopped because the job is being torn down.
    Stopped,
    /// A stop-with-savepoint completed: every task has stopped.
    StoppedWithSavepoint(SavepointInfo),
}

/// The coordinator's wiring.
pub struct Coordinator {
    /// Settings.
    pub spec: CheckpointSpec,
    /// Where checkpoints go.
    pub storage: Arc<Storage>,
    /// Job name (for manifests).
    pub job: String,
    /// Key groups of the job.
    pub max_parallelism: u32,
    /// Nodes in plan order.
    pub nodes: Vec<NodeInfo>,
    /// Acks and final states from tasks.
    pub events: Receiver<TaskEvent>,
    /// Savepoint requests.
    pub requests: Receiver<SavepointRequest>,
    /// Take periodic checkpoints (false: savepoints and the final checkpoint only).
    pub periodic: bool,
    /// Per node, per subtask: the control channel of the task running it
    /// (chained nodes share their task's). Dropped when the coordinator
    /// exits, which releases sinks waiting for a commit.
    pub controls: Vec<Vec<Sender<Control>>>,
    /// What the store held when the attempt started (ids, retention).
    pub facts: Facts,
    /// This run's ownership of the job's store (none for `memory://`).
    pub lease: Option<Arc<Lease>>,
    /// True once the job attempt is being torn down.
    pub cancelled: Box<dyn Fn() -> bool + Send>,
    /// For the progress display.
    pub stats: Arc<CheckpointStats>,
}

/// Acked state bytes, held until the protocol says upload or discard —
/// which it does in the same step as the ack, so nothing lingers here.
struct Held {
    state: Vec<u8>,
    alignment: Duration,
    sync: Duration,
}

/// A checkpoint or savepoint in flight: where its objects go.
struct Target {
    storage: Arc<Storage>,
    dir: Path,
    savepoint: bool,
    triggered: Instant,
    triggered_at_ms: u64,
    /// Manifest entries of the uploads that succeeded.
    entries: BTreeMap<Key, SubtaskEntry>,
}

struct Uploaded {
    checkpoint: u64,
    key: Key,
    entry: SubtaskEntry,
    result: Result<(), Error>,
}

/// The driver's side of one attempt: what the protocol's actions refer to.
struct Driver {
    clock: Instant,
    held: HashMap<(u64, Key), Held>,
    finals: HashMap<Key, Vec<u8>>,
    targets: BTreeMap<u64, Target>,
    /// Where abandoned checkpoints were going (a late upload is deleted there).
    gone: HashMap<u64, (Arc<Storage>, Path)>,
    /// Where complete savepoints are.
    saved: HashMap<u64, (Arc<Storage>, Path)>,
    requests: HashMap<u64, SavepointRequest>,
    next_request: u64,
    savepoints: HashMap<u64, SavepointInfo>,
    uploads: Sender<Uploaded>,
    /// Follow-up inputs (a manifest write's outcome) to feed before waiting again.
    follow_ups: VecDeque<Input>,
}

impl Driver {
    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }
}

/// A put's outcome as the protocol needs it: "already there" (someone
/// else's) is not the same as "failed" (maybe ours).
fn put_result(result: &Result<(), Error>) -> PutResult {
    match result {
        Ok(()) => PutResult::Ok,
        Err(Error::Storage { source, .. })
            if matches!(
                **source,
                object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
            ) =>
        {
            PutResult::Exists
        }
        Err(e) => PutResult::Failed(e.to_string()),
    }
}

impl Coordinator {
    /// Runs until the final checkpoint completes, a stop-with-savepoint
    /// completes, the job is torn down, or checkpointing fails beyond
    /// `tolerable_failures`.
    ///
    /// # Errors
    /// The reason checkpointing failed the job; [`Error::Fenced`] when
    /// another run took the job over.
    pub fn run(mut self) -> Result<Outcome, Error> {
        let settings = Settings {
            interval_ms: self.spec.interval.as_millis() as u64,
            min_pause_ms: self.spec.min_pause.as_millis() as u64,
            timeout_ms: self.spec.timeout.as_millis() as u64,
            max_concurrent: self.spec.max_concurrent,
            tolerable_failures: self.spec.tolerable_failures,
            retain: self.spec.retain,
            periodic: self.periodic,
            parallelism: self.nodes.iter().map(|n| n.parallelism).collect(),
            sources: self.nodes.iter().map(|n| n.kind == "source").collect(),
        };
        let mut protocol = Protocol::new(settings, std::mem::take(&mut self.facts), 0);
        let (up_tx, up_rx) = crossbeam_channel::unbounded::<Uploaded>();
        let mut d = Driver {
            clock: Instant::now(),
            held: HashMap::new(),
            finals: HashMap::new(),
            targets: BTreeMap::new(),
            gone: HashMap::new(),
            saved: HashMap::new(),
            requests: HashMap::new(),
            next_request: 0,
            savepoints: HashMap::new(),
            uploads: up_tx,
            follow_ups: VecDeque::new(),
        };
        let mut requests = self.requests.clone();
        let mut lease_checked = Instant::now();
        loop {
            let input = select! {
                recv(self.events) -> ev => match ev {
                    Ok(TaskEvent::Ack { checkpoint, node, subtask, state, alignment, sync }) => {
                        d.held.insert((checkpoint, (node, subtask)), Held { state, alignment, sync });
                        Input::Acked { id: checkpoint, key: (node, subtask) }
                    }
                    Ok(TaskEvent::Finished { node, subtask, state }) => {
                        d.finals.insert((node, subtask), state);
                        Input::Finished { key: (node, subtask) }
                    }
                    Err(_) => Input::Cancelled,
                },
                recv(requests) -> req => match req {
                    Ok(req) => {
                        d.next_request += 1;
                        let stop = req.stop;
                        d.requests.insert(d.next_request, req);
                        Input::SavepointRequested { request: d.next_request, stop }
                    }
                    Err(_) => {
                        requests = crossbeam_channel::never();
                        Input::Tick
                    }
                },
                recv(up_rx) -> up => {
                    let up = up.expect("the driver holds a sender");
                    let result = put_result(&up.result);
                    if result == PutResult::Ok
                        && let Some(t) = d.targets.get_mut(&up.checkpoint)
                    {
                        t.entries.insert(up.key, up.entry);
                    }
                    Input::Uploaded { id: up.checkpoint, key: up.key, result }
                },
                default(Duration::from_millis(20)) => Input::Tick,
            };
            d.follow_ups.push_back(input);
            if lease_checked.elapsed() >= super::lease::CHECK_EVERY {
                // Taken over? Stop promptly, not only at the next checkpoint.
                lease_checked = Instant::now();
                self.check_lease()?;
            }
            if (self.cancelled)() {
                d.follow_ups.push_back(Input::Cancelled);
            }
            while let Some(input) = d.follow_ups.pop_front() {
                for action in protocol.step(d.now(), input) {
                    if let Some(outcome) = self.perform(action, &mut d)? {
                        for (_, req) in d.requests.drain() {
                            let _ = req.reply.send(Err("the job has stopped".into()));
                        }
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    /// Does what `action` says; `Some` when the protocol is over.
    fn perform(&mut self, action: Action, d: &mut Driver) -> Result<Option<Outcome>, Error> {
        match action {
            Action::Trigger { id, savepoint, stop, sources } => self.trigger(id, savepoint, stop, &sources, d)?,
            Action::Upload { id, key, final_state } => {
                let held = if final_state {
                    d.finals.get(&key).map(|s| Held {
                        state: s.clone(),
                        alignment: Duration::ZERO,
                        sync: Duration::ZERO,
                    })
                } else {
                    d.held.remove(&(id, key))
                };
                let (Some(held), Some(target)) = (held, d.targets.get(&id)) else {
                    return Err(Error::Internal(format!("checkpoint {id}: upload of state the driver does not hold")));
                };
                self.upload(target, id, key, held, &d.uploads);
            }
            Action::Discard { id, key } => {
                d.held.remove(&(id, key));
            }
            Action::WriteManifest { id, finished } => {
                let result = self.write_manifest(id, finished, d)?;
                // Next, before anything already queued (a `Cancelled`, say).
                d.follow_ups.push_front(Input::ManifestWritten { id, result });
            }
            Action::Commit { id, finals } => {
                self.check_lease()?;
                for (i, node) in self.controls.iter().enumerate() {
                    for (s, tx) in node.iter().enumerate() {
                        let includes_final = finals.contains(&(i, s as u32));
                        let _ = tx.send(Control::Complete { checkpoint: id, node: i, includes_final });
                    }
                }
            }
            Action::SavepointDone { request, id } => {
                if let (Some(req), Some(info)) = (d.requests.remove(&request), d.savepoints.get(&id)) {
                    if req.stop && self.periodic {
                        // Before anything commits: the stop savepoint becomes
                        // the job's newest checkpoint too, so no rerun rolls
                        // back past output this stop is about to commit.
                        if let Err(e) = self.record_in_store(id, d) {
                            let why =
                                format!("stop-with-savepoint {id} could not be recorded as the job's checkpoint: {e}");
                            let _ = req.reply.send(Err(why.clone()));
                            return Err(Error::StopFailed(why));
                        }
                    }
                    tracing::info!("savepoint {id} is at {}", info.path);
                    let _ = req.reply.send(Ok(info.clone()));
                }
            }
            Action::SavepointFailed { request, why } => {
                if let Some(req) = d.requests.remove(&request) {
                    let _ = req.reply.send(Err(why));
                }
            }
            Action::Abandon { id, objects, manifest, why, savepoint } => {
                self.abandon(id, &objects, manifest, &why, savepoint, d)?;
            }
            Action::Retire { id } => {
                self.check_lease()?;
                if let Err(e) = self.storage.delete_checkpoint(id) {
                    tracing::warn!("could not delete old checkpoint {id}: {e}");
                }
            }
            Action::DeleteLeftover { id } => {
                self.check_lease()?;
                tracing::debug!("deleting incomplete checkpoint {id}, left by an earlier run");
                if let Err(e) = self.storage.delete_checkpoint(id) {
                    tracing::warn!("could not delete incomplete checkpoint {id} of an earlier run: {e}");
                }
            }
            Action::Finish(End::Finished) => return Ok(Some(Outcome::Finished)),
            Action::Finish(End::Stopped) => return Ok(Some(Outcome::Stopped)),
            Action::Finish(End::StoppedWithSavepoint(id)) => {
                let info = d
                    .savepoints
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("stop savepoint {id} completed without a location")))?;
                return Ok(Some(Outcome::StoppedWithSavepoint(info)));
            }
            Action::Fail(why) => return Err(Error::Checkpoint(why)),
            Action::Resume(why) => return Err(Error::StopFailed(why)),
        }
        Ok(None)
    }

    /// This run must still own the job before it publishes or deletes anything.
    fn check_lease(&self) -> Result<(), Error> {
        match &self.lease {
            Some(lease) => lease.check(),
            None => Ok(()),
        }
    }

    fn trigger(
        &mut self,
        id: u64,
        savepoint: Option<u64>,
        stop: bool,
        sources: &[Key],
        d: &mut Driver,
    ) -> Result<(), Error> {
        let (storage, dir) = match savepoint.and_then(|r| d.requests.get(&r)) {
            Some(req) => {
                let dir = req.target.paths().savepoint(id, &super::lease::run_tag());
                // Ids continue after this one in later runs, even if it fails.
                let marker = self.storage.paths().savepoint_marker(id);
                let location = req.target.location(&dir).into_bytes();
                if let Err(e) = self.storage.put_new(&marker, location) {
                    tracing::debug!("could not record savepoint {id} in {}: {e}", self.storage.url());
                }
                (req.target.clone(), dir)
            }
            None => (self.storage.clone(), self.storage.paths().checkpoint(id)),
        };
        if savepoint.is_some() {
            d.savepoints.insert(id, SavepointInfo { id, path: storage.location(&dir) });
        }
        d.targets.insert(
            id,
            Target {
                storage,
                dir,
                savepoint: savepoint.is_some(),
                triggered: Instant::now(),
                triggered_at_ms: unix_ms(),
                entries: BTreeMap::new(),
            },
        );
        self.stats.last_triggered.fetch_max(id, Ordering::Relaxed);
        tracing::debug!("{} {id} triggered", if savepoint.is_some() { "savepoint" } else { "checkpoint" });
        for &(node, subtask) in sources {
            // A source that just finished has dropped its receiver; its final
            // state arrives as an event instead.
            let _ = self.controls[node][subtask as usize].send(Control::Trigger(Barrier { id, stop }));
        }
        Ok(())
    }

    fn upload(&self, target: &Target, checkpoint: u64, key: Key, held: Held, done: &Sender<Uploaded>) {
        let (node, subtask) = key;
        let entry = subtask_entry(&self.nodes[node].id, subtask, &held.state, held.alignment, held.sync);
        let path = Paths::object_in(&target.dir, &entry.object);
        let done = done.clone();
        target.storage.spawn_put(path, held.state, move |result| {
            let _ = done.send(Uploaded { checkpoint, key, entry, result });
        });
    }

    /// Writes checkpoint `id`'s manifest (create-only): this makes it exist.
    fn write_manifest(&mut self, id: u64, finished: bool, d: &mut Driver) -> Result<PutResult, Error> {
        self.check_lease()?;
        let target = d.targets.get(&id).ok_or_else(|| Error::Internal(format!("checkpoint {id} has no target")))?;
        let duration = target.triggered.elapsed();
        let nodes = node_entries(&self.nodes, &target.entries)
            .ok_or_else(|| Error::Internal(format!("checkpoint {id}: a manifest without every state object")))?;
        let total_bytes = nodes.iter().flat_map(|n| &n.subtasks).map(|e| e.size).sum::<u64>();
        let max_alignment = nodes.iter().flat_map(|n| &n.subtasks).map(|e| e.alignment_ms).max().unwrap_or(0);
        let kind = if target.savepoint { "savepoint" } else { "checkpoint" };
        let manifest = Manifest {
            format: manifest::FORMAT,
            job: self.job.clone(),
            checkpoint_id: id,
            kind: kind.into(),
            finished,
            triggered_at_ms: target.triggered_at_ms,
            duration_ms: duration.as_millis() as u64,
            max_parallelism: self.max_parallelism,
            total_bytes,
            nodes,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("checkpoint {id}: manifest does not serialize: {e}")))?;
        let path = Paths::manifest_in(&target.dir);
        let result = put_result(&target.storage.put_new(&path, json));
        if result != PutResult::Ok {
            return Ok(result);
        }
        match self.check_lease() {
            Ok(()) => {}
            Err(fenced @ Error::Conflict(_)) => {
                // Taken over while writing: the new owner may not have seen
                // this manifest, so it must not exist (we wrote it; we may
                // delete it).
                if let Err(e) = retry(3, || target.storage.delete_objects(&target.dir, std::slice::from_ref(&path))) {
                    tracing::error!(
                        "fenced, and could not delete the manifest of checkpoint {id} this run had just written \
                         ({e}): delete {} by hand before running the job again",
                        target.storage.location(&path)
                    );
                }
                return Err(fenced);
            }
            // The store cannot say: the manifest stays (it is complete and
            // ours as far as we know), and the attempt fails on this error.
            Err(e) => return Err(e),
        }
        let message = format!(
            "{kind} {id} complete{}: {} ms, {} bytes, max alignment {} ms",
            if finished { " (final)" } else { "" },
            manifest.duration_ms,
            total_bytes,
            max_alignment
        );
        if self.periodic || target.savepoint {
            tracing::info!("{message}");
        } else {
            // Without [checkpoint], the only checkpoint is the in-memory final one.
            tracing::debug!("{message}");
        }
        let location = target.storage.location(&target.dir);
        self.stats.record(HistoryEntry {
            id,
            kind,
            status: "completed",
            triggered_at_ms: target.triggered_at_ms,
            duration_ms: manifest.duration_ms,
            bytes: total_bytes,
            max_alignment_ms: max_alignment,
            detail: if target.savepoint { location } else { String::new() },
            nodes: manifest.nodes.clone(),
        });
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_id.store(id, Ordering::Relaxed);
        self.stats.last_duration_ms.store(manifest.duration_ms, Ordering::Relaxed);
        self.stats.last_bytes.store(total_bytes, Ordering::Relaxed);
        self.stats.last_alignment_ms.store(max_alignment, Ordering::Relaxed);
        if let Some(t) = d.targets.remove(&id).filter(|t| t.savepoint) {
            d.saved.insert(id, (t.storage, t.dir));
        }
        Ok(PutResult::Ok)
    }

    /// Copies complete savepoint `id` into the job's store as checkpoint
    /// `id` (its ids are the job's: the name is free), manifest last.
    fn record_in_store(&self, id: u64, d: &Driver) -> Result<(), Error> {
        let (storage, dir) =
            d.saved.get(&id).ok_or_else(|| Error::Internal(format!("savepoint {id}: no location to copy from")))?;
        let manifest = storage.read_manifest_in(dir)?;
        let into = self.storage.paths().checkpoint(id);
        for entry in manifest.nodes.iter().flat_map(|n| &n.subtasks) {
            let bytes = storage.get(&Paths::object_in(dir, &entry.object))?;
            self.storage.put_new(&Paths::object_in(&into, &entry.object), bytes.to_vec())?;
        }
        let copy = Manifest { kind: "checkpoint".into(), ..manifest };
        let json = serde_json::to_vec_pretty(&copy)
            .map_err(|e| Error::Internal(format!("checkpoint {id}: manifest does not serialize: {e}")))?;
        self.check_lease()?;
        self.storage.put_new(&Paths::manifest_in(&into), json)
    }

    /// Deletes exactly the objects of `id` this run wrote (or may have), and
    /// records why it was given up.
    fn abandon(
        &mut self,
        id: u64,
        objects: &[Key],
        manifest: bool,
        why: &str,
        savepoint: bool,
        d: &mut Driver,
    ) -> Result<(), Error> {
        let kind = if savepoint { "savepoint" } else { "checkpoint" };
        let target = d.targets.remove(&id);
        let (storage, dir) = match (&target, d.gone.get(&id)) {
            (Some(t), _) => (t.storage.clone(), t.dir.clone()),
            // A late upload of a checkpoint already given up on.
            (None, Some((storage, dir))) => (storage.clone(), dir.clone()),
            (None, None) => (self.storage.clone(), self.storage.paths().checkpoint(id)),
        };
        d.gone.insert(id, (storage.clone(), dir.clone()));
        if target.is_some() {
            tracing::warn!("{kind} {id} abandoned: {why}");
        }
        if !objects.is_empty() || manifest {
            self.check_lease()?;
            let mut paths: Vec<Path> = objects
                .iter()
                .map(|&(node, subtask)| Paths::object_in(&dir, &Paths::state_name(&self.nodes[node].id, subtask)))
                .collect();
            if manifest {
                paths.insert(0, Paths::manifest_in(&dir));
            }
            if let Err(e) = storage.delete_objects(&dir, &paths) {
                tracing::warn!("could not delete what abandoned {kind} {id} wrote: {e}");
            }
        }
        if let Some(t) = target {
            self.stats.record(HistoryEntry {
                id,
                kind,
                status: "abandoned",
                triggered_at_ms: t.triggered_at_ms,
                duration_ms: t.triggered.elapsed().as_millis() as u64,
                bytes: 0,
                max_alignment_ms: 0,
                detail: why.to_owned(),
                nodes: Vec::new(),
            });
        }
        Ok(())
    }
}

/// Runs `f` up to `times` times until it succeeds.
fn retry<T>(times: u32, mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(_) if attempt < times => {
                std::thread::sleep(Duration::from_millis(50 << attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The manifest entry of `node`'s `subtask` state `bytes`.
pub fn subtask_entry(node: &str, subtask: u32, bytes: &[u8], alignment: Duration, sync: Duration) -> SubtaskEntry {
    SubtaskEntry {
        subtask,
        object: Paths::state_name(node, subtask),
        size: bytes.len() as u64,
        checksum: manifest::checksum(bytes),
        alignment_ms: alignment.as_millis() as u64,
        sync_ms: sync.as_millis() as u64,
    }
}

/// The manifest's node list, if `entries` has every subtask of every node.
pub fn node_entries(nodes: &[NodeInfo], entries: &BTreeMap<Key, SubtaskEntry>) -> Option<Vec<NodeEntry>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let subtasks = (0..info.parallelism).map(|s| entries.get(&(i, s)).cloned()).collect::<Option<_>>()?;
            Some(NodeEntry {
                id: info.id.clone(),
                kind: info.kind.into(),
                parallelism: info.parallelism,
                module: info.module.clone(),
                subtasks,
            })
        })
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
