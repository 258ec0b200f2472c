//! Deterministic simulation of the checkpoint protocol: seeded schedules of
//! triggers, acks, finishing subtasks, uploads that succeed, fail or lose
//! their acknowledgement, manifest writes that do the same, savepoints,
//! stops, in-process failovers and process kills — with the invariants
//! checked after every action. A failing seed replays:
//! `WEIR_SIM_SEED=1234 cargo test -p weir-host protocol::tests::simulation`
//! (`WEIR_SIM_CASES=N` runs more schedules).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::*;

/// Where an object lives: a checkpoint in the job's store, or a savepoint
/// directory of its own (unique per run, as the driver names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    Checkpoint(u64),
    Savepoint(u64, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    State(Key),
    Manifest,
}

/// A scheduled event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Input(u32, Input),
    Finish(u32, Key),
    Request(u32, bool),
}

/// The writer of objects planted by "another run" the protocol does not know of.
const FOREIGN: u32 = u32::MAX;

struct Sim {
    rng: fastrand::Rng,
    seed: u64,
    settings: Settings,
    now: u64,
    seq: u64,
    /// Events by (time, sequence); the sequence breaks ties in order.
    queue: BinaryHeap<std::cmp::Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    /// Every object in storage and the run (incarnation) that wrote it.
    store: BTreeMap<(Dir, Obj), u32>,
    /// The current run.
    run: u32,
    protocol: Protocol,
    /// Savepoint dirs by id, for this run.
    savepoint_dirs: BTreeMap<u64, Dir>,
    /// Ids triggered by this run.
    triggered: BTreeSet<u64>,
    /// Per key: triggered ids not yet acked, in order.
    owed: BTreeMap<Key, Vec<u64>>,
    finished: BTreeSet<Key>,
    stopped: bool,
    /// Ids whose barrier reached the sources.
    reached: BTreeSet<u64>,
    /// Highest checkpoint or savepoint whose output any run committed.
    max_committed: u64,
    /// The stop savepoint the next run resumes from.
    resume_from: Option<u64>,
    /// Savepoint ids the job's store knows of (the driver writes a marker
    /// when it triggers one), so ids continue after them across kills.
    markers: BTreeSet<u64>,
    /// Complete savepoints ever (never to be deleted).
    savepoints: BTreeSet<Dir>,
    /// Ids that completed in some run (never to be reused).
    completed_ids: BTreeSet<u64>,
    faults: bool,
    outcome: Option<End>,
    /// Requests in flight.
    requests: u64,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    steps: u64,
    completed: u64,
    abandoned: u64,
    failovers: u64,
    kills: u64,
    savepoints: u64,
    finished_jobs: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let parallelism = vec![rng.u32(1..=3), rng.u32(1..=3), rng.u32(1..=2)];
        let settings = Settings {
            interval_ms: rng.u64(5..60),
            min_pause_ms: rng.u64(0..20),
            timeout_ms: rng.u64(200..400),
            max_concurrent: rng.u32(1..=3),
            tolerable_failures: rng.u32(0..=3),
            retain: rng.u32(1..=3),
            periodic: rng.u8(0..10) > 0,
            parallelism,
            sources: vec![true, false, false],
        };
        let protocol = Protocol::new(settings.clone(), Facts { next_id: 1, ..Facts::default() }, 0);
        Self {
            rng,
            seed,
            settings,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            store: BTreeMap::new(),
            run: 0,
            protocol,
            savepoint_dirs: BTreeMap::new(),
            triggered: BTreeSet::new(),
            owed: BTreeMap::new(),
            finished: BTreeSet::new(),
            stopped: false,
            reached: BTreeSet::new(),
            max_committed: 0,
            resume_from: None,
            markers: BTreeSet::new(),
            savepoints: BTreeSet::new(),
            completed_ids: BTreeSet::new(),
            faults: true,
            outcome: None,
            requests: 0,
            stats: Stats::default(),
        }
    }

    fn keys(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        for (n, &p) in self.settings.parallelism.iter().enumerate() {
            keys.extend((0..p).map(|s| (n, s)));
        }
        keys
    }

    fn schedule(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(std::cmp::Reverse((self.now + delay, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn fail(&self, what: &str) -> ! {
        panic!("seed {}: run {} at {} ms: {what}", self.seed, self.run, self.now)
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(&what());
        }
    }

    /// A checkpoint directory is complete: its manifest and every state object exist.
    fn complete(&self, dir: Dir) -> bool {
        self.store.contains_key(&(dir, Obj::Manifest))
            && self.keys().iter().all(|&k| self.store.contains_key(&(dir, Obj::State(k))))
    }

    fn put(&mut self, dir: Dir, obj: Obj, fault_rate: u8) -> PutResult {
        match self.store.get(&(dir, obj)) {
            Some(&FOREIGN) => return PutResult::Exists,
            Some(&writer) => self.fail(&format!("{dir:?}/{obj:?} written twice (first by run {writer})")),
            None => {}
        }
        if self.faults && self.rng.u8(0..100) < fault_rate {
            // A lost acknowledgement half of the time: written, reported failed.
            if self.rng.bool() {
                self.store.insert((dir, obj), self.run);
            }
            return PutResult::Failed("injected fault".into());
        }
        self.store.insert((dir, obj), self.run);
        PutResult::Ok
    }

    fn delete(&mut self, dir: Dir, obj: Obj, why: &str) {
        if let Some(&writer) = self.store.get(&(dir, obj)) {
            self.check(writer == self.run || matches!(dir, Dir::Checkpoint(_)) && why == "leftover", || {
                format!("{why}: deleted {dir:?}/{obj:?}, written by run {writer}, not this one")
            });
            self.store.remove(&(dir, obj));
        }
    }

    fn dir_of(&self, id: u64) -> Dir {
        self.savepoint_dirs.get(&id).copied().unwrap_or(Dir::Checkpoint(id))
    }

    /// Ids of every checkpoint directory in the store (as a listing shows them).
    fn checkpoint_ids(&self) -> BTreeSet<u64> {
        self.store
            .keys()
            .filter_map(|(d, _)| match d {
                Dir::Checkpoint(id) => Some(*id),
                Dir::Savepoint(..) => None,
            })
            .collect()
    }

    fn newest_complete_checkpoint(&self) -> Option<u64> {
        self.checkpoint_ids().into_iter().rev().find(|&id| self.complete(Dir::Checkpoint(id)))
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            self.stats.steps += 1;
            match action {
                Action::Trigger { id, savepoint, stop, sources } => {
                    self.check(!self.triggered.contains(&id), || format!("id {id} triggered twice"));
                    self.check(!self.completed_ids.contains(&id), || format!("id {id} reused after completing"));
                    let dir = match savepoint {
                        Some(_) => Dir::Savepoint(id, self.run),
                        None => Dir::Checkpoint(id),
                    };
                    self.check(!self.store.iter().any(|((d, _), &w)| *d == dir && w != FOREIGN), || {
                        format!("id {id} triggered over existing objects")
                    });
                    self.triggered.insert(id);
                    if savepoint.is_some() {
                        self.markers.insert(id);
                        self.savepoint_dirs.insert(id, dir);
                    }
                    if !sources.is_empty() {
                        // The barrier flows: every unfinished subtask owes an ack.
                        self.reached.insert(id);
                        for key in self.keys() {
                            if !self.finished.contains(&key) {
                                self.owed.entry(key).or_default().push(id);
                                let delay = self.rng.u64(0..40);
                                self.schedule(delay, Ev::Input(self.run, Input::Acked { id, key }));
                            }
                        }
                    }
                    if stop {
                        self.stopped = true;
                    }
                }
                Action::Upload { id, key, .. } => {
                    let result = self.put(self.dir_of(id), Obj::State(key), 8);
                    let delay = self.rng.u64(0..30);
                    self.schedule(delay, Ev::Input(self.run, Input::Uploaded { id, key, result }));
                }
                Action::Discard { .. } => {}
                Action::WriteManifest { id, .. } => {
                    let dir = self.dir_of(id);
                    self.check(self.keys().iter().all(|&k| self.store.contains_key(&(dir, Obj::State(k)))), || {
                        format!("manifest of {id} asked for before every state object was written")
                    });
                    let result = self.put(dir, Obj::Manifest, 5);
                    let actions = self.protocol.step(self.now, Input::ManifestWritten { id, result });
                    self.perform(actions);
                }
                Action::Commit { id, .. } => {
                    let dir = self.dir_of(id);
                    self.check(self.complete(dir), || format!("commit of {id}, which is not complete"));
                    self.completed_ids.insert(id);
                    self.check(id > self.max_committed, || format!("commit of {id} after {}", self.max_committed));
                    self.max_committed = id;
                    self.stats.completed += 1;
                }
                Action::SavepointDone { id, .. } => {
                    let dir = self.dir_of(id);
                    self.check(matches!(dir, Dir::Savepoint(..)) && self.complete(dir), || {
                        format!("savepoint {id} reported done but not complete")
                    });
                    self.savepoints.insert(dir);
                    self.completed_ids.insert(id);
                    self.stats.savepoints += 1;
                }
                Action::SavepointFailed { .. } => {}
                Action::Abandon { id, objects, manifest, .. } => {
                    let dir = self.dir_of(id);
                    self.check(!self.savepoints.contains(&dir), || format!("abandoning complete savepoint {id}"));
                    if manifest {
                        self.delete(dir, Obj::Manifest, "abandon");
                    }
                    self.check(!self.complete(dir) || !self.completed_ids.contains(&id), || {
                        format!("abandoning {id}, which completed")
                    });
                    for key in objects {
                        self.delete(dir, Obj::State(key), "abandon");
                    }
                    self.stats.abandoned += 1;
                }
                Action::Retire { id } => {
                    let dir = Dir::Checkpoint(id);
                    self.check(self.complete(dir), || format!("retiring {id}, not a complete checkpoint"));
                    self.check(self.newest_complete_checkpoint() != Some(id), || format!("retiring the newest, {id}"));
                    let objs: Vec<(Dir, Obj)> = self.store.keys().filter(|(d, _)| *d == dir).copied().collect();
                    for (d, o) in objs {
                        self.store.remove(&(d, o));
                    }
                }
                Action::DeleteLeftover { id } => {
                    let dir = Dir::Checkpoint(id);
                    self.check(!self.store.contains_key(&(dir, Obj::Manifest)), || {
                        format!("deleting leftover {id}, which has a manifest")
                    });
                    let objs: Vec<(Dir, Obj)> = self.store.keys().filter(|(d, _)| *d == dir).copied().collect();
                    for (d, o) in objs {
                        self.check(self.store[&(d, o)] < self.run || self.store[&(d, o)] == FOREIGN, || {
                            format!("leftover {id} written by this run")
                        });
                        self.delete(d, o, "leftover");
                    }
                }
                Action::Finish(end) => {
                    if let End::StoppedWithSavepoint(id) = end {
                        self.resume_from = Some(id);
                    }
                    if end == End::Finished {
                        let newest = self.newest_complete_checkpoint();
                        self.check(newest.is_some_and(|n| self.max_committed == n), || {
                            format!("finished, but the newest complete checkpoint {newest:?} was not committed")
                        });
                    }
                    self.outcome = Some(end);
                }
                Action::Fail(_) | Action::Resume(_) => self.outcome = Some(End::Stopped),
            }
        }
        let pending = self.protocol.pending().count() as u32;
        self.check(pending <= self.settings.max_concurrent.max(1) + 1, || format!("{pending} checkpoints in flight"));
    }

    /// Starts run `self.run + 1` from what the store says (after a kill:
    /// `memory` = None) or also from what the process knew (a failover).
    fn restart(&mut self, memory: Option<u64>) {
        let from_savepoint = self.resume_from.take();
        let restored = from_savepoint.or_else(|| self.newest_complete_checkpoint());
        self.check(restored.unwrap_or(0) >= self.max_committed, || {
            format!("restoring {restored:?}, but the output of {} was committed: duplicates", self.max_committed)
        });
        self.run += 1;
        if let Some(sp) = from_savepoint {
            // The run writes the savepoint's state as its first checkpoint
            // (`restore::write_restore_point`), after every id it knows.
            let id =
                self.checkpoint_ids().into_iter().chain(self.markers.iter().copied()).chain([sp]).max().unwrap_or(0)
                    + 1;
            for key in self.keys() {
                self.store.insert((Dir::Checkpoint(id), Obj::State(key)), self.run);
            }
            self.store.insert((Dir::Checkpoint(id), Obj::Manifest), self.run);
        }
        let ids = self.checkpoint_ids();
        let mut next_id = ids.last().max(self.markers.last()).map_or(1, |l| l + 1);
        if let Some(m) = memory {
            next_id = next_id.max(m + 1);
        }
        let complete: Vec<u64> = ids.iter().copied().filter(|&id| self.complete(Dir::Checkpoint(id))).collect();
        let leftovers: Vec<u64> =
            ids.iter().copied().filter(|&id| !self.store.contains_key(&(Dir::Checkpoint(id), Obj::Manifest))).collect();
        self.protocol = Protocol::new(
            self.settings.clone(),
            Facts { next_id, complete, leftovers, restored_final: None },
            self.now,
        );
        // Now and then another writer's object appears where this run will
        // write (a racing or fenced run): it must be left alone.
        if self.faults && self.rng.u8(0..4) == 0 {
            let keys = self.keys();
            let key = keys[self.rng.usize(0..keys.len())];
            let at = Dir::Checkpoint(next_id + self.rng.u64(0..4));
            self.store.insert((at, Obj::State(key)), FOREIGN);
        }
        self.triggered.clear();
        self.owed.clear();
        self.reached.clear();
        self.savepoint_dirs.clear();
        self.stopped = false;
        self.outcome = None;
        // A restored finished source stays finished: keep it simple and
        // restart every subtask unfinished (the state is the checkpoint's).
        self.finished.clear();
        self.events.retain(|_, ev| !matches!(ev, Ev::Input(..) | Ev::Finish(..)));
        self.schedule_finishes();
    }

    fn schedule_finishes(&mut self) {
        let horizon = if self.faults { 2_000 } else { 300 };
        for key in self.keys() {
            // Sources first, then the rest (a task ends after its inputs).
            let at = if key.0 == 0 { self.rng.u64(50..horizon) } else { horizon + self.rng.u64(0..100) };
            self.schedule(at, Ev::Finish(self.run, key));
        }
    }

    fn deliver(&mut self, input: Input) {
        let trace = std::env::var_os("WEIR_SIM_TRACE").is_some();
        if trace && input != Input::Tick {
            eprintln!("{} run {} <- {input:?}", self.now, self.run);
        }
        let actions = self.protocol.step(self.now, input);
        if trace && !actions.is_empty() {
            eprintln!("{} run {} -> {actions:?}", self.now, self.run);
        }
        self.perform(actions);
    }

    fn run(mut self) -> Stats {
        self.schedule_finishes();
        for _ in 0..self.rng.u32(0..4) {
            let at = self.rng.u64(0..1_500);
            let stop = self.rng.u8(0..4) == 0;
            self.schedule(at, Ev::Request(0, stop));
        }
        let mut last_tick = 0;
        let calm_at = 3_000;
        let deadline = 30_000;
        loop {
            if self.now >= calm_at && self.faults {
                self.faults = false;
            }
            self.check(self.now < deadline, || "the job never finished once faults stopped".into());
            if let Some(end) = self.outcome {
                match end {
                    End::Finished => {
                        self.stats.finished_jobs += 1;
                        return self.stats;
                    }
                    End::StoppedWithSavepoint(_) => {
                        // Resumed from the savepoint: ids continue after it.
                        let m = self.triggered.last().copied();
                        self.restart(m);
                    }
                    End::Stopped => {
                        self.stats.failovers += 1;
                        let m = self.triggered.last().copied();
                        self.restart(m);
                    }
                }
                continue;
            }
            // Faults: a kill or a failover now and then.
            if self.faults && self.rng.u16(0..2_000) == 0 {
                self.stats.kills += 1;
                self.restart(None);
                continue;
            }
            if self.faults && self.rng.u16(0..3_000) == 0 {
                self.deliver(Input::Cancelled);
                continue;
            }
            let next = self.queue.peek().map(|std::cmp::Reverse((t, _))| *t);
            if next.is_none_or(|t| t > last_tick + 5) {
                self.now = last_tick + 5;
                last_tick = self.now;
                self.deliver(Input::Tick);
                continue;
            }
            let std::cmp::Reverse((t, seq)) = self.queue.pop().expect("peeked");
            self.now = self.now.max(t);
            let Some(ev) = self.events.remove(&seq) else { continue };
            match ev {
                Ev::Input(run, _) | Ev::Finish(run, _) if run != self.run => {}
                Ev::Input(_, input) => {
                    if let Input::Acked { id, key } = &input {
                        // Acks arrive in barrier order; a stopped or finished subtask sends no more.
                        let owed = self.owed.entry(*key).or_default();
                        match owed.first() {
                            Some(first) if first == id => {
                                owed.remove(0);
                            }
                            _ => {
                                let delay = self.rng.u64(1..10);
                                let run = self.run;
                                self.schedule(delay, Ev::Input(run, input));
                                continue;
                            }
                        }
                    }
                    self.deliver(input);
                }
                Ev::Finish(_, key) => {
                    let sources_done = self.keys().iter().filter(|k| k.0 == 0).all(|k| self.finished.contains(k));
                    let owes = self.owed.get(&key).is_some_and(|o| !o.is_empty());
                    if self.stopped {
                        continue;
                    }
                    if owes || (key.0 != 0 && !sources_done) {
                        let delay = self.rng.u64(5..50);
                        let run = self.run;
                        self.schedule(delay, Ev::Finish(run, key));
                        continue;
                    }
                    self.finished.insert(key);
                    self.deliver(Input::Finished { key });
                }
                Ev::Request(_, stop) => {
                    self.requests += 1;
                    let request = self.requests;
                    self.deliver(Input::SavepointRequested { request, stop });
                }
            }
        }
    }
}

#[test]
fn simulation() {
    let seeds: Vec<u64> = match std::env::var("WEIR_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEIR_SIM_SEED is a number")],
        Err(_) => (0..std::env::var("WEIR_SIM_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000)).collect(),
    };
    let mut total = Stats::default();
    for seed in seeds {
        let s = Sim::new(seed).run();
        total.steps += s.steps;
        total.completed += s.completed;
        total.abandoned += s.abandoned;
        total.failovers += s.failovers;
        total.kills += s.kills;
        total.savepoints += s.savepoints;
        total.finished_jobs += s.finished_jobs;
    }
    eprintln!("simulation: {total:?}");
    assert!(total.abandoned > 0 && total.kills > 0 && total.savepoints > 0, "the schedules exercise faults: {total:?}");
}

fn settings() -> Settings {
    Settings {
        interval_ms: 10,
        min_pause_ms: 0,
        timeout_ms: 1_000,
        max_concurrent: 1,
        tolerable_failures: 1,
        retain: 2,
        periodic: true,
        parallelism: vec![1, 1],
        sources: vec![true, false],
    }
}

/// Regression (issue 10 #8): a failed upload of the final checkpoint is
/// retried, not waited on forever.
#[test]
fn a_failed_final_checkpoint_is_retried() {
    let mut p = Protocol::new(settings(), Facts { next_id: 1, ..Facts::default() }, 0);
    p.step(1, Input::Finished { key: (0, 0) });
    let actions = p.step(2, Input::Finished { key: (1, 0) });
    assert!(actions.contains(&Action::Upload { id: 1, key: (1, 0), final_state: true }), "{actions:?}");
    let actions = p.step(3, Input::Uploaded { id: 1, key: (0, 0), result: PutResult::Failed("503".into()) });
    assert!(matches!(actions[0], Action::Abandon { id: 1, .. }), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Trigger { id: 2, .. })), "{actions:?}");
}

/// Regression (issue 10 #12): rerunning a finished job commits its final
/// checkpoint again and writes no new one.
#[test]
fn a_restored_final_checkpoint_is_not_written_again() {
    let facts = Facts { next_id: 8, complete: vec![7], leftovers: vec![], restored_final: Some(7) };
    let mut p = Protocol::new(settings(), facts, 0);
    p.step(1, Input::Finished { key: (0, 0) });
    let actions = p.step(2, Input::Finished { key: (1, 0) });
    assert_eq!(actions, [Action::Commit { id: 7, finals: vec![(0, 0), (1, 0)] }, Action::Finish(End::Finished)]);
}

/// A checkpoint whose manifest is being written is not abandoned by a
/// timeout or a cancel meanwhile: that would delete state under a manifest
/// that may exist (found in review).
#[test]
fn a_manifest_in_flight_is_never_abandoned() {
    let mut p = Protocol::new(settings(), Facts { next_id: 1, ..Facts::default() }, 0);
    p.step(10, Input::Tick);
    p.step(11, Input::Acked { id: 1, key: (0, 0) });
    p.step(11, Input::Acked { id: 1, key: (1, 0) });
    p.step(12, Input::Uploaded { id: 1, key: (0, 0), result: PutResult::Ok });
    let actions = p.step(12, Input::Uploaded { id: 1, key: (1, 0), result: PutResult::Ok });
    assert!(actions.contains(&Action::WriteManifest { id: 1, finished: false }), "{actions:?}");
    let actions = p.step(5_000, Input::Tick);
    assert!(!actions.iter().any(|a| matches!(a, Action::Abandon { id: 1, .. })), "{actions:?}");
    let actions = p.step(5_001, Input::Cancelled);
    assert_eq!(actions, [Action::Finish(End::Stopped)]);
}

/// Regression (issue 10 #2): a savepoint that is not a stop commits nothing.
#[test]
fn an_intermediate_savepoint_commits_nothing() {
    let mut p = Protocol::new(settings(), Facts { next_id: 5, ..Facts::default() }, 0);
    let actions = p.step(0, Input::SavepointRequested { request: 1, stop: false });
    assert!(matches!(actions[..], [Action::Trigger { id: 5, savepoint: Some(1), .. }]), "{actions:?}");
    p.step(1, Input::Acked { id: 5, key: (0, 0) });
    p.step(1, Input::Acked { id: 5, key: (1, 0) });
    p.step(2, Input::Uploaded { id: 5, key: (0, 0), result: PutResult::Ok });
    let actions = p.step(2, Input::Uploaded { id: 5, key: (1, 0), result: PutResult::Ok });
    assert_eq!(actions, [Action::WriteManifest { id: 5, finished: false }]);
    let actions = p.step(3, Input::ManifestWritten { id: 5, result: PutResult::Ok });
    assert_eq!(actions, [Action::SavepointDone { request: 1, id: 5 }]);
}

/// Regression (issue 10 #1): a savepoint whose directory already holds
/// objects deletes none of them.
#[test]
fn an_existing_object_is_never_deleted() {
    let mut p = Protocol::new(settings(), Facts { next_id: 1, ..Facts::default() }, 0);
    p.step(0, Input::SavepointRequested { request: 1, stop: true });
    p.step(1, Input::Acked { id: 1, key: (0, 0) });
    p.step(1, Input::Acked { id: 1, key: (1, 0) });
    p.step(2, Input::Uploaded { id: 1, key: (1, 0), result: PutResult::Ok });
    let actions = p.step(2, Input::Uploaded { id: 1, key: (0, 0), result: PutResult::Exists });
    let Some(Action::Abandon { objects, manifest, .. }) = actions.first() else { panic!("{actions:?}") };
    assert_eq!((objects.as_slice(), *manifest), (&[(1, 0)][..], false));
}
