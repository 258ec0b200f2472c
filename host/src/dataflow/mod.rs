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
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use self::inputs::Inputs;
use self::message::Message;
use self::metrics::NodeMetrics;
use self::output::{CHANNEL_CAPACITY, EdgeOutput, Outputs};
use crate::Error;
use crate::connectors::file_sink::FileSink;
use crate::connectors::file_source::FileSource;
use crate::connectors::generator::Generator;
use crate::connectors::stdout_sink::StdoutSink;
use crate::connectors::{Sink, Source};
use crate::error::GuestError;
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
    /// Per node counters, in plan order.
    pub nodes: Vec<NodeStats>,
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
    started: Instant,
}

impl RunningJob {
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
        Ok(RunSummary { job: self.job, elapsed: self.started.elapsed(), nodes: self.stats })
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

/// Starts every task of `plan`. `modules` comes from [`load_modules`].
///
/// # Errors
/// When a source or sink cannot be opened (nothing is left running then).
pub fn start(plan: &JobPlan, modules: &[Option<OperatorModule>]) -> Result<RunningJob, Error> {
    let stats: Vec<NodeStats> = plan
        .nodes
        .iter()
        .map(|n| NodeStats { id: n.id.clone(), parallelism: n.parallelism, metrics: Arc::default() })
        .collect();
    let (mut senders, mut receivers) = wire(plan);
    let failure = Arc::new(FailureSlot::default());
    let mut spawns: Vec<(String, Task)> = Vec::new();
    for (n, node) in plan.nodes.iter().enumerate() {
        for s in 0..node.parallelism {
            let edges = std::mem::take(&mut senders[n][s as usize]);
            let out = Outputs::new(edges, plan.batch_size, stats[n].metrics.clone());
            let inputs = Inputs::new(std::mem::take(&mut receivers[n][s as usize]));
            let metrics = stats[n].metrics.clone();
            let info =
                InstanceInfo { subtask: s, parallelism: node.parallelism, max_parallelism: plan.max_parallelism };
            let task: Task = match &node.kind {
                NodeKind::FileSource { path } => {
                    let source: Box<dyn Source> = Box::new(FileSource::new(path, s, node.parallelism)?);
                    source_task(source, out, plan.batch_size, failure.clone())
                }
                NodeKind::Generator(spec) => {
                    let source: Box<dyn Source> = Box::new(Generator::new(spec, s, node.parallelism));
                    source_task(source, out, plan.batch_size, failure.clone())
                }
                NodeKind::Operator { config_json, .. } => {
                    let module = modules[n].clone().expect("operator nodes have modules");
                    let config = config_json.clone();
                    Box::new(move || task::run_operator(&module, &info, &config, inputs, out, &metrics))
                }
                NodeKind::FileSink { path } => {
                    let sink: Box<dyn Sink> = Box::new(FileSink::new(path, s)?);
                    Box::new(move || task::run_sink(sink, inputs, metrics))
                }
                NodeKind::StdoutSink => {
                    let sink: Box<dyn Sink> = Box::new(StdoutSink::default());
                    Box::new(move || task::run_sink(sink, inputs, metrics))
                }
            };
            spawns.push((format!("{}#{s}", node.id), task));
        }
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
    Ok(RunningJob { job: plan.name.clone(), threads, done, stats, failure, started })
}

fn source_task(source: Box<dyn Source>, out: Outputs, batch_size: usize, failure: Arc<FailureSlot>) -> Task {
    Box::new(move || task::run_source(source, out, batch_size, &failure.cancel))
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
