//! The checkpoint protocol as a pure state machine: facts in, actions out.
//!
//! [`Protocol::step`] takes one [`Input`] — a clock tick, a subtask's ack or
//! final state, the outcome of an upload or a manifest write, a savepoint
//! request, cancellation — and returns the [`Action`]s it calls for. It has
//! no threads, no clock and no I/O: the driver
//! ([`coordinator`](super::coordinator)) owns the state bytes, does the
//! uploads, writes manifests and talks to tasks, and feeds the outcomes back
//! in. That is what lets `tests/sim` run thousands of seeded schedules of
//! triggers, acks, failed and lost uploads, failovers and restarts against
//! it, checking the invariants below after every step.
//!
//! Invariants it keeps (ARCHITECTURE.md, "Invariants"):
//! - **Ids never repeat** within a run, and start after every id the store
//!   or the restored savepoint knows of ([`Facts::next_id`]).
//! - **Never delete what you did not create.** Abandoning a checkpoint or
//!   savepoint deletes only the objects this protocol wrote (or may have
//!   written: a failed put whose outcome is unknown); an object or manifest
//!   that already existed is never touched. A complete checkpoint is only
//!   removed by retention, and never the newest; a savepoint never.
//! - **Commit only what is restorable.** Tasks are told to commit (sinks
//!   publish output) only for a complete checkpoint or a complete
//!   *stop* savepoint. An intermediate savepoint commits nothing (Flink
//!   1.15's rule): the job may still fail over to an older checkpoint, and
//!   output committed past it would be duplicated.
//! - **Liveness.** A failed or timed-out final checkpoint is retried (the
//!   job does not hang), and consecutive failures beyond
//!   `tolerable_failures` fail the attempt.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A subtask: (node index in plan order, subtask index).
pub type Key = (usize, u32);

/// The settings the protocol decides by (times in ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Between periodic triggers.
    pub interval_ms: u64,
    /// Least time from one completion to the next periodic trigger.
    pub min_pause_ms: u64,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout_ms: u64,
    /// Checkpoints in flight at once.
    pub max_concurrent: u32,
    /// Consecutive failed checkpoints tolerated.
    pub tolerable_failures: u32,
    /// Complete checkpoints kept.
    pub retain: u32,
    /// Periodic checkpoints (else savepoints and the final checkpoint only).
    pub periodic: bool,
    /// Parallelism of each node, in plan order.
    pub parallelism: Vec<u32>,
    /// Which nodes are sources (they receive triggers).
    pub sources: Vec<bool>,
}

/// What the store said before this run started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The first id free: after every checkpoint directory in the store and
    /// the savepoint this run started from.
    pub next_id: u64,
    /// Complete checkpoints in the store, ascending (retention counts them).
    pub complete: Vec<u64>,
    /// Incomplete checkpoint directories of earlier, dead runs: deleted once
    /// this run has a complete checkpoint of its own.
    pub leftovers: Vec<u64>,
    /// The restored checkpoint, if it is a *final* one: once every subtask
    /// has finished again, it is committed once more (sinks finish what it
    /// names) instead of writing another final checkpoint just like it.
    pub restored_final: Option<u64>,
}

/// The outcome of a create-only put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    /// Written.
    Ok,
    /// Something was already there: not ours, never to be deleted.
    Exists,
    /// Failed; the object may or may not have been written (a lost
    /// acknowledgement), so cleanup deletes it.
    Failed(String),
}

/// A fact for the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (the driver ticks every few ms).
    Tick,
    /// A subtask snapshotted for checkpoint `id`; the driver holds the bytes.
    Acked {
        /// Checkpoint id.
        id: u64,
        /// Who.
        key: Key,
    },
    /// A subtask consumed all its input; its final state stands for it in
    /// every later checkpoint.
    Finished {
        /// Who.
        key: Key,
    },
    /// An upload asked for by [`Action::Upload`] ended.
    Uploaded {
        /// Checkpoint id.
        id: u64,
        /// Whose state.
        key: Key,
        /// How it went.
        result: PutResult,
    },
    /// A manifest write asked for by [`Action::WriteManifest`] ended.
    ManifestWritten {
        /// Checkpoint id.
        id: u64,
        /// How it went.
        result: PutResult,
    },
    /// Someone asked for a savepoint (`request` is the driver's handle).
    SavepointRequested {
        /// Handle for the reply.
        request: u64,
        /// Stop the job once it is complete.
        stop: bool,
    },
    /// The attempt is being torn down.
    Cancelled,
}

/// How the protocol ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The final checkpoint completed: the job is done.
    Finished,
    /// A stop-with-savepoint completed: every task has stopped.
    StoppedWithSavepoint(u64),
    /// The attempt was torn down.
    Stopped,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell these sources to snapshot and emit barrier `id`.
    Trigger {
        /// Checkpoint id.
        id: u64,
        /// For a savepoint: the request it answers.
        savepoint: Option<u64>,
        /// A stop-with-savepoint barrier.
        stop: bool,
        /// The sources that have not finished.
        sources: Vec<Key>,
    },
    /// Upload `key`'s state for `id` — its ack, or its final state.
    Upload {
        /// Checkpoint id.
        id: u64,
        /// Whose state.
        key: Key,
        /// The final state rather than an ack.
        final_state: bool,
    },
    /// The ack is not needed (its checkpoint is gone): drop its bytes.
    Discard {
        /// Checkpoint id.
        id: u64,
        /// Whose state.
        key: Key,
    },
    /// Every state object of `id` is written: write its manifest.
    WriteManifest {
        /// Checkpoint id.
        id: u64,
        /// Every state in it is a final state.
        finished: bool,
    },
    /// `id` is complete: tell every task (sinks publish output, guests hear
    /// `checkpoint-complete`). Never sent for intermediate savepoints.
    Commit {
        /// Checkpoint id.
        id: u64,
        /// Subtasks whose final state is in it (a finished sink commits all).
        finals: Vec<Key>,
    },
    /// Report a complete savepoint to whoever asked.
    SavepointDone {
        /// The request.
        request: u64,
        /// Its id.
        id: u64,
    },
    /// Report a failed (or refused) savepoint.
    SavepointFailed {
        /// The request.
        request: u64,
        /// Why.
        why: String,
    },
    /// Give up on `id`: delete exactly these objects (and its manifest if
    /// `manifest`) — what this run wrote or may have written, nothing else.
    Abandon {
        /// Checkpoint id.
        id: u64,
        /// State objects to delete.
        objects: Vec<Key>,
        /// Delete the manifest too (its write failed, outcome unknown).
        manifest: bool,
        /// Why, for the log and history.
        why: String,
        /// It is a savepoint.
        savepoint: bool,
    },
    /// Retention: delete complete checkpoint `id` (never the newest).
    Retire {
        /// Checkpoint id.
        id: u64,
    },
    /// Delete an incomplete checkpoint an earlier, dead run left.
    DeleteLeftover {
        /// Checkpoint id.
        id: u64,
    },
    /// Stop: the protocol is over.
    Finish(End),
    /// Fail the attempt with this reason; the protocol is over.
    Fail(String),
    /// End the attempt without a failure: a stop-with-savepoint failed
    /// after the sources stopped for it, so the job goes on from its latest
    /// checkpoint (Flink keeps a job running when a savepoint fails). The
    /// protocol is over.
    Resume(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Checkpoint,
    Savepoint { request: u64, stop: bool },
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    triggered_at: u64,
    /// Uploads asked for: key → from a final state.
    uploading: BTreeMap<Key, bool>,
    /// Uploads that succeeded.
    written: BTreeSet<Key>,
    /// Uploads that failed with an unknown outcome.
    maybe_written: BTreeSet<Key>,
    manifest_requested: bool,
}

/// The coordinator's decisions. See the module doc.
#[derive(Debug)]
pub struct Protocol {
    settings: Settings,
    total: usize,
    next_id: u64,
    now: u64,
    pending: BTreeMap<u64, Pending>,
    /// Ids given up on, and whether each was a savepoint (late upload
    /// results delete their objects).
    abandoned: BTreeMap<u64, bool>,
    queued: VecDeque<(u64, bool)>,
    finals: BTreeSet<Key>,
    /// Complete checkpoints in the store, oldest first.
    complete: VecDeque<u64>,
    leftovers: Vec<u64>,
    stopping: bool,
    last_trigger: u64,
    last_complete: Option<u64>,
    failures: u32,
    /// The id of the final checkpoint in flight.
    final_id: Option<u64>,
    restored_final: Option<u64>,
    over: bool,
}

impl Protocol {
    /// A protocol for one attempt, starting at time `now` (ms, any origin).
    pub fn new(settings: Settings, facts: Facts, now: u64) -> Self {
        let total = settings.parallelism.iter().map(|&p| p as usize).sum();
        Self {
            settings,
            total,
            next_id: facts.next_id.max(1),
            now,
            pending: BTreeMap::new(),
            abandoned: BTreeMap::new(),
            queued: VecDeque::new(),
            finals: BTreeSet::new(),
            complete: facts.complete.into(),
            leftovers: facts.leftovers,
            stopping: false,
            last_trigger: now,
            last_complete: None,
            failures: 0,
            final_id: None,
            restored_final: facts.restored_final,
            over: false,
        }
    }

    /// Whether the protocol has ended ([`Action::Finish`] or [`Action::Fail`]).
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Ids in flight, ascending.
    pub fn pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// Complete checkpoints retained, oldest first.
    pub fn retained(&self) -> impl Iterator<Item = u64> + '_ {
        self.complete.iter().copied()
    }

    /// Takes `input` at time `now` (ms, never decreasing) and returns what to do.
    pub fn step(&mut self, now: u64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.over {
            if let Input::SavepointRequested { request, .. } = input {
                out.push(Action::SavepointFailed { request, why: "the job is stopping".into() });
            }
            return out;
        }
        self.now = self.now.max(now);
        // Every input is a moment to check timeouts: ticks may be rare while
        // events keep arriving.
        self.expire(&mut out);
        if self.over {
            return out;
        }
        match input {
            Input::Tick => {}
            Input::Acked { id, key } => self.acked(id, key, &mut out),
            Input::Finished { key } => self.finished(key, &mut out),
            Input::Uploaded { id, key, result } => self.uploaded(id, key, result, &mut out),
            Input::ManifestWritten { id, result } => self.manifest_written(id, result, &mut out),
            Input::SavepointRequested { request, stop } => {
                if self.stopping {
                    let why = "the job is already stopping with a savepoint".into();
                    out.push(Action::SavepointFailed { request, why });
                } else {
                    self.stopping = stop;
                    self.queued.push_back((request, stop));
                }
            }
            Input::Cancelled => {
                self.cancel(&mut out);
                return out;
            }
        }
        if !self.over {
            self.maybe_trigger(&mut out);
        }
        out
    }

    fn acked(&mut self, id: u64, key: Key, out: &mut Vec<Action>) {
        // State changed since the restored final checkpoint: it is not final any more.
        self.restored_final = None;
        match self.pending.get_mut(&id) {
            Some(p) if !p.uploading.contains_key(&key) => {
                p.uploading.insert(key, false);
                out.push(Action::Upload { id, key, final_state: false });
            }
            _ => out.push(Action::Discard { id, key }),
        }
    }

    fn finished(&mut self, key: Key, out: &mut Vec<Action>) {
        self.finals.insert(key);
        for (&id, p) in &mut self.pending {
            if let std::collections::btree_map::Entry::Vacant(e) = p.uploading.entry(key) {
                e.insert(true);
                out.push(Action::Upload { id, key, final_state: true });
            }
        }
    }

    fn uploaded(&mut self, id: u64, key: Key, result: PutResult, out: &mut Vec<Action>) {
        let Some(p) = self.pending.get_mut(&id) else {
            // Late news of a checkpoint already given up on: clean up after it.
            if let Some(&savepoint) = self.abandoned.get(&id)
                && result != PutResult::Exists
            {
                let why = "late upload of an abandoned checkpoint".into();
                out.push(Action::Abandon { id, objects: vec![key], manifest: false, why, savepoint });
            }
            return;
        };
        match result {
            PutResult::Ok => {
                p.written.insert(key);
                if p.written.len() == self.total && !p.manifest_requested {
                    p.manifest_requested = true;
                    let finished = p.uploading.values().all(|&from_final| from_final);
                    out.push(Action::WriteManifest { id, finished });
                }
            }
            PutResult::Exists => {
                let why =
                    format!("a state object of {id} already exists in the store (written by another run of this job?)");
                self.abandon(id, why, false, true, out);
            }
            PutResult::Failed(e) => {
                p.maybe_written.insert(key);
                self.abandon(id, format!("uploading state failed: {e}"), false, true, out);
            }
        }
    }

    fn manifest_written(&mut self, id: u64, result: PutResult, out: &mut Vec<Action>) {
        match result {
            PutResult::Ok => self.complete(id, out),
            PutResult::Exists => {
                let why = "its manifest already exists (written by another run of this job?)".to_owned();
                self.abandon(id, why, false, true, out);
            }
            PutResult::Failed(e) => self.abandon(id, format!("writing the manifest failed: {e}"), true, true, out),
        }
    }

    fn complete(&mut self, id: u64, out: &mut Vec<Action>) {
        let Some(p) = self.pending.remove(&id) else { return };
        self.failures = 0;
        self.last_complete = Some(self.now);
        let finals: Vec<Key> = p.uploading.iter().filter(|&(_, &f)| f).map(|(&k, _)| k).collect();
        let finished = finals.len() == self.total;
        match p.kind {
            Kind::Savepoint { request, stop } => {
                out.push(Action::SavepointDone { request, id });
                if stop {
                    out.push(Action::Commit { id, finals });
                    self.end(End::StoppedWithSavepoint(id), out);
                }
            }
            Kind::Checkpoint => {
                out.push(Action::Commit { id, finals });
                // A newer complete checkpoint subsumes older pending ones
                // (savepoints were asked for: they run to completion or time out).
                let older: Vec<u64> =
                    self.pending.range(..id).filter(|(_, p)| p.kind == Kind::Checkpoint).map(|(&k, _)| k).collect();
                for old in older {
                    self.abandon(old, format!("subsumed by checkpoint {id}"), false, false, out);
                }
                self.complete.push_back(id);
                let keep = self.settings.retain.max(1) as usize;
                while self.complete.len() > keep {
                    let old = self.complete.pop_front().expect("longer than keep ≥ 1");
                    out.push(Action::Retire { id: old });
                }
                for old in std::mem::take(&mut self.leftovers) {
                    out.push(Action::DeleteLeftover { id: old });
                }
                if finished && self.finals.len() == self.total && self.final_id.is_none_or(|f| f == id) {
                    self.end(End::Finished, out);
                }
            }
        }
    }

    /// Gives up on `id`. `counted`: a failure toward `tolerable_failures`.
    fn abandon(&mut self, id: u64, why: String, manifest: bool, counted: bool, out: &mut Vec<Action>) {
        let Some(p) = self.pending.remove(&id) else { return };
        self.abandoned.insert(id, matches!(p.kind, Kind::Savepoint { .. }));
        if self.final_id == Some(id) {
            self.final_id = None;
        }
        let objects = p.written.union(&p.maybe_written).copied().collect();
        let savepoint = matches!(p.kind, Kind::Savepoint { .. });
        out.push(Action::Abandon { id, objects, manifest, why: why.clone(), savepoint });
        match p.kind {
            Kind::Savepoint { request, stop } => {
                out.push(Action::SavepointFailed { request, why: format!("savepoint {id} failed: {why}") });
                if stop && !self.over {
                    // The sources have stopped: this attempt cannot go on, but the job can.
                    self.over = true;
                    out.push(Action::Resume(format!("stop-with-savepoint {id} failed ({why})")));
                }
            }
            Kind::Checkpoint if counted => {
                self.failures += 1;
                if self.failures > self.settings.tolerable_failures {
                    let why = format!(
                        "checkpoint {id} failed ({why}), {} failure(s) in a row, more than [checkpoint] \
                         tolerable_failures = {}",
                        self.failures, self.settings.tolerable_failures
                    );
                    self.fail(why, out);
                }
            }
            Kind::Checkpoint => {}
        }
    }

    fn expire(&mut self, out: &mut Vec<Action>) {
        let timeout = self.settings.timeout_ms;
        // A checkpoint whose manifest is being written is decided by that
        // write's outcome, not by the clock: abandoning it would delete the
        // state under a manifest that may already exist.
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.manifest_requested && self.now.saturating_sub(p.triggered_at) > timeout)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if self.over {
                return;
            }
            let why =
                format!("not complete after {:?} ([checkpoint] timeout)", std::time::Duration::from_millis(timeout));
            self.abandon(id, why, false, true, out);
        }
    }

    fn maybe_trigger(&mut self, out: &mut Vec<Action>) {
        let all_finished = self.finals.len() == self.total;
        let unfinished_sources = self.unfinished_sources();
        let room = self.pending.len() < self.settings.max_concurrent.max(1) as usize;
        if all_finished
            && self.pending.is_empty()
            && self.queued.is_empty()
            && let Some(id) = self.restored_final
        {
            // Nothing happened since the final checkpoint this run restored.
            out.push(Action::Commit { id, finals: self.finals.iter().copied().collect() });
            self.end(End::Finished, out);
            return;
        }
        let savepoint = if room && self.final_id.is_none() { self.queued.pop_front() } else { None };
        let due = savepoint.is_some()
            || if all_finished {
                self.final_id.is_none() && self.pending.is_empty()
            } else {
                self.settings.periodic
                    && !self.stopping
                    && !unfinished_sources.is_empty()
                    && room
                    && self.now.saturating_sub(self.last_trigger) >= self.settings.interval_ms
                    && self.last_complete.is_none_or(|t| self.now.saturating_sub(t) >= self.settings.min_pause_ms)
            };
        if !due {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.last_trigger = self.now;
        if all_finished && savepoint.is_none() {
            self.final_id = Some(id);
        }
        let kind = match savepoint {
            Some((request, stop)) => Kind::Savepoint { request, stop },
            None => Kind::Checkpoint,
        };
        let stop = matches!(kind, Kind::Savepoint { stop: true, .. });
        let mut p = Pending {
            kind,
            triggered_at: self.now,
            uploading: BTreeMap::new(),
            written: BTreeSet::new(),
            maybe_written: BTreeSet::new(),
            manifest_requested: false,
        };
        out.push(Action::Trigger {
            id,
            savepoint: savepoint.map(|(request, _)| request),
            stop,
            sources: unfinished_sources,
        });
        for &key in &self.finals {
            p.uploading.insert(key, true);
            out.push(Action::Upload { id, key, final_state: true });
        }
        self.pending.insert(id, p);
    }

    fn unfinished_sources(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        for (node, &p) in self.settings.parallelism.iter().enumerate() {
            if self.settings.sources.get(node).copied().unwrap_or(false) {
                keys.extend((0..p).map(|s| (node, s)).filter(|k| !self.finals.contains(k)));
            }
        }
        keys
    }

    fn cancel(&mut self, out: &mut Vec<Action>) {
        // Over first: abandoning a stop savepoint must not also fail the job.
        self.over = true;
        // As in `expire`: a manifest write in flight decides its checkpoint.
        let ids: Vec<u64> = self.pending.iter().filter(|(_, p)| !p.manifest_requested).map(|(&id, _)| id).collect();
        for id in ids {
            self.abandon(id, "the job is stopping".into(), false, false, out);
        }
        for (request, _) in std::mem::take(&mut self.queued) {
            out.push(Action::SavepointFailed { request, why: "the job failed before the savepoint started".into() });
        }
        out.push(Action::Finish(End::Stopped));
    }

    fn end(&mut self, end: End, out: &mut Vec<Action>) {
        self.over = true;
        out.push(Action::Finish(end));
        for (request, _) in std::mem::take(&mut self.queued) {
            out.push(Action::SavepointFailed { request, why: "the job has stopped".into() });
        }
    }

    fn fail(&mut self, why: String, out: &mut Vec<Action>) {
        if !self.over {
            self.over = true;
            out.push(Action::Fail(why));
        }
    }
}

#[cfg(test)]
mod tests;
