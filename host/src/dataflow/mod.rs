//! The dataflow: one thread per subtask of each task (a source, or a chain
//! of fused operators and sinks), bounded channels between them, records
//! routed by each edge's partitioning. [`start`] wires a
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
pub mod watermarks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use self::inputs::Inputs;
use self::message::Message;
use self::metrics::{Meter, NodeMetrics, TaskTime};
use self::output::{CHANNEL_CAPACITY, EdgeOutput, Outputs};
use self::task::MemberKind;
use self::watermarks::Generator as Watermarks;
use crate::Error;
use crate::checkpoint::coordinator::{
    CheckpointStats, Control, Coordinator, NodeInfo, Outcome, SavepointInfo, SavepointRequest, TaskEvent,
};
use crate::checkpoint::manifest::ModuleEntry;
use crate::checkpoint::restore::Restored;
use crate::checkpoint::state::{SourcePosition, TaskState};
use crate::checkpoint::storage::Storage;
use crate::clock::Clock;
use crate::connectors::Source;
use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::FileSource;
use crate::connectors::generator::Generator;
use crate::connectors::kafka::sink::KafkaSink;
use crate::connectors::kafka::source::KafkaSource;
use crate::connectors::stdout_sink::{DiscardSink, StdoutSink};
use crate::error::{GuestError, GuestFailure};
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
        match e.cause {
            // Interrupted because the job is stopping: a consequence, not a cause.
            GuestFailure::Interrupted => Self::Cancelled,
            _ => Self::Failed(e.into()),
        }
    }
}

/// The first failure of a job, and the flag that stops its sources.
#[derive(Default)]
struct FailureSlot {
    /// When the root cause was recorded.
    failed_at: OnceLock<Instant>,
    /// Raised by the first failure; polled by sources, and interrupts
    /// running guest calls.
    cancel: Arc<AtomicBool>,
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
    /// Each subtask's idle and backpressured time.
    pub times: Vec<Arc<TaskTime>>,
    /// It is a source (its output is the job's intake).
    pub is_source: bool,
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
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
    /// What the store held when the attempt started.
    pub facts: crate::checkpoint::protocol::Facts,
    /// This run's ownership of the store (none for `memory://`).
    pub lease: Option<Arc<crate::checkpoint::lease::Lease>>,
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
            NodeKind::Operator { module, config_json } => {
                let loaded = OperatorModule::load(engine, &node.id, module, limits)?;
                if crate::job::plan::pre_aggregate_role(config_json).is_some() {
                    can_pre_aggregate(&node.id, module, &loaded.descriptor().sdk_version)?;
                }
                Ok(Some(loaded))
            }
            _ => Ok(None),
        })
        .collect()
}

/// The weir-sdk release whose runtime knows pre-aggregation roles.
const PRE_AGGREGATE_SDK: (u32, u32) = (0, 3);

/// Refuses `pre_aggregate` for an operator built with an older weir-sdk:
/// its runtime would not see the role and would run every record through
/// `process` twice (once upstream, once keyed), counting each twice.
fn can_pre_aggregate(node: &str, path: &std::path::Path, sdk: &str) -> Result<(), Error> {
    let mut parts = sdk.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= PRE_AGGREGATE_SDK {
        return Ok(());
    }
    let operator = node.strip_suffix(crate::job::plan::LOCAL_SUFFIX).unwrap_or(node);
    Err(Error::InvalidModule {
        operator: operator.into(),
        path: path.into(),
        reason: format!(
            "was built with weir-sdk {sdk}, which cannot pre-aggregate (weir-sdk {}.{} can); rebuild it \
             (`weir build`), or remove pre_aggregate from [operators.{operator}]",
            PRE_AGGREGATE_SDK.0, PRE_AGGREGATE_SDK.1
        ),
    })
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

/// Starts every task of `plan` (one thread per subtask of each of
/// [`JobPlan::chains`]) and the checkpoint coordinator, restoring every task
/// from `checkpoints.restored`, if any. `modules` comes from
/// [`load_modules`]; `attempt` counts restarts (guests see it in their
/// instance info).
///
/// # Errors
/// When a source or sink cannot be opened, or restored state does not fit
/// (nothing is left running then).
pub fn start(
    plan: &JobPlan,
    modules: &[Option<OperatorModule>],
    checkpoints: CheckpointSetup<'_>,
    attempt: u32,
) -> Result<RunningJob, Error> {
    let stats: Vec<NodeStats> = plan
        .nodes
        .iter()
        .map(|n| NodeStats {
            id: n.id.clone(),
            parallelism: n.parallelism,
            metrics: Arc::default(),
            times: (0..n.parallelism).map(|_| Arc::default()).collect(),
            is_source: n.kind.label() == "source",
            kind: n.kind.label(),
        })
        .collect();
    let chains = plan.chains();
    let (mut senders, mut receivers) = wire(plan, &chains);
    let clock = Clock::from_env();
    let failure = Arc::new(FailureSlot::default());
    // Coordinator wiring: one control channel per task (shared by the nodes
    // chained in it), one event channel for all.
    let (events_tx, events_rx) = crossbeam_channel::unbounded::<TaskEvent>();
    let mut controls: Vec<Vec<Option<Sender<Control>>>> =
        plan.nodes.iter().map(|n| vec![None; n.parallelism as usize]).collect();
    let mut spawns: Vec<(String, Task)> = Vec::new();
    for chain in &chains {
        let (head, tail) = (chain[0], chain[chain.len() - 1]);
        let node = &plan.nodes[head];
        for s in 0..node.parallelism {
            let (control_tx, control) = crossbeam_channel::unbounded();
            for &n in chain {
                controls[n][s as usize] = Some(control_tx.clone());
            }
            let link = |n: usize| task::Link { node: n, subtask: s, events: events_tx.clone() };
            let mut out = Outputs::new(
                std::mem::take(&mut senders[tail][s as usize]),
                plan.batch_size,
                usize::try_from(plan.limits.max_record).unwrap_or(usize::MAX),
                stats[tail].metrics.clone(),
            );
            let meter = Meter::new(chain.iter().map(|&n| stats[n].times[s as usize].clone()).collect());
            out.set_meter(&meter);
            let task: Task = match &node.kind {
                NodeKind::FileSource { .. } | NodeKind::Generator(_) | NodeKind::KafkaSource(_) => {
                    let mut source: Box<dyn Source> = match &node.kind {
                        NodeKind::FileSource { path, rate } => {
                            Box::new(FileSource::new(path, s, node.parallelism, *rate)?)
                        }
                        NodeKind::Generator(spec) => Box::new(Generator::new(spec, s, node.parallelism)),
                        NodeKind::KafkaSource(cfg) => Box::new(KafkaSource::new(cfg.clone(), s, node.parallelism)?),
                        _ => unreachable!("matched as a source above"),
                    };
                    let (cancel, batch_size, link) = (failure.clone(), plan.batch_size, link(head));
                    // A source's position is restored here, before its thread starts.
                    let opened = stats[head].metrics.clone();
                    let extract = node.extract.clone();
                    let mut time = node.watermark.map(|w| task::SourceTime {
                        watermarks: Watermarks::new(
                            i64::try_from(w.max_out_of_orderness.as_millis()).unwrap_or(i64::MAX),
                            w.idle_timeout.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
                        )
                        .every(w.interval.map_or(200, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))),
                        clock: clock.clone(),
                    });
                    let task: Task = match restored_state(&checkpoints, plan, head, s) {
                        Some(TaskState::Source(SourcePosition::Finished)) => {
                            Box::new(move || task::run_finished_source(out, &link))
                        }
                        Some(TaskState::Source(position)) => {
                            let (position, max_timestamp) = position.split_event_time();
                            if let (Some(time), Some(max_timestamp)) = (&mut time, max_timestamp) {
                                time.watermarks.restore(max_timestamp);
                            }
                            source.restore(position)?;
                            Box::new(move || {
                                task::run_source(
                                    source,
                                    out,
                                    batch_size,
                                    &cancel.cancel,
                                    &link,
                                    &control,
                                    extract,
                                    time,
                                )
                            })
                        }
                        Some(other) => return Err(misfit(&checkpoints, plan, head, s, other)),
                        None => Box::new(move || {
                            task::run_source(source, out, batch_size, &cancel.cancel, &link, &control, extract, time)
                        }),
                    };
                    opened.mark_opened();
                    task
                }
                _ => {
                    let members = chain
                        .iter()
                        .map(|&n| member(plan, modules, &checkpoints, &stats[n], n, s, attempt, link(n)))
                        .collect::<Result<Vec<_>, Error>>()?;
                    let mut inputs = Inputs::new(std::mem::take(&mut receivers[head][s as usize]), control);
                    inputs.set_meter(meter.clone());
                    let stop = failure.cancel.clone();
                    let clock = clock.clone();
                    Box::new(move || task::run_chain(members, inputs, out, stop, clock))
                }
            };
            let more = if chain.len() > 1 { format!("+{}", chain.len() - 1) } else { String::new() };
            let ended = meter.clone();
            let task: Task = Box::new(move || {
                let result = task();
                ended.end();
                result
            });
            spawns.push((format!("{}{more}#{s}", node.id), task));
        }
    }
    drop(events_tx);
    let controls = controls
        .into_iter()
        .map(|node| node.into_iter().map(|c| c.expect("every node-subtask is in one task")).collect())
        .collect();
    let stopped_with = Arc::new(Mutex::new(None));
    let cancel = failure.clone();
    let stop_slot = stopped_with.clone();
    let coordinator = Coordinator {
        spec: checkpoints.spec,
        periodic: checkpoints.periodic,
        requests: checkpoints.requests,
        storage: checkpoints.storage,
        job: plan.name.clone(),
        max_parallelism: plan.max_parallelism,
        nodes: node_infos(plan, modules),
        events: events_rx,
        controls,
        facts: checkpoints.facts,
        lease: checkpoints.lease,
        cancelled: Box::new(move || cancel.cancel.load(Ordering::Relaxed)),
        stats: checkpoints.stats,
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

/// The restored state of node `n`'s subtask `s`, if any.
fn restored_state(checkpoints: &CheckpointSetup<'_>, plan: &JobPlan, n: usize, s: u32) -> Option<TaskState> {
    checkpoints.restored.and_then(|r| r.state(&plan.nodes[n].id, s)).cloned()
}

/// Restored state of the wrong kind for its node.
fn misfit(checkpoints: &CheckpointSetup<'_>, plan: &JobPlan, n: usize, s: u32, found: TaskState) -> Error {
    Error::Corrupt(format!(
        "checkpoint {} holds {} state for `{}` subtask {s}, which does not fit its kind",
        checkpoints.restored.map_or(0, Restored::id),
        found.kind(),
        plan.nodes[n].id
    ))
}

/// Chain member for subtask `s` of operator or sink node `n`.
#[allow(clippy::too_many_arguments)]
fn member(
    plan: &JobPlan,
    modules: &[Option<OperatorModule>],
    checkpoints: &CheckpointSetup<'_>,
    stats: &NodeStats,
    n: usize,
    s: u32,
    attempt: u32,
    link: task::Link,
) -> Result<task::Member, Error> {
    let node = &plan.nodes[n];
    let state = restored_state(checkpoints, plan, n, s);
    let kind = match &node.kind {
        NodeKind::Operator { config_json, .. } => MemberKind::Operator {
            module: modules[n].clone().expect("operator nodes have modules"),
            info: InstanceInfo {
                subtask: s,
                parallelism: node.parallelism,
                max_parallelism: plan.max_parallelism,
                attempt,
            },
            config: config_json.clone(),
            restored: match state {
                Some(TaskState::Operator(op)) => Some(op),
                Some(other) => return Err(misfit(checkpoints, plan, n, s, other)),
                None => None,
            },
        },
        NodeKind::FileSink { .. } | NodeKind::StdoutSink | NodeKind::DiscardSink | NodeKind::KafkaSink(_) => {
            MemberKind::Sink {
                sink: match &node.kind {
                    NodeKind::FileSink { path } => Box::new(FileSink::new(path, s).map_err(|e| match e {
                        Error::Io { context, source } => {
                            Error::Io { context: format!("sink `{}`: {context}", node.id), source }
                        }
                        Error::Conflict(msg) => Error::Conflict(format!("sink `{}`: {msg}", node.id)),
                        other => other,
                    })?),
                    NodeKind::StdoutSink => Box::new(StdoutSink::default()),
                    NodeKind::KafkaSink(cfg) => Box::new(KafkaSink::new(cfg.clone(), s)),
                    _ => Box::new(DiscardSink),
                },
                restored: match state {
                    Some(sink @ (TaskState::Sink(_) | TaskState::KafkaSink(_))) => Some(sink),
                    Some(other) => return Err(misfit(checkpoints, plan, n, s, other)),
                    None => None,
                },
            }
        }
        NodeKind::FileSource { .. } | NodeKind::Generator(_) | NodeKind::KafkaSource(_) => {
            unreachable!("sources head their own task (JobPlan::chains)")
        }
    };
    Ok(task::Member { link, metrics: stats.metrics.clone(), kind })
}

/// The body of one subtask's thread.
type Task = Box<dyn FnOnce() -> Result<(), TaskError> + Send>;

type EdgeOutputs = Vec<Vec<Vec<EdgeOutput>>>;
type InputChannels = Vec<Vec<Vec<Receiver<Message>>>>;

/// Creates every channel: `[node][subtask]` → outgoing edges, incoming
/// receivers. Edges inside a chain need none.
fn wire(plan: &JobPlan, chains: &[Vec<usize>]) -> (EdgeOutputs, InputChannels) {
    let mut outs: EdgeOutputs = plan.nodes.iter().map(|n| (0..n.parallelism).map(|_| Vec::new()).collect()).collect();
    let mut ins: InputChannels = plan.nodes.iter().map(|n| (0..n.parallelism).map(|_| Vec::new()).collect()).collect();
    let chained: std::collections::HashSet<(usize, usize)> =
        chains.iter().flat_map(|c| c.windows(2).map(|w| (w[0], w[1]))).collect();
    for (n, node) in plan.nodes.iter().enumerate() {
        for edge in node.inputs.iter().filter(|e| !chained.contains(&(e.from, n))) {
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
                let mut out = EdgeOutput::new(edge.partition, targets, plan.max_parallelism);
                if let Some(output) = &edge.output {
                    out = out.side_output(output);
                }
                outs[edge.from][u as usize].push(out);
            }
        }
    }
    (outs, ins)
}
