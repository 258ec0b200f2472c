//! The `stdout` sink: one line per record value on standard output — and
//! the `discard` sink, which drops records (its input count is all it keeps).
//!
//! `stdout`: Each
//! batch is written under the stdout lock, so lines of parallel subtasks
//! never interleave mid-line. Standard output cannot take back what it
//! printed, so after a failure and restore this sink is at-least-once: lines
//! printed after the restored checkpoint are printed again.

use std::io::Write;

use weir_sdk::frame;

use super::Sink;
use crate::Error;
use crate::checkpoint::state::{SinkState, TaskState};

/// Writes record values as lines to stdout.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl Sink for StdoutSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Error> {
        self.buf.clear();
        for rec in frame::read(batch) {
            let rec = rec.map_err(|e| Error::Internal(format!("stdout sink got a malformed batch: {e}")))?;
            self.buf.extend_from_slice(rec.value);
            self.buf.push(b'\n');
        }
        std::io::stdout().lock().write_all(&self.buf).map_err(|e| Error::io("stdout sink: cannot write", e))
    }

    fn pre_commit(&mut self, _checkpoint: u64, finished: bool) -> Result<TaskState, Error> {
        self.commit_all()?;
        Ok(TaskState::Sink(SinkState { finished, pending: Vec::new(), next_part: 0, dir: None }))
    }

    fn commit(&mut self, _checkpoint: u64) -> Result<(), Error> {
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), Error> {
        std::io::stdout().lock().flush().map_err(|e| Error::io("stdout sink: cannot flush", e))
    }

    fn restore(&mut self, _state: &TaskState) -> Result<(), Error> {
        Ok(())
    }

    fn abort(&mut self) {}
}

/// Drops every record; the sink task still counts them.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _batch: &[u8]) -> Result<(), Error> {
        Ok(())
    }

    fn pre_commit(&mut self, _checkpoint: u64, finished: bool) -> Result<TaskState, Error> {
        Ok(TaskState::Sink(SinkState { finished, pending: Vec::new(), next_part: 0, dir: None }))
    }

    fn commit(&mut self, _checkpoint: u64) -> Result<(), Error> {
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn restore(&mut self, _state: &TaskState) -> Result<(), Error> {
        Ok(())
    }

    fn abort(&mut self) {}
}
