//! The checkpoint coordinator: one thread per job attempt that triggers
//! checkpoints at sources, collects every subtask's acknowledgement,
//! uploads state asynchronously, writes the manifest last, tells tasks the
//! checkpoint is complete, and enforces timeouts, tolerable failures and
//! retention.
//!
//! Savepoints are checkpoints taken on request ([`SavepointRequest`], from
//! the control API) into their own directory; they commit sink output like
//! any checkpoint but are never deleted. A *stop* savepoint's barrier makes
//! every task stop after snapshotting; its completion ends the job.
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

use super::manifest::{self, Manifest, ModuleEntry, NodeEntry, SubtaskEntry};
use super::paths::Paths;
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
}

/// How many entries [`CheckpointStats::history`] keeps.
pub const HISTORY: usize = 100;

impl CheckpointStats {
    fn record(&self, entry: HistoryEntry) {
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
    /// First checkpoint id to use.
    pub next_id: u64,
    /// True once the job attempt is being torn down.
    pub cancelled: Box<dyn Fn() -> bool + Send>,
    /// For the progress display.
    pub stats: Arc<CheckpointStats>,
}

struct Pending {
    /// Where its objects go.
    storage: Arc<Storage>,
    dir: Path,
    /// For savepoints: stop after it, and who asked.
    savepoint: Option<(bool, Sender<Result<SavepointInfo, String>>)>,
    triggered: Instant,
    triggered_at_ms: u64,
    /// Per (node, subtask): uploaded entry, once its upload finished.
    done: HashMap<(usize, u32), SubtaskEntry>,
    /// Subtasks whose state is being uploaded (ack or final).
    started: HashMap<(usize, u32), bool>,
}

struct Uploaded {
    checkpoint: u64,
    key: (usize, u32),
    entry: SubtaskEntry,
    result: Result<(), Error>,
}

impl Coordinator {
    /// Runs until the final checkpoint completes, a stop-with-savepoint
    /// completes, the job is torn down, or checkpointing fails beyond
    /// `tolerable_failures`.
    ///
    /// # Errors
    /// The reason checkpointing failed the job.
    pub fn run(mut self) -> Result<Outcome, Error> {
        let (up_tx, up_rx) = crossbeam_channel::unbounded::<Uploaded>();
        let total: usize = self.nodes.iter().map(|n| n.parallelism as usize).sum();
        let mut finals: HashMap<(usize, u32), Vec<u8>> = HashMap::new();
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut queued: VecDeque<SavepointRequest> = VecDeque::new();
        // Complete checkpoints in the store, oldest first: listed once, at the
        // first completion, then kept up to date here (one LIST per attempt,
        // not per checkpoint).
        let mut retained: Option<VecDeque<u64>> = None;
        let mut stopping = false;
        let mut last_trigger = Instant::now();
        let mut last_complete = Instant::now() - self.spec.min_pause;
        let mut failures = 0u32;
        let mut final_id: Option<u64> = None;
        loop {
            let wake = Duration::from_millis(20);
            select! {
                recv(self.events) -> ev => match ev {
                    Ok(TaskEvent::Ack { checkpoint, node, subtask, state, alignment, sync }) => {
                        if let Some(p) = pending.get_mut(&checkpoint) {
                            p.started.insert((node, subtask), true);
                            self.upload(p, checkpoint, (node, subtask), state, alignment, sync, &up_tx);
                        }
                    }
                    Ok(TaskEvent::Finished { node, subtask, state }) => {
                        for (&id, p) in pending.iter_mut() {
                            if let std::collections::hash_map::Entry::Vacant(e) = p.started.entry((node, subtask)) {
                                e.insert(false);
                                self.upload(p, id, (node, subtask), state.clone(), Duration::ZERO, Duration::ZERO, &up_tx);
                            }
                        }
                        finals.insert((node, subtask), state);
                    }
                    Err(_) => return Ok(Outcome::Stopped),
                },
                recv(self.requests) -> req => {
                    if let Ok(req) = req {
                        if stopping {
                            let _ = req.reply.send(Err("the job is already stopping with a savepoint".into()));
                        } else {
                            stopping = req.stop;
                            queued.push_back(req);
                        }
                    }
                },
                recv(up_rx) -> up => {
                    let up = up.expect("the coordinator holds a sender");
                    let Some(p) = pending.get_mut(&up.checkpoint) else { continue };
                    if let Err(e) = up.result {
                        let p = pending.remove(&up.checkpoint).expect("present");
                        self.abandon(up.checkpoint, p, &format!("uploading state failed: {e}"), &mut failures)?;
                        continue;
                    }
                    p.done.insert(up.key, up.entry);
                    if p.done.len() == total {
                        let p = pending.remove(&up.checkpoint).expect("present");
                        let is_final = p.started.values().all(|from_ack| !from_ack);
                        let stop = p.savepoint.as_ref().is_some_and(|(stop, _)| *stop);
                        let info = self.complete(up.checkpoint, p, &mut pending, &mut retained)?;
                        failures = 0;
                        last_complete = Instant::now();
                        if let (true, Some(info)) = (stop, info) {
                            return Ok(Outcome::StoppedWithSavepoint(info));
                        }
                        if is_final && finals.len() == total {
                            return Ok(Outcome::Finished);
                        }
                    }
                },
                default(wake) => {}
            }
            if (self.cancelled)() {
                for (_, p) in std::mem::take(&mut pending) {
                    if let Some((_, reply)) = p.savepoint {
                        let _ = reply.send(Err("the job failed before the savepoint completed".into()));
                    }
                }
                return Ok(Outcome::Stopped);
            }
            let expired: Vec<u64> =
                pending.iter().filter(|(_, p)| p.triggered.elapsed() > self.spec.timeout).map(|(&id, _)| id).collect();
            for id in expired {
                let p = pending.remove(&id).expect("listed above");
                let why = format!("not complete after {:?} ([checkpoint] timeout)", self.spec.timeout);
                self.abandon(id, p, &why, &mut failures)?;
                if final_id == Some(id) {
                    final_id = None;
                }
            }
            let all_finished = finals.len() == total;
            let sources_finished = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.kind == "source")
                .all(|(i, n)| (0..n.parallelism).all(|s| finals.contains_key(&(i, s))));
            let room = pending.len() < self.spec.max_concurrent as usize;
            let savepoint = if room && final_id.is_none() { queued.pop_front() } else { None };
            let due = savepoint.is_some()
                || if all_finished {
                    final_id.is_none() && pending.is_empty()
                } else {
                    self.periodic
                        && !stopping
                        && !sources_finished
                        && room
                        && last_trigger.elapsed() >= self.spec.interval
                        && last_complete.elapsed() >= self.spec.min_pause
                };
            if !due {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.stats.last_triggered.fetch_max(id, Ordering::Relaxed);
            last_trigger = Instant::now();
            if all_finished && savepoint.is_none() {
                final_id = Some(id);
            }
            let stop = savepoint.as_ref().is_some_and(|r| r.stop);
            let (storage, dir) = match &savepoint {
                Some(req) => (req.target.clone(), req.target.paths().savepoint(id)),
                None => (self.storage.clone(), self.storage.paths().checkpoint(id)),
            };
            let mut p = Pending {
                storage,
                dir,
                savepoint: savepoint.map(|r| (r.stop, r.reply)),
                triggered: Instant::now(),
                triggered_at_ms: unix_ms(),
                done: HashMap::new(),
                started: HashMap::new(),
            };
            for (&key, state) in &finals {
                p.started.insert(key, false);
                self.upload(&p, id, key, state.clone(), Duration::ZERO, Duration::ZERO, &up_tx);
            }
            tracing::debug!("{} {id} triggered", if p.savepoint.is_some() { "savepoint" } else { "checkpoint" });
            pending.insert(id, p);
            for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.kind == "source") {
                for s in 0..node.parallelism {
                    if !finals.contains_key(&(i, s)) {
                        // A source that just finished has dropped its receiver; its
                        // final state arrives as an event instead.
                        let _ = self.controls[i][s as usize].send(Control::Trigger(Barrier { id, stop }));
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn upload(
        &self,
        p: &Pending,
        checkpoint: u64,
        key: (usize, u32),
        state: Vec<u8>,
        alignment: Duration,
        sync: Duration,
        done: &Sender<Uploaded>,
    ) {
        let (node, subtask) = key;
        let object = Paths::state_name(&self.nodes[node].id, subtask);
        let entry = SubtaskEntry {
            subtask,
            object: object.clone(),
            size: state.len() as u64,
            checksum: manifest::checksum(&state),
            alignment_ms: alignment.as_millis() as u64,
            sync_ms: sync.as_millis() as u64,
        };
        let path = Paths::object_in(&p.dir, &object);
        let done = done.clone();
        p.storage.spawn_put(path, state, move |result| {
            let _ = done.send(Uploaded { checkpoint, key, entry, result });
        });
    }

    /// Writes the manifest and tells every task. Returns the savepoint's
    /// location if it was one.
    fn complete(
        &mut self,
        id: u64,
        p: Pending,
        pending: &mut BTreeMap<u64, Pending>,
        retained: &mut Option<VecDeque<u64>>,
    ) -> Result<Option<SavepointInfo>, Error> {
        let duration = p.triggered.elapsed();
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut total_bytes = 0;
        let mut max_alignment = 0;
        for (i, info) in self.nodes.iter().enumerate() {
            let mut subtasks: Vec<SubtaskEntry> = (0..info.parallelism).map(|s| p.done[&(i, s)].clone()).collect();
            subtasks.sort_by_key(|e| e.subtask);
            total_bytes += subtasks.iter().map(|e| e.size).sum::<u64>();
            max_alignment = max_alignment.max(subtasks.iter().map(|e| e.alignment_ms).max().unwrap_or(0));
            nodes.push(NodeEntry {
                id: info.id.clone(),
                kind: info.kind.into(),
                parallelism: info.parallelism,
                module: info.module.clone(),
                subtasks,
            });
        }
        let finished = p.started.values().all(|from_ack| !from_ack);
        let kind = if p.savepoint.is_some() { "savepoint" } else { "checkpoint" };
        let manifest = Manifest {
            format: manifest::FORMAT,
            job: self.job.clone(),
            checkpoint_id: id,
            kind: kind.into(),
            finished,
            triggered_at_ms: p.triggered_at_ms,
            duration_ms: duration.as_millis() as u64,
            max_parallelism: self.max_parallelism,
            total_bytes,
            nodes,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        if let Err(e) = p.storage.put_new(&Paths::manifest_in(&p.dir), json) {
            let why = format!(
                "could not write the manifest of {kind} {id} ({e}); is another `weir run` of job `{}` writing to {}?",
                self.job,
                p.storage.url()
            );
            if let Some((false, reply)) = &p.savepoint {
                // A failed savepoint is reported to whoever asked; the job goes on.
                let _ = reply.send(Err(why));
                return Ok(None);
            }
            return Err(Error::Checkpoint(why));
        }
        let message = format!(
            "{kind} {id} complete{}: {} ms, {} bytes, max alignment {} ms",
            if finished { " (final)" } else { "" },
            manifest.duration_ms,
            total_bytes,
            max_alignment
        );
        if self.periodic || p.savepoint.is_some() {
            tracing::info!("{message}");
        } else {
            // Without [checkpoint], the only checkpoint is the in-memory final one.
            tracing::debug!("{message}");
        }
        let location = p.storage.location(&p.dir);
        self.stats.record(HistoryEntry {
            id,
            kind,
            status: "completed",
            triggered_at_ms: p.triggered_at_ms,
            duration_ms: manifest.duration_ms,
            bytes: total_bytes,
            max_alignment_ms: max_alignment,
            detail: if p.savepoint.is_some() { location.clone() } else { String::new() },
        });
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_id.store(id, Ordering::Relaxed);
        self.stats.last_duration_ms.store(manifest.duration_ms, Ordering::Relaxed);
        self.stats.last_bytes.store(total_bytes, Ordering::Relaxed);
        self.stats.last_alignment_ms.store(max_alignment, Ordering::Relaxed);
        for (i, node) in self.controls.iter().enumerate() {
            for (s, tx) in node.iter().enumerate() {
                let includes_final = p.started.get(&(i, s as u32)) == Some(&false);
                let _ = tx.send(Control::Complete { checkpoint: id, node: i, includes_final });
            }
        }
        // A newer complete checkpoint subsumes older pending ones (savepoints
        // were asked for: they run to completion or time out).
        let older: Vec<u64> = pending.range(..id).filter(|(_, p)| p.savepoint.is_none()).map(|(&k, _)| k).collect();
        for old in older {
            pending.remove(&old);
            let _ = self.storage.delete_checkpoint(old);
        }
        if let Some((_, reply)) = p.savepoint {
            tracing::info!("savepoint {id} is at {location}");
            let info = SavepointInfo { id, path: location };
            let _ = reply.send(Ok(info.clone()));
            return Ok(Some(info));
        }
        self.retain(id, retained);
        Ok(None)
    }

    /// Deletes complete checkpoints beyond `retain` (oldest first). The
    /// first time (`retained` is `None`) it lists the store, which also
    /// finds incomplete checkpoints older than `newest` that an earlier,
    /// killed run left behind, and deletes them.
    fn retain(&self, newest: u64, retained: &mut Option<VecDeque<u64>>) {
        let complete = match retained {
            Some(complete) => {
                complete.push_back(newest);
                complete
            }
            None => {
                let Ok(listed) = self.storage.list() else { return };
                for l in listed.iter().filter(|l| !l.has_manifest && l.id < newest) {
                    self.delete_old(l.id);
                }
                retained.insert(listed.iter().filter(|l| l.has_manifest).map(|l| l.id).collect())
            }
        };
        let keep = self.spec.retain.max(1) as usize;
        while complete.len() > keep {
            let old = complete.pop_front().expect("longer than keep ≥ 1");
            self.delete_old(old);
        }
    }

    fn delete_old(&self, id: u64) {
        if let Err(e) = self.storage.delete_checkpoint(id) {
            tracing::warn!("could not delete old checkpoint {id}: {e}");
        }
    }

    /// Gives up on `p`: deletes its objects, records why, and fails the job
    /// once too many checkpoints in a row failed (or a stop-with-savepoint did).
    fn abandon(&self, id: u64, p: Pending, why: &str, failures: &mut u32) -> Result<(), Error> {
        let kind = if p.savepoint.is_some() { "savepoint" } else { "checkpoint" };
        tracing::warn!("{kind} {id} abandoned: {why}");
        if let Err(e) = p.storage.delete_dir(&p.dir) {
            tracing::warn!("could not delete abandoned {kind} {id}: {e}");
        }
        self.stats.record(HistoryEntry {
            id,
            kind,
            status: "abandoned",
            triggered_at_ms: p.triggered_at_ms,
            duration_ms: p.triggered.elapsed().as_millis() as u64,
            bytes: 0,
            max_alignment_ms: 0,
            detail: why.to_owned(),
        });
        if let Some((stop, reply)) = p.savepoint {
            let _ = reply.send(Err(format!("savepoint {id} failed: {why}")));
            if stop {
                // The sources have stopped: the job cannot go on as it is.
                return Err(Error::Checkpoint(format!("stop-with-savepoint {id} failed ({why})")));
            }
            return Ok(());
        }
        *failures += 1;
        if *failures > self.spec.tolerable_failures {
            return Err(Error::Checkpoint(format!(
                "checkpoint {id} failed ({why}), {failures} failure(s) in a row, more than [checkpoint] tolerable_failures = {}",
                self.spec.tolerable_failures
            )));
        }
        Ok(())
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
