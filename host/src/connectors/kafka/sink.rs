//! The `kafka` sink: exactly-once (the default) or at-least-once.
//!
//! ## Exactly-once: publish after the checkpoint, idempotently
//!
//! Each subtask is a *writer* with the id `<prefix>-<job>-<sink>-<subtask>`.
//!
//! - Records are kept in memory as they arrive.
//! - At a barrier ([`Sink::pre_commit`]) they are sealed as a *segment* of
//!   that checkpoint, together with each partition's end offset at that
//!   moment, and the segment goes into the checkpoint state.
//! - When the checkpoint completes ([`Sink::commit`]) the segment is
//!   published: every record carries a header `weir-seq` =
//!   `<writer>/<checkpoint>/<index in segment>`. The producer is
//!   idempotent, so its own retries add no copies.
//! - On restore, a segment of the state may be unpublished, partly
//!   published or fully published (a failure between the checkpoint
//!   completing and the publish finishing). The sink reads the topic from
//!   the offsets recorded at sealing — nothing of the segment can be before
//!   them — to the end, collects the `weir-seq` of its writer's records,
//!   and publishes exactly the missing ones.
//!
//! So every record is in the topic once, and only after its checkpoint
//! completed: downstream readers need no `read_committed`. What Kafka
//! transactions would add is atomic visibility: here a failure in the
//! middle of a publish shows readers part of a checkpoint's output until
//! the restore publishes the rest. (This design was chosen because the
//! broker the tests can install, tansu 0.6.0, does not implement `EndTxn`
//! nor aborted-transaction lists, so a transactional sink could not be
//! verified against a real broker; see the README.)
//!
//! The price is memory and checkpoint size — one checkpoint interval of
//! output per subtask — and, on restore only, reading back the output
//! written since the oldest unpublished segment was sealed.
//!
//! Two runs of one job never write at once: the job's lease fences the
//! older one before a restore (see `checkpoint::lease`).
//!
//! ## At-least-once
//!
//! Records are sent as they arrive, with no headers; a barrier flushes, so
//! a completed checkpoint implies its records are in Kafka. Records written
//! after the restored checkpoint are written again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientContext, Offset};
use weir_sdk::frame;

use super::{KafkaSinkConfig, Logs, client_config, error, unreachable};
use crate::Error;
use crate::checkpoint::state::{KafkaSegment, KafkaSinkState, KafkaWriterState, TaskState};
use crate::connectors::Sink;
use crate::job::spec::KafkaDelivery;

/// The header tagging a record: `<writer>/<checkpoint>/<index in segment>`.
pub const SEQ_HEADER: &str = "weir-seq";

/// Keeps the first failed delivery, for the next flush to report.
#[derive(Default, Clone)]
struct Deliveries {
    failed: Arc<Mutex<Option<KafkaError>>>,
    logs: Logs,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.logs.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logs.error(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.clone());
        }
    }
}

type Producer_ = BaseProducer<Deliveries>;

/// Which records to tag and skip when sending: `(writer, checkpoint,
/// (checkpoint, index) pairs already in Kafka)`.
type Tagging<'a> = Option<(&'a str, u64, &'a HashSet<(u64, u32)>)>;

/// One subtask of a `kafka` sink.
pub struct KafkaSink {
    cfg: Arc<KafkaSinkConfig>,
    subtask: u32,
    writer: String,
    producer: Option<Producer_>,
    deliveries: Deliveries,
    /// Exactly-once: records since the last barrier.
    unsealed: Vec<u8>,
    /// Exactly-once: sealed segments not yet published, oldest first.
    segments: Vec<KafkaSegment>,
    /// Largest record (key + value) the producer takes.
    max_message: usize,
}

impl KafkaSink {
    /// A sink subtask; it connects on restore or clean start.
    pub fn new(cfg: Arc<KafkaSinkConfig>, subtask: u32) -> Self {
        let writer = cfg.writer(subtask);
        Self {
            subtask,
            writer,
            producer: None,
            deliveries: Deliveries::default(),
            unsealed: Vec::new(),
            segments: Vec::new(),
            max_message: max_message(&cfg.properties),
            cfg,
        }
    }

    fn exactly_once(&self) -> bool {
        self.cfg.delivery == KafkaDelivery::ExactlyOnce
    }

    fn fail(&self, what: &str, e: &KafkaError) -> Error {
        error(&self.cfg.node, &format!("subtask {}: {what}", self.subtask), e)
    }

    /// Creates the producer and checks that the topic exists.
    pub(super) fn open(&mut self) -> Result<(), Error> {
        if self.producer.is_some() {
            return Ok(());
        }
        let mut config = client_config(&self.cfg.brokers, &[]);
        // Delivery reports only for failures: one event per record costs
        // more than the send itself.
        config.set("enable.idempotence", "true").set("linger.ms", "5").set("delivery.report.only.error", "true");
        // A message librdkafka still retries after our flush gave up could
        // land after a restore read the topic back (and be published twice):
        // it gives up no later than we do.
        config.set("message.timeout.ms", self.cfg.timeout.as_millis().to_string());
        for (k, v) in &self.cfg.properties {
            config.set(k, v);
        }
        let producer: Producer_ = config
            .create_with_context(self.deliveries.clone())
            .map_err(|e| self.fail("cannot create a Kafka producer", &e))?;
        self.producer = Some(producer);
        self.partitions()?;
        Ok(())
    }

    fn producer(&self) -> &Producer_ {
        self.producer.as_ref().expect("opened first")
    }

    /// The topic's partitions.
    pub(super) fn partitions(&self) -> Result<Vec<i32>, Error> {
        let cfg = &self.cfg;
        let metadata =
            self.producer().client().fetch_metadata(Some(&cfg.topic), cfg.timeout).map_err(|e| self.unreachable(&e))?;
        let topic = metadata.topics().iter().find(|t| t.name() == cfg.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().iter().map(|p| p.id()).collect())
            }
            _ => Err(Error::InvalidJob(format!(
                "`{}`: Kafka topic `{}` does not exist on {} (create it, or fix `topic`)",
                cfg.node, cfg.topic, cfg.brokers
            ))),
        }
    }

    /// A broker request that failed: unreachable, or refused credentials
    /// (the client's queued log lines say which, once served).
    fn unreachable(&self, e: &KafkaError) -> Error {
        self.producer().poll(Duration::ZERO);
        unreachable(&self.cfg.node, &self.cfg.brokers, self.cfg.timeout, e, &self.deliveries.logs)
    }

    /// Each partition's end offset now.
    fn end_offsets(&self) -> Result<Vec<(i32, i64)>, Error> {
        let cfg = &self.cfg;
        let client = self.producer().client();
        self.partitions()?
            .into_iter()
            .map(|p| {
                let (_, high) =
                    client.fetch_watermarks(&cfg.topic, p, cfg.timeout).map_err(|e| self.unreachable(&e))?;
                Ok((p, high))
            })
            .collect()
    }

    /// Queues framed `records`; returns how many. With `seq =
    /// Some((writer, checkpoint, present))` each is tagged with the writer
    /// headers, and those whose `(checkpoint, index)` is in `present` are skipped.
    fn send(&self, records: &[u8], seq: Tagging<'_>) -> Result<usize, Error> {
        let producer = self.producer();
        let mut sent = 0;
        let mut tag = String::new();
        for (index, rec) in frame::read(records).enumerate() {
            let rec = rec.map_err(|e| Error::Internal(format!("kafka sink got a malformed batch: {e}")))?;
            let mut record = BaseRecord::to(&self.cfg.topic).payload(rec.value);
            if let Some((writer, checkpoint, present)) = seq {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                if present.contains(&(checkpoint, index)) {
                    continue;
                }
                tag.clear();
                let _ = write!(tag, "{writer}/{checkpoint}/{index}");
                record = record.headers(
                    OwnedHeaders::new_with_capacity(1).insert(Header { key: SEQ_HEADER, value: Some(tag.as_str()) }),
                );
            }
            if let Some(key) = rec.key {
                record = record.key(key);
            }
            if let Some(ts) = rec.timestamp {
                record = record.timestamp(ts);
            }
            let mut full_since: Option<Instant> = None;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if full_since.get_or_insert_with(Instant::now).elapsed() > self.cfg.timeout {
                            let e = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
                            return Err(self.fail("the producer's queue stayed full (are the brokers up?)", &e));
                        }
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(self.fail("cannot send a record", &e)),
                }
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        Ok(sent)
    }

    /// Waits until everything queued is in Kafka.
    fn flush(&self) -> Result<(), Error> {
        self.producer().flush(self.cfg.timeout).map_err(|e| {
            self.fail(
                &format!("Kafka did not take the records within {}", humantime::format_duration(self.cfg.timeout)),
                &e,
            )
        })?;
        let failed = self.deliveries.failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        match failed {
            Some(e) => Err(self.fail("Kafka refused a record", &e)),
            None => Ok(()),
        }
    }

    /// Publishes the segments sealed at checkpoints up to `checkpoint`.
    fn publish_through(&mut self, checkpoint: u64) -> Result<(), Error> {
        let due = self.segments.iter().take_while(|s| s.checkpoint <= checkpoint).count();
        if due == 0 {
            return Ok(());
        }
        let none = HashSet::new();
        for s in &self.segments[..due] {
            self.send(&s.records, Some((&self.writer, s.checkpoint, &none)))?;
        }
        self.flush()?;
        self.segments.drain(..due);
        Ok(())
    }

    /// Publishes what `saved` sealed and Kafka does not have yet.
    fn recover(&self, saved: &KafkaWriterState) -> Result<(), Error> {
        let Some(oldest) = saved.segments.first() else { return Ok(()) };
        let started = Instant::now();
        let present = self.published(&saved.writer, &oldest.from)?;
        let mut missing = 0;
        for s in &saved.segments {
            missing += self.send(&s.records, Some((&saved.writer, s.checkpoint, &present)))?;
        }
        self.flush()?;
        let newest = saved.segments.last().map_or(0, |s| s.checkpoint);
        tracing::info!(
            "`{}` subtask {}: {} of writer {}'s output sealed at checkpoints {}..={} was already in Kafka, {missing} \
             record(s) published now ({} ms)",
            self.cfg.node,
            self.subtask,
            plural(present.len()),
            saved.writer,
            oldest.checkpoint,
            newest,
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// The `(checkpoint, index)` of every record of `writer` in the topic
    /// from offsets `from` (the beginning of partitions not listed) to the end.
    fn published(&self, writer: &str, from: &[(i32, i64)]) -> Result<HashSet<(u64, u32)>, Error> {
        let cfg = &self.cfg;
        let from: BTreeMap<i32, i64> = from.iter().copied().collect();
        let mut config = client_config(&cfg.brokers, &cfg.properties);
        config
            .set("group.id", format!("{writer}-recovery"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<Logs> =
            config.create_with_context(Logs::default()).map_err(|e| self.fail("cannot create a Kafka consumer", &e))?;
        // Every partition is read to its end (the end-of-partition event,
        // not a listed end offset: some brokers list it wrong, and a scan
        // that stops short would publish twice).
        let mut tpl = TopicPartitionList::new();
        let mut open = BTreeSet::new();
        for p in self.partitions()? {
            let start = Offset::Offset(from.get(&p).copied().unwrap_or(0));
            tpl.add_partition_offset(&cfg.topic, p, start).map_err(|e| self.fail("cannot read back the output", &e))?;
            open.insert(p);
        }
        let mut present = HashSet::new();
        consumer.assign(&tpl).map_err(|e| self.fail("cannot read back the output", &e))?;
        // The scan may be long; it fails only when it stops making progress.
        let mut deadline = Instant::now() + cfg.timeout;
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Err(Error::io(
                    format!("`{}`: reading back the output of {writer} to find what was published", cfg.node),
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no progress within the sink's `timeout`"),
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some(seq) = seq_of(&m, writer) {
                        present.insert(seq);
                    }
                    deadline = Instant::now() + cfg.timeout;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                    deadline = Instant::now() + cfg.timeout;
                }
                Some(Err(e)) => tracing::debug!("`{}`: reading back: {e}", cfg.node),
                None => {}
            }
        }
        Ok(present)
    }

    fn state(&self, finished: bool) -> TaskState {
        let writers = vec![KafkaWriterState { writer: self.writer.clone(), segments: self.segments.clone() }];
        TaskState::KafkaSink(KafkaSinkState { finished, writers })
    }
}

/// `(checkpoint, index)` of a record published by `writer`.
fn seq_of(m: &impl Message, writer: &str) -> Option<(u64, u32)> {
    let tag = m.headers()?.iter().find(|h| h.key == SEQ_HEADER)?.value?;
    let tag = std::str::from_utf8(tag).ok()?;
    let (c, i) = tag.strip_prefix(writer)?.strip_prefix('/')?.split_once('/')?;
    Some((c.parse().ok()?, i.parse().ok()?))
}

/// librdkafka's `message.max.bytes` (default 1,000,000) as set in `properties`,
/// less room for the record's headers and framing.
fn max_message(properties: &[(String, String)]) -> usize {
    let max = properties
        .iter()
        .find(|(k, _)| k == "message.max.bytes")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    max.saturating_sub(512)
}

fn plural(n: usize) -> String {
    if n == 1 { "1 record".into() } else { format!("{n} records") }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Error> {
        self.open()?;
        if self.exactly_once() {
            // A record Kafka would refuse must fail the job now: once sealed
            // into a completed checkpoint, every restore would retry it.
            for rec in frame::read(batch) {
                let rec = rec.map_err(|e| Error::Internal(format!("kafka sink got a malformed batch: {e}")))?;
                let size = rec.value.len() + rec.key.map_or(0, <[u8]>::len);
                if size > self.max_message {
                    return Err(Error::InvalidJob(format!(
                        "`{}`: a record of {size} bytes is larger than the producer's message.max.bytes ({}); \
                         raise it in `properties` (and the topic's max.message.bytes), or make records smaller",
                        self.cfg.node, self.max_message
                    )));
                }
            }
            self.unsealed.extend_from_slice(batch);
            return Ok(());
        }
        self.send(batch, None).map(drop)
    }

    fn pre_commit(&mut self, checkpoint: u64, finished: bool) -> Result<TaskState, Error> {
        self.open()?;
        if !self.exactly_once() {
            self.flush()?;
            return Ok(TaskState::KafkaSink(KafkaSinkState { finished, writers: Vec::new() }));
        }
        if !self.unsealed.is_empty() {
            let from = self.end_offsets()?;
            self.segments.push(KafkaSegment { checkpoint, from, records: std::mem::take(&mut self.unsealed) });
        }
        Ok(self.state(finished))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), Error> {
        if self.exactly_once() && self.producer.is_some() {
            self.publish_through(checkpoint)?;
        }
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), Error> {
        if self.producer.is_none() {
            return Ok(());
        }
        if self.exactly_once() {
            return self.publish_through(u64::MAX);
        }
        self.flush()
    }

    fn restore(&mut self, state: &TaskState) -> Result<(), Error> {
        let TaskState::KafkaSink(state) = state else {
            return Err(Error::InvalidJob(format!(
                "`{}`: the saved state is a file sink's, not a Kafka sink's; resume into the same kind of sink \
                 (or rename the sink to start it afresh)",
                self.cfg.node
            )));
        };
        self.open()?;
        if !self.exactly_once() && state.writers.iter().any(|w| !w.segments.is_empty()) {
            tracing::info!(
                "`{}`: publishing the saved exactly-once output before going on at-least-once",
                self.cfg.node
            );
        }
        for saved in &state.writers {
            self.recover(saved)?;
        }
        Ok(())
    }

    fn clean_start(&mut self) -> Result<(), Error> {
        self.open()
    }

    fn abort(&mut self) {
        if let Some(producer) = &self.producer {
            // Let everything in flight land or fail now (librdkafka gives up
            // within `timeout`, see `open`), not after a restore has read
            // the output back.
            let _ = producer.flush(self.cfg.timeout);
        }
    }
}
