//! The three task loops — source, operator, sink — one thread per subtask.
//! Each returns when its input is exhausted (after passing `End` on), when it
//! fails ([`TaskError::Failed`]), or when a neighbour failed ([`TaskError::Cancelled`]).
//!
//! With checkpointing, each task also has a [`Link`] to the coordinator:
//! sources turn a trigger into a position snapshot plus a barrier; operators
//! and sinks snapshot when [`Next::Aligned`] says every input delivered the
//! barrier, then pass the barrier on. The only pause of the record path is
//! that snapshot; uploading happens elsewhere. A task that finishes sends
//! its final state once, so later checkpoints can include it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::inputs::{Inputs, Next};
use super::message::Barrier;
use super::metrics::NodeMetrics;
use super::output::Outputs;
use super::{Cancelled, TaskError};
use crate::checkpoint::coordinator::{Control, TaskEvent};
use crate::checkpoint::state::{self, OperatorState, SourcePosition, TaskState};
use crate::connectors::{Sink, Source, SourceStatus};
use crate::wasm::OperatorModule;
use crate::wasm::instance::InstanceInfo;

/// A task's connection to the checkpoint coordinator.
pub struct Link {
    /// Node index in the plan.
    pub node: usize,
    /// Subtask index.
    pub subtask: u32,
    /// Acks and the final state, to the coordinator.
    pub events: Sender<TaskEvent>,
    /// Triggers (sources) and completions, from the coordinator. Handed to
    /// [`Inputs`] for operators and sinks.
    pub control: Receiver<Control>,
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

/// Reads `source` until exhausted (or `cancel` is set), sending batches on.
/// (Its records are counted as the node's output by `out`.)
///
/// # Errors
/// When the source fails or downstream is gone.
pub fn run_source(
    mut source: Box<dyn Source>,
    mut out: Outputs,
    batch_size: usize,
    cancel: &AtomicBool,
    link: Option<Link>,
) -> Result<(), TaskError> {
    let mut buf = Vec::with_capacity(batch_size * 64);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Cancelled);
        }
        if let Some(link) = &link {
            loop {
                match link.control.try_recv() {
                    Ok(Control::Trigger(barrier)) => {
                        let started = Instant::now();
                        let state = TaskState::Source(source.position());
                        link.ack(barrier.id, &state, Duration::ZERO, started.elapsed());
                        out.barrier(barrier)?;
                        if barrier.stop {
                            // Stop-with-savepoint: no `End` — the job resumes from here.
                            return Ok(());
                        }
                    }
                    Ok(Control::Complete { .. }) => {}
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        buf.clear();
        let status = source.next_batch(&mut buf, batch_size)?;
        out.emit(&buf, unreachable_blame)?;
        out.flush()?;
        if status == SourceStatus::Exhausted {
            out.end()?;
            if let Some(link) = &link {
                link.finished(&TaskState::Source(SourcePosition::Finished));
            }
            return Ok(());
        }
    }
}

/// A source whose restored position says it already finished.
///
/// # Errors
/// When downstream is gone.
pub fn run_finished_source(mut out: Outputs, link: Option<Link>) -> Result<(), TaskError> {
    out.end()?;
    if let Some(link) = &link {
        link.finished(&TaskState::Source(SourcePosition::Finished));
    }
    Ok(())
}

/// Sources frame their own records, so a framing error there is a host bug.
fn unreachable_blame() -> (String, u32) {
    ("<source>".into(), 0)
}

/// Runs one guest instance over its inputs, from `restored` state if given.
///
/// # Errors
/// When the guest fails, or a neighbour did.
#[allow(clippy::too_many_arguments)]
pub fn run_operator(
    module: &OperatorModule,
    info: &InstanceInfo,
    config_json: &str,
    mut inputs: Inputs,
    mut out: Outputs,
    metrics: &NodeMetrics,
    link: Option<Link>,
    restored: Option<OperatorState>,
) -> Result<(), TaskError> {
    let finished_state = TaskState::Operator(OperatorState { finished: true, guest: None });
    if restored.as_ref().is_some_and(|r| r.finished) {
        // It consumed all its input before the checkpoint; its output is
        // downstream's state already. Running `finish` again would repeat it.
        // Its upstream finished too: wait for their `End`s (exiting first
        // would make their sends fail), then pass `End` on.
        while !matches!(inputs.next(|| Ok(()))?, Next::AllEnded) {}
        out.end()?;
        if let Some(link) = &link {
            link.finished(&finished_state);
        }
        return Ok(());
    }
    let mut guest = module.instantiate(info.subtask)?;
    guest.init(info, config_json, restored.as_ref().and_then(|r| r.guest.as_ref()))?;
    let blame = || (module.operator.to_string(), info.subtask);
    loop {
        match inputs.next(|| out.flush())? {
            Next::Batch { batch, .. } => {
                metrics.add_in(batch.records as u64);
                let produced = guest.process(&batch.bytes)?;
                out.emit(&produced, blame)?;
            }
            Next::Aligned { checkpoint, stop, alignment } => {
                let started = Instant::now();
                let snapshot = guest.snapshot(checkpoint)?;
                let state = TaskState::Operator(OperatorState { finished: false, guest: Some(snapshot) });
                if let Some(link) = &link {
                    link.ack(checkpoint, &state, alignment, started.elapsed());
                }
                out.barrier(Barrier { id: checkpoint, stop })?;
                if stop {
                    // Stop-with-savepoint: no `finish` and no `End`; the job resumes from here.
                    return Ok(());
                }
            }
            Next::Control(Control::Complete { checkpoint, .. }) => guest.checkpoint_complete(checkpoint)?,
            Next::Control(Control::Trigger(_)) => {}
            Next::AllEnded => {
                let produced = guest.finish()?;
                out.emit(&produced, blame)?;
                out.end()?;
                if let Some(link) = &link {
                    link.finished(&finished_state);
                }
                return Ok(());
            }
        }
    }
}

/// Writes every input batch into `sink`. Without checkpoints it commits at
/// the end; with them it seals output at each barrier, commits on each
/// completion, and after the end waits for the checkpoint holding its final
/// state before committing the rest. Discards unsealed output on failure.
///
/// # Errors
/// When the sink fails, or a neighbour did.
pub fn run_sink(
    mut sink: Box<dyn Sink>,
    mut inputs: Inputs,
    metrics: &NodeMetrics,
    link: Option<Link>,
    restored: Option<state::SinkState>,
) -> Result<(), TaskError> {
    let result = sink_loop(&mut *sink, &mut inputs, metrics, link.as_ref(), restored);
    if result.is_err() {
        sink.abort();
    }
    result
}

fn sink_loop(
    sink: &mut dyn Sink,
    inputs: &mut Inputs,
    metrics: &NodeMetrics,
    link: Option<&Link>,
    restored: Option<state::SinkState>,
) -> Result<(), TaskError> {
    let mut finished = false;
    if let Some(state) = restored {
        sink.restore(&state)?;
        finished = state.finished;
    } else {
        sink.clean_start()?;
    }
    while !finished {
        match inputs.next(|| Ok::<(), Cancelled>(()))? {
            Next::Batch { batch, .. } => {
                sink.write(&batch.bytes)?;
                metrics.add_in(batch.records as u64);
            }
            Next::Aligned { checkpoint, stop, alignment } => {
                let started = Instant::now();
                let state = TaskState::Sink(sink.pre_commit(checkpoint, false)?);
                if let Some(link) = link {
                    link.ack(checkpoint, &state, alignment, started.elapsed());
                    if stop {
                        return wait_for_savepoint(sink, inputs, checkpoint);
                    }
                }
            }
            Next::Control(Control::Complete { checkpoint, .. }) => sink.commit(checkpoint)?,
            Next::Control(Control::Trigger(_)) => {}
            Next::AllEnded => finished = true,
        }
    }
    let Some(link) = link else { return Ok(sink.commit_all()?) };
    link.finished(&TaskState::Sink(sink.pre_commit(u64::MAX, true)?));
    loop {
        match inputs.next_control() {
            Some(Control::Complete { includes_final: true, .. }) => return Ok(sink.commit_all()?),
            Some(Control::Complete { checkpoint, .. }) => sink.commit(checkpoint)?,
            Some(Control::Trigger(_)) => {}
            None => return Err(TaskError::Cancelled),
        }
    }
}

/// Stop-with-savepoint, at a sink: its output up to the savepoint is sealed;
/// commit it once the savepoint is complete, then stop.
fn wait_for_savepoint(sink: &mut dyn Sink, inputs: &mut Inputs, savepoint: u64) -> Result<(), TaskError> {
    loop {
        match inputs.next_control() {
            Some(Control::Complete { checkpoint, .. }) if checkpoint >= savepoint => {
                sink.commit(checkpoint)?;
                return Ok(());
            }
            Some(Control::Complete { checkpoint, .. }) => sink.commit(checkpoint)?,
            Some(Control::Trigger(_)) => {}
            None => return Err(TaskError::Cancelled),
        }
    }
}
