//! A subtask's output side: routing each record to the downstream subtasks
//! of every outgoing edge (forward, by key group, round-robin or broadcast),
//! buffering per target, and sending full batches. Sending blocks when the
//! target's channel is full: that is the backpressure.
//!
//! **Invariant: on a `key` edge, the key the host routes by is the key the
//! receiving operator sees.** A record without a key is routed by its value,
//! so it is sent on with its value as its key ([`Outputs::emit`]); keyed
//! state (stored by record key, snapshotted per key group) then always sits
//! in the key group the record was routed to, and a rescale, which moves
//! whole key groups, moves it with its records.

use std::sync::Arc;

use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use weir_sdk::{frame, keygroup};

use super::message::{Barrier, Batch, Message};
use super::metrics::{Meter, NodeMetrics};
use super::{Cancelled, TaskError};
use crate::error::{GuestError, GuestFailure};
use crate::job::spec::Partition;

/// Channel capacity, in batches, between two subtasks.
pub const CHANNEL_CAPACITY: usize = 4;

/// A batch is sent once it holds this many bytes, however few records: with
/// [`CHANNEL_CAPACITY`] this bounds what waits between two subtasks to about
/// 4 × (this + one record), whatever the record sizes.
pub const BATCH_BYTES: usize = 1 << 20;

/// One outgoing edge of one subtask.
pub struct EdgeOutput {
    partition: Partition,
    /// The side output this edge carries (`input = "node.late"`); `None`
    /// for the main output.
    output: Option<Box<[u8]>>,
    /// One sender per downstream subtask (just one for `forward`). Dropped
    /// with the task, which is how downstream learns of a failure.
    targets: Vec<Sender<Message>>,
    buffers: Vec<Batch>,
    next: usize,
    max_parallelism: u32,
    /// The target of each key group, on a `key` edge: a lookup per record
    /// instead of a division.
    owners: Vec<u32>,
    /// Where time blocked on a full channel goes.
    meter: Meter,
}

impl EdgeOutput {
    /// An edge to `targets` (indexed by downstream subtask).
    pub fn new(partition: Partition, targets: Vec<Sender<Message>>, max_parallelism: u32) -> Self {
        let buffers = targets.iter().map(|_| Batch::default()).collect();
        let n = targets.len() as u32;
        let owners = match partition {
            Partition::Key => {
                (0..max_parallelism).map(|g| keygroup::subtask_for_key_group(g, n, max_parallelism)).collect()
            }
            _ => Vec::new(),
        };
        Self { partition, output: None, targets, buffers, next: 0, max_parallelism, owners, meter: Meter::default() }
    }

    /// This edge carries the side output `name` instead of the main output.
    #[must_use]
    pub fn side_output(mut self, name: &str) -> Self {
        self.output = Some(name.as_bytes().into());
        self
    }

    fn route(&mut self, key: Option<&[u8]>, value: &[u8]) -> Route {
        let n = self.targets.len();
        if n == 1 {
            return Route::One(0);
        }
        match self.partition {
            Partition::Forward => Route::One(0),
            Partition::Key => {
                let group = keygroup::key_group(key.unwrap_or(value), self.max_parallelism);
                Route::One(self.owners[group as usize] as usize)
            }
            Partition::Rebalance => {
                self.next = (self.next + 1) % n;
                Route::One(self.next)
            }
            Partition::Broadcast => Route::All,
        }
    }

    fn push(&mut self, target: usize, raw: &[u8], batch_size: usize) -> Result<(), Cancelled> {
        self.buffers[target].bytes.extend_from_slice(raw);
        self.pushed(target, batch_size)
    }

    /// Pushes a side output's record to `target` without its output name
    /// (downstream reads it as a plain record). Keyless records on a `key`
    /// edge take their value as their key, as on the main output.
    fn push_side(&mut self, target: usize, rec: &frame::RecordRef<'_>, batch_size: usize) -> Result<(), Cancelled> {
        let key = if rec.key.is_none() && self.partition == Partition::Key { Some(rec.value) } else { rec.key };
        frame::write(&mut self.buffers[target].bytes, key, rec.timestamp, rec.value);
        self.pushed(target, batch_size)
    }

    /// Pushes a keyless record to `target` with its value as its key: its
    /// routing key (see the module doc). The one re-encoding on the routing
    /// path, paid only by keyless records on `key` edges (the value is copied
    /// twice instead of once); keyed records are still copied as they are.
    fn push_keyed_by_value(
        &mut self,
        target: usize,
        rec: &frame::RecordRef<'_>,
        batch_size: usize,
    ) -> Result<(), Cancelled> {
        frame::write(&mut self.buffers[target].bytes, Some(rec.value), rec.timestamp, rec.value);
        self.pushed(target, batch_size)
    }

    /// Counts a record just added to `target`'s buffer; sends it when full.
    fn pushed(&mut self, target: usize, batch_size: usize) -> Result<(), Cancelled> {
        let buf = &mut self.buffers[target];
        buf.records += 1;
        if buf.records >= batch_size || buf.bytes.len() >= BATCH_BYTES {
            self.send(target)?;
        }
        Ok(())
    }

    fn send(&mut self, target: usize) -> Result<(), Cancelled> {
        if self.buffers[target].records == 0 {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buffers[target]);
        self.send_message(target, Message::Batch(batch))
    }

    /// Sends `message` to `target`, blocking while its channel is full —
    /// the backpressure, and the only time it is measured.
    fn send_message(&self, target: usize, message: Message) -> Result<(), Cancelled> {
        match self.targets[target].try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(Cancelled),
            Err(TrySendError::Full(message)) => {
                let blocked = Instant::now();
                let sent = self.targets[target].send(message).map_err(|_| Cancelled);
                self.meter.backpressured(blocked.elapsed());
                sent
            }
        }
    }

    fn flush(&mut self) -> Result<(), Cancelled> {
        (0..self.targets.len()).try_for_each(|t| self.send(t))
    }

    fn broadcast(&mut self, message: impl Fn() -> Message) -> Result<(), Cancelled> {
        self.flush()?;
        (0..self.targets.len()).try_for_each(|t| self.send_message(t, message()))
    }
}

/// Who produced a batch, for errors: operator id, subtask, and the guest
/// call whose output it is (`process` or `finish`).
pub type Blame = (String, u32, &'static str);

/// Checks that `batch` is well framed and counts its records, and says
/// whether any of them is for a side output.
///
/// # Errors
/// [`TaskError::Failed`] if `batch` is malformed (a guest bug, blamed on `blame`).
pub fn count_records(batch: &[u8], max_record: usize, blame: impl Fn() -> Blame) -> Result<(usize, bool), TaskError> {
    let mut count = 0;
    let mut side = false;
    for rec in frame::read(batch) {
        let rec = rec.map_err(|e| malformed(&blame, &e))?;
        check_size(&rec, max_record, &blame)?;
        side |= rec.output.is_some();
        count += 1;
    }
    Ok((count, side))
}

/// The main-output records of a well-framed `batch` (what a chained
/// successor reads; side outputs of a chain member have no reader, since
/// a node whose side output is read ends its chain), and their number.
pub fn main_output(batch: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(batch.len());
    let mut reader = frame::read(batch);
    let mut records = 0;
    loop {
        let start = reader.offset();
        match reader.next() {
            Some(Ok(rec)) if rec.output.is_none() => {
                out.extend_from_slice(&batch[start..reader.offset()]);
                records += 1;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (out, records),
        }
    }
}

/// A record larger than `[limits] max_record` fails the task, naming who emitted it.
fn check_size(rec: &frame::RecordRef<'_>, max_record: usize, blame: &impl Fn() -> Blame) -> Result<(), TaskError> {
    let size = rec.value.len() + rec.key.map_or(0, <[u8]>::len);
    if size <= max_record {
        return Ok(());
    }
    let (operator, subtask, call) = blame();
    let why = format!("it emitted a record of {size} bytes, more than [limits] max_record ({max_record} bytes)");
    Err(TaskError::Failed(GuestError { operator, subtask, call, cause: GuestFailure::Protocol(why) }.into()))
}

fn malformed(blame: &impl Fn() -> Blame, e: &frame::FrameError) -> TaskError {
    let (operator, subtask, call) = blame();
    TaskError::Failed(GuestError { operator, subtask, call, cause: GuestFailure::Protocol(e.to_string()) }.into())
}

enum Route {
    One(usize),
    All,
}

/// All outgoing edges of one subtask.
pub struct Outputs {
    edges: Vec<EdgeOutput>,
    batch_size: usize,
    max_record: usize,
    metrics: Arc<NodeMetrics>,
    meter: Meter,
}

impl Outputs {
    /// Outputs over `edges`, sending batches of `batch_size` records (or
    /// [`BATCH_BYTES`]), refusing records over `max_record` bytes.
    pub fn new(edges: Vec<EdgeOutput>, batch_size: usize, max_record: usize, metrics: Arc<NodeMetrics>) -> Self {
        Self { edges, batch_size, max_record, metrics, meter: Meter::default() }
    }

    /// Measures time blocked on full channels into `meter`.
    pub fn set_meter(&mut self, meter: &Meter) {
        self.edges.iter_mut().for_each(|e| e.meter = meter.clone());
        self.meter = meter.clone();
    }

    /// Where this task's waits are measured.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The largest record this task may emit.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// Routes every record of the framed `batch` to every edge.
    ///
    /// # Errors
    /// [`TaskError::Failed`] if `batch` is malformed (a guest bug, blamed on
    /// `blame`); [`Cancelled`] if a downstream task is gone.
    pub fn emit(&mut self, batch: &[u8], blame: impl Fn() -> Blame) -> Result<(), TaskError> {
        let mut reader = frame::read(batch);
        let mut count = 0u64;
        loop {
            let start = reader.offset();
            let Some(rec) = reader.next() else { break };
            let rec = rec.map_err(|e| malformed(&blame, &e))?;
            check_size(&rec, self.max_record, &blame)?;
            let raw = &batch[start..reader.offset()];
            count += 1;
            if let Some(output) = rec.output {
                self.emit_side(output, &rec)?;
                continue;
            }
            for edge in self.edges.iter_mut().filter(|e| e.output.is_none()) {
                let by_value = rec.key.is_none() && edge.partition == Partition::Key;
                match edge.route(rec.key, rec.value) {
                    Route::One(t) if by_value => edge.push_keyed_by_value(t, &rec, self.batch_size)?,
                    Route::One(t) => edge.push(t, raw, self.batch_size)?,
                    Route::All => (0..edge.targets.len()).try_for_each(|t| edge.push(t, raw, self.batch_size))?,
                }
            }
        }
        self.metrics.add_out(count);
        Ok(())
    }

    /// Routes a side output's record to the edges that read `output`, if any
    /// (nobody reading it drops it, as Flink does).
    fn emit_side(&mut self, output: &[u8], rec: &frame::RecordRef<'_>) -> Result<(), Cancelled> {
        for edge in self.edges.iter_mut().filter(|e| e.output.as_deref() == Some(output)) {
            match edge.route(rec.key, rec.value) {
                Route::One(t) => edge.push_side(t, rec, self.batch_size)?,
                Route::All => (0..edge.targets.len()).try_for_each(|t| edge.push_side(t, rec, self.batch_size))?,
            }
        }
        Ok(())
    }

    /// Flushes and sends the task's new watermark downstream, after every
    /// record emitted before it.
    ///
    /// # Errors
    /// [`Cancelled`] if a downstream task is gone.
    pub fn watermark(&mut self, watermark: i64) -> Result<(), Cancelled> {
        self.edges.iter_mut().try_for_each(|e| e.broadcast(|| Message::Watermark(watermark)))
    }

    /// Flushes and tells downstream this task is idle.
    ///
    /// # Errors
    /// [`Cancelled`] if a downstream task is gone.
    pub fn idle(&mut self) -> Result<(), Cancelled> {
        self.edges.iter_mut().try_for_each(|e| e.broadcast(|| Message::Idle))
    }

    /// Sends every partly filled batch now (called when input is idle, so
    /// latency stays low without shrinking batches under load).
    ///
    /// # Errors
    /// [`Cancelled`] if a downstream task is gone.
    pub fn flush(&mut self) -> Result<(), Cancelled> {
        self.edges.iter_mut().try_for_each(EdgeOutput::flush)
    }

    /// Flushes and tells every downstream subtask that this one is done.
    ///
    /// # Errors
    /// [`Cancelled`] if a downstream task is gone.
    pub fn end(&mut self) -> Result<(), Cancelled> {
        self.edges.iter_mut().try_for_each(|e| e.broadcast(|| Message::End))
    }

    /// Flushes and sends `barrier` to every downstream
    /// subtask, so it follows every record emitted before it.
    ///
    /// # Errors
    /// [`Cancelled`] if a downstream task is gone.
    pub fn barrier(&mut self, barrier: Barrier) -> Result<(), Cancelled> {
        self.edges.iter_mut().try_for_each(|e| e.broadcast(|| Message::Barrier(barrier)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 #8: a malformed batch from `finish` is blamed on `finish`,
    /// and an oversized record on whoever emitted it.
    #[test]
    fn errors_name_the_call_that_produced_the_batch() {
        let blame = || ("op".to_owned(), 1, "finish");
        let Err(TaskError::Failed(e)) = count_records(&[0xff, 0xff], 1 << 20, blame) else { panic!("accepted") };
        assert!(e.to_string().contains("failed in `finish`"), "{e}");
        let mut big = Vec::new();
        frame::write(&mut big, None, None, &[b'x'; 100]);
        let Err(TaskError::Failed(e)) = count_records(&big, 10, blame) else { panic!("accepted") };
        assert!(e.to_string().contains("100 bytes, more than [limits] max_record (10 bytes)"), "{e}");
    }

    fn batch_of(keys: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for k in keys {
            frame::write(&mut b, Some(k.as_bytes()), None, k.as_bytes());
        }
        b
    }

    fn drain(rx: &crossbeam_channel::Receiver<Message>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Message::Batch(b)) = rx.try_recv() {
            for r in frame::read(&b.bytes) {
                out.push(String::from_utf8(r.unwrap().value.to_vec()).unwrap());
            }
        }
        out
    }

    fn outputs(partition: Partition, n: usize) -> (Outputs, Vec<crossbeam_channel::Receiver<Message>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
        let edge = EdgeOutput::new(partition, txs, 128);
        (Outputs::new(vec![edge], 3, 1 << 20, Arc::default()), rxs)
    }

    #[test]
    fn key_partitioning_sends_each_key_to_its_key_groups_owner() {
        let (mut out, rxs) = outputs(Partition::Key, 4);
        let keys: Vec<String> = (0..200).map(|i| format!("k{}", i % 50)).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        out.emit(&batch_of(&refs), || ("t".into(), 0, "process")).unwrap();
        out.flush().unwrap();
        for (subtask, rx) in rxs.iter().enumerate() {
            let got = drain(rx);
            assert!(!got.is_empty(), "subtask {subtask} got nothing");
            for k in got {
                let g = keygroup::key_group(k.as_bytes(), 128);
                assert_eq!(keygroup::subtask_for_key_group(g, 4, 128) as usize, subtask);
            }
        }
    }

    /// A record without a key on a key edge arrives keyed by its value —
    /// the key it was routed by — even to a single subtask (whose state must
    /// still be keyed right for a later rescale); other edges pass it as it is.
    #[test]
    fn keyless_records_on_a_key_edge_get_their_routing_key() {
        let mut keyless = Vec::new();
        for v in ["a", "b", "c", "a"] {
            frame::write(&mut keyless, None, Some(5), v.as_bytes());
        }
        frame::write(&mut keyless, Some(b"k"), None, b"keyed");
        for n in [1, 3] {
            let (mut out, rxs) = outputs(Partition::Key, n);
            out.emit(&keyless, || ("t".into(), 0, "process")).unwrap();
            out.flush().unwrap();
            let mut got = Vec::new();
            for (subtask, rx) in rxs.iter().enumerate() {
                while let Ok(Message::Batch(b)) = rx.try_recv() {
                    for r in frame::read(&b.bytes) {
                        let r = r.unwrap();
                        let key = r.key.expect("every record on a key edge has a key");
                        let g = keygroup::key_group(key, 128);
                        assert_eq!(keygroup::subtask_for_key_group(g, n as u32, 128) as usize, subtask);
                        got.push((key.to_vec(), r.value.to_vec(), r.timestamp));
                    }
                }
            }
            got.sort();
            let rec = |k: &[u8], v: &[u8], t| (k.to_vec(), v.to_vec(), t);
            let want = [rec(b"a", b"a", Some(5)), rec(b"a", b"a", Some(5)), rec(b"b", b"b", Some(5))];
            assert_eq!(got[..3], want, "n = {n}");
            assert_eq!(got[3..], [rec(b"c", b"c", Some(5)), rec(b"k", b"keyed", None)], "n = {n}");
        }
        let (mut out, rxs) = outputs(Partition::Rebalance, 1);
        out.emit(&keyless, || ("t".into(), 0, "process")).unwrap();
        out.flush().unwrap();
        let mut sent = Vec::new();
        while let Ok(Message::Batch(b)) = rxs[0].try_recv() {
            sent.extend_from_slice(&b.bytes);
        }
        assert_eq!(sent, keyless, "other edges forward records unchanged");
    }

    #[test]
    fn rebalance_spreads_evenly_and_broadcast_copies() {
        let (mut out, rxs) = outputs(Partition::Rebalance, 3);
        out.emit(&batch_of(&["a"; 9]), || ("t".into(), 0, "process")).unwrap();
        out.flush().unwrap();
        assert!(rxs.iter().all(|rx| drain(rx).len() == 3));
        let (mut out, rxs) = outputs(Partition::Broadcast, 3);
        out.emit(&batch_of(&["a", "b"]), || ("t".into(), 0, "process")).unwrap();
        out.end().unwrap();
        for rx in &rxs {
            assert_eq!(drain(rx), ["a", "b"]);
        }
    }

    #[test]
    fn malformed_guest_output_is_a_guest_failure() {
        let (mut out, _rxs) = outputs(Partition::Forward, 1);
        let mut bad = batch_of(&["abc"]);
        bad.pop();
        match out.emit(&bad, || ("op".into(), 2, "process")) {
            Err(TaskError::Failed(crate::Error::Guest(g))) => assert_eq!((g.operator.as_str(), g.subtask), ("op", 2)),
            Err(TaskError::Failed(e)) => panic!("wrong error {e}"),
            Err(TaskError::Cancelled) => panic!("cancelled"),
            Ok(()) => panic!("accepted a malformed batch"),
        }
    }
}
