//! The three task loops — source, operator, sink — one thread per subtask.
//! Each returns when its input is exhausted (after passing `End` on), when it
//! fails ([`TaskError::Failed`]), or when a neighbour failed ([`TaskError::Cancelled`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::inputs::{Inputs, Next};
use super::metrics::NodeMetrics;
use super::output::Outputs;
use super::{Cancelled, TaskError};
use crate::connectors::{Sink, Source, SourceStatus};
use crate::wasm::OperatorModule;
use crate::wasm::instance::InstanceInfo;

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
) -> Result<(), TaskError> {
    let mut buf = Vec::with_capacity(batch_size * 64);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Cancelled);
        }
        buf.clear();
        let status = source.next_batch(&mut buf, batch_size)?;
        out.emit(&buf, unreachable_blame)?;
        out.flush()?;
        if status == SourceStatus::Exhausted {
            out.end()?;
            return Ok(());
        }
    }
}

/// Sources frame their own records, so a framing error there is a host bug.
fn unreachable_blame() -> (String, u32) {
    ("<source>".into(), 0)
}

/// Runs one guest instance over its inputs.
///
/// # Errors
/// When the guest fails, or a neighbour did.
pub fn run_operator(
    module: &OperatorModule,
    info: &InstanceInfo,
    config_json: &str,
    mut inputs: Inputs,
    mut out: Outputs,
    metrics: &NodeMetrics,
) -> Result<(), TaskError> {
    let mut guest = module.instantiate(info.subtask)?;
    guest.init(info, config_json)?;
    let blame = || (module.operator.to_string(), info.subtask);
    loop {
        match inputs.next(|| out.flush())? {
            Next::Batch { batch, .. } => {
                metrics.add_in(batch.records as u64);
                let produced = guest.process(&batch.bytes)?;
                out.emit(&produced, blame)?;
            }
            Next::AllEnded => {
                let produced = guest.finish()?;
                out.emit(&produced, blame)?;
                out.end()?;
                return Ok(());
            }
        }
    }
}

/// Writes every input batch into `sink`; commits at the end, discards on failure.
///
/// # Errors
/// When the sink fails, or a neighbour did.
pub fn run_sink(mut sink: Box<dyn Sink>, mut inputs: Inputs, metrics: Arc<NodeMetrics>) -> Result<(), TaskError> {
    let result = (|| loop {
        match inputs.next(|| Ok::<(), Cancelled>(()))? {
            Next::Batch { batch, .. } => {
                sink.write(&batch.bytes)?;
                metrics.add_in(batch.records as u64);
            }
            Next::AllEnded => return sink.finish().map_err(TaskError::from),
        }
    })();
    if result.is_err() {
        sink.abort();
    }
    result
}
