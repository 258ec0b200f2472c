//! The two task loops — a source's and a chain's — one thread per subtask.
//! Each returns when its input is exhausted (after passing `End` on), when it
//! fails ([`TaskError::Failed`]), or when a neighbour failed ([`TaskError::Cancelled`]).
//!
//! A **chain** is a run of nodes fused into one task (see
//! [`JobPlan::chains`](crate::job::JobPlan::chains)): operators, possibly
//! ending in a sink. Records pass from one member to the next as a call;
//! only the chain's head reads channels and only its tail (if an operator)
//! writes them. A lone operator or sink is a chain of one.
//!
//! Every member has its own [`Link`] to the checkpoint coordinator, which
//! sees the same nodes and subtasks with or without chaining: sources turn
//! a trigger into a position snapshot plus a barrier; a chain snapshots
//! every member, in order, when [`Next::Aligned`] says every input
//! delivered the barrier, then passes the barrier on. The only pause of the
//! record path is that snapshot; uploading happens elsewhere. A member that
//! finishes sends its final state once, so later checkpoints can include it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::TaskError;
use super::inputs::{Inputs, Next};
use super::message::Barrier;
use super::metrics::NodeMetrics;
use super::output::{Blame, Outputs, count_records, main_output};
use super::watermarks::{Advance, Generator as Watermarks};
use crate::GuestError;
use crate::checkpoint::coordinator::{Control, TaskEvent};
use crate::checkpoint::state::{self, OperatorState, SourcePosition, TaskState};
use crate::clock::Clock;
use crate::connectors::extract::Extractor;
use crate::connectors::{Sink, Source, SourceStatus};
use crate::wasm::OperatorModule;
use crate::wasm::instance::{GuestInstance, InstanceInfo};

/// One node-subtask's connection to the checkpoint coordinator.
pub struct Link {
    /// Node index in the plan.
    pub node: usize,
    /// Subtask index.
    pub subtask: u32,
    /// Acks and the final state, to the coordinator.
    pub events: Sender<TaskEvent>,
}

impl Link {
    fn ack(&self, checkpoint: u64, state: &TaskState, alignment: Duration, sync: Duration) {
        let event = TaskEvent::Ack {
            checkpoint,
            node: self.node,
            subtask: self.subtask,
            state: state::encode(state),
            alignment,
            sync,
        };
        // The coordinator outlives every task of a running job; if it is gone
        // the job is being torn down and the data channels will say so.
        let _ = self.events.send(event);
    }

    fn finished(&self, state: &TaskState) {
        let _ = self.events.send(TaskEvent::Finished {
            node: self.node,
            subtask: self.subtask,
            state: state::encode(state),
        });
    }
}

/// Event time at a source: its watermark strategy and the clock that
/// says when it is idle.
pub struct SourceTime {
    /// Watermarks from the records' timestamps.
    pub watermarks: Watermarks,
    /// Processing time, for idleness.
    pub clock: Clock,
}

impl SourceTime {
    fn send(advance: Option<Advance>, out: &mut Outputs) -> Result<(), TaskError> {
        if let Some(Advance::To(w) | Advance::ToThenIdle(w)) = advance {
            out.meter().watermark(w);
        }
        match advance {
            Some(Advance::To(w)) => out.watermark(w)?,
            Some(Advance::Idle) => out.idle()?,
            Some(Advance::ToThenIdle(w)) => {
                out.watermark(w)?;
                out.idle()?;
            }
            None => {}
        }
        Ok(())
    }

    /// Follows the timestamps of the batch just sent, per split: `splits`
    /// and `of_record` are the source's [`Source::splits`]; `kept` maps the
    /// batch's records back to the source's, if an extractor dropped some.
    fn read(
        &mut self,
        batch: &[u8],
        (splits, of_record): (usize, &[u32]),
        kept: Option<&[u32]>,
        out: &mut Outputs,
    ) -> Result<(), TaskError> {
        let records =
            weir_sdk::frame::read(batch).filter_map(Result::ok).filter(|r| r.output.is_none()).enumerate().map(
                |(i, r)| {
                    let at = kept.map_or(Some(i), |k| k.get(i).map(|&j| j as usize));
                    let split = at.and_then(|at| of_record.get(at)).map_or(0, |&s| s as usize);
                    (split, r.timestamp)
                },
            );
        let advance = self.watermarks.read(records, splits, self.clock.now_ms());
        Self::send(advance, out)
    }
}

/// Reads `source` until exhausted (or `cancel` is set), sending batches on;
/// on a trigger from `control`, snapshots its position and emits the barrier.
/// (Its records are counted as the node's output by `out`.) With `time`,
/// watermarks follow the records; at the end of input, event time jumps to
/// the end of time (`i64::MAX`), so every event-time timer fires.
///
/// # Errors
/// When the source fails or downstream is gone.
#[allow(clippy::too_many_arguments, reason = "the parts of one source task, each used once")]
pub fn run_source(
    mut source: Box<dyn Source>,
    mut out: Outputs,
    batch_size: usize,
    cancel: &AtomicBool,
    link: &Link,
    control: &Receiver<Control>,
    mut extract: Option<Extractor>,
    mut time: Option<SourceTime>,
) -> Result<(), TaskError> {
    let mut buf = Vec::with_capacity(batch_size * 64);
    if let Some(time) = &mut time {
        SourceTime::send(time.watermarks.resume(), &mut out)?;
    }
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Cancelled);
        }
        loop {
            match control.try_recv() {
                Ok(Control::Trigger(barrier)) => {
                    let started = Instant::now();
                    let position = match &time {
                        Some(time) => SourcePosition::EventTime {
                            position: Box::new(source.position()),
                            max_timestamp: time.watermarks.max_timestamp(),
                        },
                        None => source.position(),
                    };
                    let state = TaskState::Source(position);
                    source.checkpoint_taken(barrier.id);
                    link.ack(barrier.id, &state, Duration::ZERO, started.elapsed());
                    out.barrier(barrier)?;
                    if barrier.stop {
                        // Stop-with-savepoint: no `End` — the job resumes from here.
                        return Ok(());
                    }
                }
                Ok(Control::Complete { checkpoint, .. }) => source.checkpoint_complete(checkpoint),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        buf.clear();
        let asked = Instant::now();
        let status = source.next_batch(&mut buf, batch_size)?;
        if buf.is_empty() {
            // Nothing to read (a quiet topic, a rate limit): the source was idle.
            out.meter().idle(asked.elapsed());
        }
        if let Some(extract) = &mut extract {
            extract.apply(&buf)?;
        }
        let (batch, kept) = match &extract {
            Some(extract) => (extract.output(), Some(extract.kept())),
            None => (&buf[..], None),
        };
        out.emit(batch, unreachable_blame)?;
        if let Some(time) = &mut time {
            time.read(batch, source.splits(), kept, &mut out)?;
        }
        out.flush()?;
        if status == SourceStatus::Exhausted {
            if let Some(summary) = extract.as_ref().and_then(Extractor::summary) {
                tracing::warn!(
                    "source `{}` (subtask {}) {summary}",
                    extract.as_ref().map_or("", |e| e.node()),
                    link.subtask
                );
            }
            out.watermark(i64::MAX)?;
            out.end()?;
            link.finished(&TaskState::Source(SourcePosition::Finished));
            return Ok(());
        }
    }
}

/// A source whose restored position says it already finished.
///
/// # Errors
/// When downstream is gone.
pub fn run_finished_source(mut out: Outputs, link: &Link) -> Result<(), TaskError> {
    out.end()?;
    link.finished(&TaskState::Source(SourcePosition::Finished));
    Ok(())
}

/// Sources frame their own records, so a framing error there is a host bug.
fn unreachable_blame() -> Blame {
    ("<source>".into(), 0, "next_batch")
}

/// One node of a chain, before it runs.
pub struct Member {
    /// This node-subtask's connection to the coordinator.
    pub link: Link,
    /// The node's counters.
    pub metrics: Arc<NodeMetrics>,
    /// What it is.
    pub kind: MemberKind,
}

/// What a chain member does.
#[allow(clippy::large_enum_variant, reason = "one per chain member, built once per task")]
pub enum MemberKind {
    /// A Wasm operator, instantiated when the chain starts.
    Operator {
        /// The compiled component.
        module: OperatorModule,
        /// Subtask, parallelism, attempt.
        info: InstanceInfo,
        /// The operator's config, as JSON.
        config: String,
        /// State to start from.
        restored: Option<OperatorState>,
    },
    /// A sink: only ever a chain's last member.
    Sink {
        /// The subtask's share of the sink.
        sink: Box<dyn Sink>,
        /// State to start from.
        restored: Option<TaskState>,
    },
}

/// The state of an operator that consumed all its input.
const FINISHED_OPERATOR: TaskState =
    TaskState::Operator(OperatorState { finished: true, guest: None, watermark: None });

/// A member while the chain runs.
struct Stage {
    link: Link,
    metrics: Arc<NodeMetrics>,
    /// Consumed all its input (or restored so): it takes no more records
    /// and its state is final.
    finished: bool,
    work: Work,
    /// The guest call whose output is being routed (for errors).
    call: &'static str,
}

#[allow(clippy::large_enum_variant, reason = "one per chain member; boxing would add a hop per call")]
enum Work {
    Operator { operator: Arc<str>, guest: Option<GuestInstance> },
    Sink(Box<dyn Sink>),
}

/// Runs the chain `members` over `inputs` (the head's), writing the tail's
/// output to `out` (no edges if the tail is a sink); `stop` (the job's
/// cancel flag) interrupts a running guest call. A sink tail seals its
/// output at each barrier, commits on each completion, and after the end
/// waits for the checkpoint holding its final state before committing the
/// rest; on failure it discards unsealed output.
///
/// # Errors
/// When a member fails (a guest, the sink), or a neighbour did.
pub fn run_chain(
    members: Vec<Member>,
    mut inputs: Inputs,
    out: Outputs,
    stop: Arc<AtomicBool>,
    clock: Clock,
) -> Result<(), TaskError> {
    if members.iter().any(|m| matches!(m.kind, MemberKind::Operator { .. })) {
        inputs.tick_every(PROCESSING_TIME_TICK);
    }
    let mut chain = Chain {
        stages: Vec::with_capacity(members.len()),
        out,
        clock,
        restored_watermark: None,
        pre_aggregates: false,
    };
    let result =
        chain.open(members, &stop).and_then(|()| chain.resume(&mut inputs)).and_then(|()| chain.run(&mut inputs));
    if result.is_err() {
        for stage in &mut chain.stages {
            if let Work::Sink(sink) = &mut stage.work {
                sink.abort();
            }
        }
    }
    result
}

/// How often operators hear processing time (`on-processing-time`).
pub const PROCESSING_TIME_TICK: Duration = Duration::from_millis(100);

struct Chain {
    stages: Vec<Stage>,
    out: Outputs,
    clock: Clock,
    /// The event time the members' restored state was at.
    restored_watermark: Option<i64>,
    /// A member is the local instance of a pre-aggregated operator: it
    /// holds partials between batches, and sends them on when handed an
    /// empty batch (which every other operator answers with nothing).
    pre_aggregates: bool,
}

impl Chain {
    /// Instantiates and restores every member, head first.
    fn open(&mut self, members: Vec<Member>, stop: &Arc<AtomicBool>) -> Result<(), TaskError> {
        for Member { link, metrics, kind } in members {
            let (finished, work) = match kind {
                MemberKind::Operator { module, info, config, restored } => {
                    let finished = restored.as_ref().is_some_and(|r| r.finished);
                    let guest = if finished {
                        // It consumed all its input before the checkpoint; its output is
                        // downstream's state already. Running `finish` again would repeat it.
                        None
                    } else {
                        let at = self.stages.len();
                        let mut guest = match self.out.meter().cell(at) {
                            Some(cell) => module.instantiate_metered(info.subtask, cell.guest_memory.clone())?,
                            None => module.instantiate(info.subtask)?,
                        };
                        guest.interrupt_on(stop.clone());
                        guest.set_now(self.clock.now_ms());
                        guest.init(&info, &config, restored.as_ref().and_then(|r| r.guest.as_ref()))?;
                        self.pre_aggregates |=
                            crate::job::plan::pre_aggregate_role(&config).as_deref() == Some("local");
                        Some(guest)
                    };
                    if let Some(w) = restored.as_ref().and_then(|r| r.watermark) {
                        self.restored_watermark = Some(self.restored_watermark.map_or(w, |m| m.max(w)));
                    }
                    (finished, Work::Operator { operator: module.operator.clone(), guest })
                }
                MemberKind::Sink { mut sink, restored } => {
                    let finished = match restored {
                        Some(state) => {
                            sink.restore(&state)?;
                            state.sink_finished().unwrap_or(false)
                        }
                        None => {
                            sink.clean_start()?;
                            false
                        }
                    };
                    (finished, Work::Sink(sink))
                }
            };
            metrics.mark_opened();
            self.stages.push(Stage { link, metrics, finished, work, call: "process" });
        }
        Ok(())
    }

    /// Event time resumes where the checkpoint left it, before any record:
    /// the task's watermark cannot fall behind it, and the operators hear
    /// it first — a record that was late before a failure is late after it.
    fn resume(&mut self, inputs: &mut Inputs) -> Result<(), TaskError> {
        let Some(watermark) = self.restored_watermark else { return Ok(()) };
        inputs.resume_at(watermark);
        self.fire("on-watermark", |g| g.on_watermark(watermark))
    }

    fn run(&mut self, inputs: &mut Inputs) -> Result<(), TaskError> {
        loop {
            let out = &mut self.out;
            match inputs.next(|| out.flush())? {
                Next::Batch { batch, .. } => {
                    self.set_now();
                    self.push(0, batch.bytes, batch.records)?;
                }
                Next::Watermark(watermark) => {
                    self.out.meter().watermark(watermark);
                    self.fire("on-watermark", |g| g.on_watermark(watermark))?;
                    if self.sink().is_none() {
                        self.out.watermark(watermark)?;
                    }
                }
                Next::Idle => {
                    // Partials go ahead of the idle marker, as their records would have.
                    self.send_partials()?;
                    if self.sink().is_none() {
                        self.out.idle()?;
                    }
                }
                Next::Tick => {
                    let now = self.clock.now_ms();
                    self.fire("on-processing-time", |g| g.on_processing_time(now))?;
                }
                Next::Aligned { checkpoint, stop, alignment } => {
                    // Partials held upstream of the barrier go before it: the
                    // local instance is then empty, and has no state to save.
                    self.send_partials()?;
                    self.snapshot(checkpoint, alignment, inputs.watermark())?;
                    if self.sink().is_some() {
                        if stop {
                            return self.wait_for_savepoint(inputs, checkpoint);
                        }
                    } else {
                        self.out.barrier(Barrier { id: checkpoint, stop })?;
                        if stop {
                            // Stop-with-savepoint: no `finish` and no `End`; the job resumes from here.
                            return Ok(());
                        }
                    }
                }
                Next::Control(Control::Complete { checkpoint, node, .. }) => self.complete(checkpoint, node)?,
                Next::Control(Control::Trigger(_)) => {}
                Next::AllEnded => return self.finish(inputs),
            }
        }
    }

    /// Feeds `bytes` (`records` records) to stage `at`, and what it produces
    /// to the stages after it.
    fn push(&mut self, mut at: usize, mut bytes: Vec<u8>, mut records: usize) -> Result<(), TaskError> {
        let last = self.stages.len() - 1;
        loop {
            let stage = &mut self.stages[at];
            if stage.finished {
                // Only after a restore into a changed graph: its input was consumed before.
                return Ok(());
            }
            stage.metrics.add_in(records as u64);
            if let Some(cell) = self.out.meter().cell(at) {
                cell.add_in(records as u64);
            }
            let produced = match &mut stage.work {
                Work::Sink(sink) => return Ok(sink.write(&bytes)?),
                Work::Operator { guest, .. } => {
                    let started = Instant::now();
                    let produced = guest.as_mut().expect("running operators have a guest").process(&bytes)?;
                    if let Some(cell) = self.out.meter().cell(at) {
                        cell.call(started.elapsed());
                    }
                    produced
                }
            };
            if at == last {
                return self.emit(at, &produced);
            }
            (bytes, records) = self.count(at, produced)?;
            if records == 0 {
                return Ok(());
            }
            at += 1;
        }
    }

    /// Has a pre-aggregation's local instance in the chain send the
    /// partials it holds down the chain (an empty batch asks for them).
    fn send_partials(&mut self) -> Result<(), TaskError> {
        if self.pre_aggregates { self.fire("process", |g| g.process(&[])) } else { Ok(()) }
    }

    /// Processing time for the guests' `now()`, read once per batch.
    fn set_now(&mut self) {
        let now = self.clock.now_ms();
        for stage in &mut self.stages {
            if let Work::Operator { guest: Some(guest), .. } = &mut stage.work {
                guest.set_now(now);
            }
        }
    }

    /// Calls `call` on every running operator, head first, each one's
    /// output flowing into the members after it before they are called.
    fn fire(
        &mut self,
        name: &'static str,
        call: impl Fn(&mut GuestInstance) -> Result<Vec<u8>, GuestError>,
    ) -> Result<(), TaskError> {
        self.set_now();
        let last = self.stages.len() - 1;
        for at in 0..self.stages.len() {
            let stage = &mut self.stages[at];
            let Work::Operator { guest: Some(guest), .. } = &mut stage.work else { continue };
            if stage.finished {
                continue;
            }
            let produced = call(guest)?;
            if produced.is_empty() {
                continue;
            }
            let previous = std::mem::replace(&mut stage.call, name);
            let routed =
                if at == last {
                    self.emit(at, &produced)
                } else {
                    self.count(at, produced).and_then(|(bytes, records)| {
                        if records == 0 { Ok(()) } else { self.push(at + 1, bytes, records) }
                    })
                };
            self.stages[at].call = previous;
            routed?;
        }
        Ok(())
    }

    /// Routes a tail operator's output downstream.
    fn emit(&mut self, at: usize, produced: &[u8]) -> Result<(), TaskError> {
        let stage = &self.stages[at];
        self.out.emit(produced, || stage.blame())
    }

    /// Checks and counts a chained operator's output (what a channel hop
    /// would check); returns its main output for the next member.
    fn count(&self, at: usize, produced: Vec<u8>) -> Result<(Vec<u8>, usize), TaskError> {
        let stage = &self.stages[at];
        let (records, side) = count_records(&produced, self.out.max_record(), || stage.blame())?;
        stage.metrics.add_out(records as u64);
        if side {
            return Ok(main_output(&produced));
        }
        Ok((produced, records))
    }

    /// Snapshots every member for `checkpoint`, head first.
    fn snapshot(&mut self, checkpoint: u64, alignment: Duration, watermark: i64) -> Result<(), TaskError> {
        let watermark = (watermark != i64::MIN).then_some(watermark);
        for (i, stage) in self.stages.iter_mut().enumerate() {
            let started = Instant::now();
            let state = match &mut stage.work {
                Work::Operator { guest: Some(guest), .. } if !stage.finished => {
                    let guest = Some(guest.snapshot(checkpoint)?);
                    TaskState::Operator(OperatorState { finished: false, guest, watermark })
                }
                Work::Operator { .. } => FINISHED_OPERATOR,
                Work::Sink(sink) => sink.pre_commit(checkpoint, stage.finished)?,
            };
            // Only the head waits for barriers; the rest get them at once.
            let alignment = if i == 0 { alignment } else { Duration::ZERO };
            stage.link.ack(checkpoint, &state, alignment, started.elapsed());
        }
        Ok(())
    }

    /// Checkpoint `checkpoint` is complete: tell member `node`.
    fn complete(&mut self, checkpoint: u64, node: usize) -> Result<(), TaskError> {
        let Some(stage) = self.stages.iter_mut().find(|s| s.link.node == node) else { return Ok(()) };
        match &mut stage.work {
            Work::Operator { guest: Some(guest), .. } if !stage.finished => guest.checkpoint_complete(checkpoint)?,
            Work::Operator { .. } => {}
            Work::Sink(sink) => sink.commit(checkpoint)?,
        }
        Ok(())
    }

    /// Every input ended: finish each member in order (its last output
    /// flowing into the next), end the outputs, report final states; a sink
    /// tail then commits once the checkpoint holding its final state completes.
    fn finish(&mut self, inputs: &mut Inputs) -> Result<(), TaskError> {
        self.set_now();
        let last = self.stages.len() - 1;
        for at in 0..self.stages.len() {
            let stage = &mut self.stages[at];
            let produced = match &mut stage.work {
                Work::Operator { guest: Some(guest), .. } if !stage.finished => Some(guest.finish()?),
                _ => None,
            };
            stage.finished = true;
            stage.call = "finish";
            if let Some(produced) = produced {
                if at == last {
                    self.emit(at, &produced)?;
                } else {
                    let (produced, records) = self.count(at, produced)?;
                    if records > 0 {
                        self.push(at + 1, produced, records)?;
                    }
                }
            }
            // `push` skips finished stages: mark the next one only when its turn comes.
        }
        self.out.end()?;
        for stage in &mut self.stages {
            let state = match &mut stage.work {
                Work::Operator { .. } => FINISHED_OPERATOR,
                Work::Sink(sink) => sink.pre_commit(u64::MAX, true)?,
            };
            stage.link.finished(&state);
        }
        let Some(node) = self.sink().map(|s| s.link.node) else { return Ok(()) };
        loop {
            match inputs.next_control() {
                Some(Control::Complete { checkpoint, node: n, includes_final }) if n == node => {
                    let sink = self.sink().and_then(Stage::sink_mut).expect("the tail is a sink");
                    if includes_final {
                        return Ok(sink.commit_all()?);
                    }
                    sink.commit(checkpoint)?;
                }
                Some(_) => {}
                None => return Err(TaskError::Cancelled),
            }
        }
    }

    /// Stop-with-savepoint, with a sink tail: its output up to the savepoint
    /// is sealed; commit it once the savepoint is complete, then stop.
    fn wait_for_savepoint(&mut self, inputs: &mut Inputs, savepoint: u64) -> Result<(), TaskError> {
        let stage = self.sink().expect("the tail is a sink");
        let node = stage.link.node;
        let sink = stage.sink_mut().expect("the tail is a sink");
        loop {
            match inputs.next_control() {
                Some(Control::Complete { checkpoint, node: n, .. }) if n == node => {
                    sink.commit(checkpoint)?;
                    if checkpoint >= savepoint {
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return Err(TaskError::Cancelled),
            }
        }
    }

    /// The tail, if it is a sink.
    fn sink(&mut self) -> Option<&mut Stage> {
        self.stages.last_mut().filter(|s| matches!(s.work, Work::Sink(_)))
    }
}

impl Stage {
    fn sink_mut(&mut self) -> Option<&mut Box<dyn Sink>> {
        match &mut self.work {
            Work::Sink(sink) => Some(sink),
            Work::Operator { .. } => None,
        }
    }

    /// Who to blame for malformed output.
    fn blame(&self) -> Blame {
        let operator = match &self.work {
            Work::Operator { operator, .. } => operator.to_string(),
            Work::Sink(_) => String::new(),
        };
        (operator, self.link.subtask, self.call)
    }
}
