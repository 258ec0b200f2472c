//! The dataflow: one thread per subtask, bounded channels between them,
//! records routed by each edge's partitioning. [`start`] wires a
//! [`JobPlan`] into running tasks; [`RunningJob::wait`] joins them.
//!
//! **Failure.** The first task to fail records its error and raises the
//! cancel flag; it then drops its channels, so neighbours see a disconnect
//! and stop as [`TaskError::Cancelled`] (never recorded as the cause);
//! sources poll the flag. The job's error is always the root cause.

pub mod inputs;
pub mod message;
pub mod metrics;
pub mod output;
pub mod task;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use self::inputs::Inputs;
use self::message::Message;
use self::metrics::NodeMetrics;
use self::output::{CHANNEL_CAPACITY, EdgeOutput, Outputs};
use crate::Error;
use crate::checkpoint::coordinator::{
    CheckpointStats, Control, Coordinator, NodeInfo, Outcome, SavepointInfo, SavepointRequest, TaskEvent,
};
use crate::checkpoint::manifest::ModuleEntry;
use crate::checkpoint::restore::Restored;
use crate::checkpoint::state::{SourcePosition, TaskState};
use crate::checkpoint::storage::Storage;
use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::FileSource;
use crate::connectors::generator::Generator;
use crate::connectors::stdout_sink::{DiscardSink, StdoutSink};
use crate::connectors::{Sink, Source};
use crate::error::GuestError;
use crate::job::spec::CheckpointSpec;
use crate::job::spec::Partition;
use crate::job::{JobPlan, NodeKind};
use crate::wasm::OperatorModule;
use crate::wasm::instance::InstanceInfo;

/// A neighbouring task failed or went away; this one stopped because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Why a task stopped early.
#[derive(Debug)]
pub enum TaskError {
    /// This task failed: the job's root cause.
    Failed(Error),
    /// Another task failed first.
    Cancelled,
}

impl From<Cancelled> for TaskError {
    fn from(_: Cancelled) -> Self {
        Self::Cancelled
    }
}

impl From<Error> for TaskError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl From<GuestError> for TaskError {
    fn from(e: GuestError) -> Self {
        Self::Failed(e.into())
    }
}

/// The first failure of a job, and the flag that stops its sources.
#[derive(Default)]
struct FailureSlot {
    /// When the root cause was recorded.
    failed_at: OnceLock<Instant>,
    /// Raised by the first failure; polled by sources.
    cancel: AtomicBool,
    /// The root cause. A Mutex because failures are rare and racing
    /// tasks must agree on exactly one "first".
    first: Mutex<Option<Error>>,
    /// Some task stopped as cancelled (an unexplained one is a bug).
    any_cancelled: AtomicBool,
}

impl FailureSlot {
    fn record(&self, outcome: Result<(), TaskError>) {
        match outcome {
            Ok(()) => {}
            Err(TaskError::Failed(e)) => {
                let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(e);
                self.failed_at.get_or_init(Instant::now);
                self.cancel.store(true, Ordering::Relaxed);
            }
            Err(TaskError::Cancelled) => {
                self.any_cancelled.store(true, Ordering::Relaxed);
                self.cancel.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Counters of one node, for progress and summaries.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// Node id.
    pub id: String,
    /// Number of subtasks.
    pub parallelism: u32,
    /// Live counters.
    pub metrics: Arc<NodeMetrics>,
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Job name.
    pub job: String,
    /// Wall time from start to the last task's exit.
    pub elapsed: Duration,
    /// Per node counters, in plan order (of the last attempt).
    pub nodes: Vec<NodeStats>,
    /// The checkpoint the last attempt restored, if any.
    pub restored_from: Option<u64>,
    /// Checkpoint counters, if checkpointing.
    pub checkpoints: Option<Arc<CheckpointStats>>,
    /// The savepoint a stop-with-savepoint ended the job with.
    pub stopped_with: Option<SavepointInfo>,
}

/// Checkpointing for one attempt of a job.
pub struct CheckpointSetup<'a> {
    /// Settings (defaults when the job has no `[checkpoint]`).
    pub spec: CheckpointSpec,
    /// Periodic checkpoints (else only savepoints and the final checkpoint).
    pub periodic: bool,
    /// Savepoint requests from the control API.
    pub requests: Receiver<SavepointRequest>,
    /// Where checkpoints go.
    pub storage: Arc<Storage>,
    /// The checkpoint to resume from, if any.
    pub restored: Option<&'a Restored>,
    /// First id for new checkpoints.
    pub next_id: u64,
    /// Shared with the progress display.
    pub stats: Arc<CheckpointStats>,
}

/// A job whose tasks are running.
pub struct RunningJob {
    job: String,
    threads: Vec<JoinHandle<()>>,
    /// Every task thread holds a sender and drops it on exit; disconnection
    /// means all have exited. Nothing is ever sent.
    done: Receiver<()>,
    stats: Vec<NodeStats>,
    failure: Arc<FailureSlot>,
    /// Set when a stop-with-savepoint ended the job.
    stopped_with: Arc<Mutex<Option<SavepointInfo>>>,
    started: Instant,
}

impl RunningJob {
    /// When the job's first failure happened, if it failed.
    pub fn failed_at(&self) -> Option<Instant> {
        self.failure.failed_at.get().copied()
    }

    /// Stops every task as failed with `cause` (e.g. [`Error::Cancelled`]).
    pub fn fail(&self, cause: Error) {
        self.failure.record(Err(TaskError::Failed(cause)));
    }

    /// Per-node counters, live.
    pub fn stats(&self) -> &[NodeStats] {
        &self.stats
    }

    /// Waits up to `timeout` for every task to exit; true if they have.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        matches!(self.done.recv_timeout(timeout), Err(crossbeam_channel::RecvTimeoutError::Disconnected))
    }

    /// Waits for every task.
    ///
    /// # Errors
    /// The root cause if any task failed.
    pub fn wait(self) -> Result<RunSummary, Error> {
        for t in self.threads {
            if t.join().is_err() {
                self.failure.record(Err(TaskError::Failed(Error::Internal("a task thread panicked".into()))));
            }
        }
        let first = self.failure.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(e) = first {
            return Err(e);
        }
        if self.failure.any_cancelled.load(Ordering::Relaxed) {
            return Err(Error::Internal("a task stopped without a recorded cause".into()));
        }
        let stopped_with = self.stopped_with.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(RunSummary {
            job: self.job,
            elapsed: self.started.elapsed(),
            nodes: self.stats,
            restored_from: None,
            checkpoints: None,
            stopped_with,
        })
    }
}

/// Loads the `.wasm` of every operator node (index-aligned with `plan.nodes`).
///
/// # Errors
/// [`Error::InvalidModule`] for the first module that cannot be used.
pub fn load_modules(plan: &JobPlan, engine: &crate::wasm::WasmEngine) -> Result<Vec<Option<OperatorModule>>, Error> {
    let limits = crate::wasm::Limits { memory: plan.limits.memory, call_timeout: plan.limits.call_timeout };
    plan.nodes
        .iter()
        .map(|node| match &node.kind {
            NodeKind::Operator { module, .. } => OperatorModule::load(engine, &node.id, module, limits).map(Some),
            _ => Ok(None),
        })
        .collect()
}

/// What the checkpoint coordinator needs to know about each node of `plan`.
pub fn node_infos(plan: &JobPlan, modules: &[Option<OperatorModule>]) -> Vec<NodeInfo> {
    plan.nodes
        .iter()
        .zip(modules)
        .map(|(node, module)| NodeInfo {
            id: node.id.clone(),
            kind: node.kind.label(),
            parallelism: node.parallelism,
            module: module.as_ref().map(|m| {
                let d = m.descriptor();
                ModuleEntry { name: d.name.clone(), version: d.version.clone(), state_version: d.state_version }
            }),
        })
        .collect()
}

/// Starts every task of `plan`, and the checkpoint coordinator if
/// `checkpoints` is given (restoring every task from its `restored`
/// checkpoint, if any). `modules` comes from [`load_modules`]; `attempt`
/// counts restarts (guests see it in their instance info).
///
/// # Errors
/// When a source or sink cannot be opened, or restored state does not fit
/// (nothing is left running then).
pub fn start(
    plan: &JobPlan,
    modules: &[Option<OperatorModule>],
    checkpoints: Option<CheckpointSetup<'_>>,
    attempt: u32,
) -> Result<RunningJob, Error> {
    let stats: Vec<NodeStats> = plan
        .nodes
        .iter()
        .map(|n| NodeStats { id: n.id.clone(), parallelism: n.parallelism, metrics: Arc::default() })
        .collect();
    let (mut senders, mut receivers) = wire(plan);
    let failure = Arc::new(FailureSlot::default());
    let restored = checkpoints.as_ref().and_then(|c| c.restored);
    // Coordinator wiring: one control channel per subtask, one event channel for all.
    let (events_tx, events_rx) = crossbeam_channel::unbounded::<TaskEvent>();
    let mut controls: Vec<Vec<Sender<Control>>> = Vec::with_capacity(plan.nodes.len());
    let mut spawns: Vec<(String, Task)> = Vec::new();
    for (n, node) in plan.nodes.iter().enumerate() {
        let mut node_controls = Vec::with_capacity(node.parallelism as usize);
        for s in 0..node.parallelism {
            let edges = std::mem::take(&mut senders[n][s as usize]);
            let out = Outputs::new(edges, plan.batch_size, stats[n].metrics.clone());
            let link = checkpoints.as_ref().map(|_| {
                let (tx, rx) = crossbeam_channel::unbounded();
                node_controls.push(tx);
                task::Link { node: n, subtask: s, events: events_tx.clone(), control: rx }
            });
            let inputs =
                Inputs::new(std::mem::take(&mut receivers[n][s as usize]), link.as_ref().map(|l| l.control.clone()));
            let metrics = stats[n].metrics.clone();
            let state = restored.and_then(|r| r.state(&node.id, s)).cloned();
            let misfit = |what: &str| {
                Error::Corrupt(format!(
                    "checkpoint {} holds {what} state for `{}` subtask {s}, which does not fit its kind",
                    restored.map_or(0, Restored::id),
                    node.id
                ))
            };
            let info = InstanceInfo {
                subtask: s,
                parallelism: node.parallelism,
                max_parallelism: plan.max_parallelism,
                attempt,
            };
            let task: Task = match &node.kind {
                NodeKind::FileSource { .. } | NodeKind::Generator(_) => {
                    let mut source: Box<dyn Source> = match &node.kind {
                        NodeKind::FileSource { path, rate } => {
                            Box::new(FileSource::new(path, s, node.parallelism, *rate)?)
                        }
                        NodeKind::Generator(spec) => Box::new(Generator::new(spec, s, node.parallelism)),
                        _ => unreachable!("matched as a source above"),
                    };
                    let cancel = failure.clone();
                    let batch_size = plan.batch_size;
                    match state {
                        Some(TaskState::Source(SourcePosition::Finished)) => {
                            Box::new(move || task::run_finished_source(out, link))
                        }
                        Some(TaskState::Source(position)) => {
                            source.restore(position)?;
                            Box::new(move || task::run_source(source, out, batch_size, &cancel.cancel, link))
                        }
                        Some(other) => return Err(misfit(other.kind())),
                        None => Box::new(move || task::run_source(source, out, batch_size, &cancel.cancel, link)),
                    }
                }
                NodeKind::Operator { config_json, .. } => {
                    let module = modules[n].clone().expect("operator nodes have modules");
                    let config = config_json.clone();
                    let restored = match state {
                        Some(TaskState::Operator(op)) => Some(op),
                        Some(other) => return Err(misfit(other.kind())),
                        None => None,
                    };
                    Box::new(move || task::run_operator(&module, &info, &config, inputs, out, &metrics, link, restored))
                }
                NodeKind::FileSink { .. } | NodeKind::StdoutSink | NodeKind::DiscardSink => {
                    let sink: Box<dyn Sink> = match &node.kind {
                        NodeKind::FileSink { path } => Box::new(FileSink::new(path, s)?),
                        NodeKind::StdoutSink => Box::new(StdoutSink::default()),
                        _ => Box::new(DiscardSink),
                    };
                    let restored = match state {
                        Some(TaskState::Sink(sink_state)) => Some(sink_state),
                        Some(other) => return Err(misfit(other.kind())),
                        None => None,
                    };
                    Box::new(move || task::run_sink(sink, inputs, &metrics, link, restored))
                }
            };
            spawns.push((format!("{}#{s}", node.id), task));
        }
        controls.push(node_controls);
    }
    drop(events_tx);
    let stopped_with = Arc::new(Mutex::new(None));
    if let Some(setup) = checkpoints {
        let cancel = failure.clone();
        let stop_slot = stopped_with.clone();
        let coordinator = Coordinator {
            spec: setup.spec,
            periodic: setup.periodic,
            requests: setup.requests,
            storage: setup.storage,
            job: plan.name.clone(),
            max_parallelism: plan.max_parallelism,
            nodes: node_infos(plan, modules),
            events: events_rx,
            controls,
            next_id: setup.next_id,
            cancelled: Box::new(move || cancel.cancel.load(Ordering::Relaxed)),
            stats: setup.stats,
        };
        spawns.push((
            "checkpoints".into(),
            Box::new(move || match coordinator.run() {
                Ok(Outcome::Finished) => Ok(()),
                Ok(Outcome::StoppedWithSavepoint(info)) => {
                    *stop_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
                    Ok(())
                }
                Ok(Outcome::Stopped) => Err(TaskError::Cancelled),
                Err(e) => Err(TaskError::Failed(e)),
            }),
        ));
    }
    let started = Instant::now();
    let (done_tx, done) = bounded::<()>(0);
    let mut threads = Vec::with_capacity(spawns.len());
    for (name, task) in spawns {
        let slot = failure.clone();
        let done_tx = done_tx.clone();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            slot.record(task());
            drop(done_tx);
        });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                failure.record(Err(TaskError::Failed(Error::io("cannot start a task thread", e))));
                break;
            }
        }
    }
    Ok(RunningJob { job: plan.name.clone(), threads, done, stats, failure, stopped_with, started })
}

/// The body of one subtask's thread.
type Task = Box<dyn FnOnce() -> Result<(), TaskError> + Send>;

type EdgeOutputs = Vec<Vec<Vec<EdgeOutput>>>;
type InputChannels = Vec<Vec<Vec<Receiver<Message>>>>;

/// Creates every channel: `[node][subtask]` → outgoing edges, incoming receivers.
fn wire(plan: &JobPlan) -> (EdgeOutputs, InputChannels) {
    let mut outs: EdgeOutputs = plan.nodes.iter().map(|n| (0..n.parallelism).map(|_| Vec::new()).collect()).collect();
    let mut ins: InputChannels = plan.nodes.iter().map(|n| (0..n.parallelism).map(|_| Vec::new()).collect()).collect();
    for (n, node) in plan.nodes.iter().enumerate() {
        for edge in &node.inputs {
            let up = plan.nodes[edge.from].parallelism;
            for u in 0..up {
                let targets: Vec<Sender<Message>> = if edge.partition == Partition::Forward {
                    let (tx, rx) = bounded(CHANNEL_CAPACITY);
                    ins[n][u as usize].push(rx);
                    vec![tx]
                } else {
                    (0..node.parallelism)
                        .map(|d| {
                            let (tx, rx) = bounded(CHANNEL_CAPACITY);
                            ins[n][d as usize].push(rx);
                            tx
                        })
                        .collect()
                };
                outs[edge.from][u as usize].push(EdgeOutput::new(edge.partition, targets, plan.max_parallelism));
            }
        }
    }
    (outs, ins)
}
