//! The `kafka` source: one consumer per subtask, reading the partitions
//! assigned to it ([`super::assigned_subtask`]) with manual assignment — no
//! group rebalancing, as in Flink: the checkpoint decides who reads what
//! from where.
//!
//! - **Offsets are state.** [`Source::position`] records each partition's
//!   next offset; a restore resumes exactly there. Start offsets are
//!   resolved to numbers before the first record is read, so a checkpoint
//!   never holds "latest" that would mean something else after a restart.
//! - **Monitoring commits.** When a checkpoint completes, the offsets it
//!   holds are committed to the consumer group (asynchronously); recovery
//!   never reads them.
//! - **New partitions** (and topics matching a pattern) are found every
//!   `partition_discovery` and read from their earliest offset.
//! - **Bounded reads** (`stop = "latest"`): the end offsets found at the
//!   first start are kept in the state; the subtask finishes when each of
//!   its partitions reached its end, and a restart stops at the same place.
//! - Transactions: the consumer reads with `isolation.level =
//!   read_committed`, so a topic written by an exactly-once producer (a
//!   Weir `kafka` sink) is read exactly-once too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;
use weir_sdk::frame;

use super::{KafkaSourceConfig, Logs, Topics, assigned_subtask, client_config, error, unreachable};
use crate::Error;
use crate::checkpoint::state::{KafkaPartitionPosition, KafkaPosition, SourcePosition};
use crate::connectors::pacer::Pacer;
use crate::connectors::{Source, SourceStatus};
use crate::job::spec::KafkaStart;

/// Longest a `next_batch` waits for the first record, so that barriers and
/// cancellation are not held up by an idle topic.
const POLL: Duration = Duration::from_millis(50);

/// One partition's progress in this subtask.
#[derive(Debug, Clone)]
struct Part {
    next: i64,
    stop: Option<i64>,
    done: bool,
}

/// `(topic, partition, next offset)` of each partition.
type Offsets = Vec<(String, i32, i64)>;

/// One subtask's share of a `kafka` source.
pub struct KafkaSource {
    cfg: Arc<KafkaSourceConfig>,
    subtask: u32,
    parallelism: u32,
    consumer: BaseConsumer<Logs>,
    /// Assigned partitions by (topic, partition).
    parts: BTreeMap<(String, i32), Part>,
    /// Event time per partition: each partition's split number (in the
    /// order their first records came), and the last batch's per record.
    split_ids: HashMap<(String, i32), u32>,
    batch_splits: Vec<u32>,
    /// Restored partitions not yet assigned (the first `next_batch` assigns).
    restored: Option<KafkaPosition>,
    started: bool,
    /// When to look for new partitions next (`None`: never).
    next_discovery: Option<Instant>,
    /// Offsets taken at checkpoints not yet complete, oldest first.
    taken: VecDeque<(u64, Offsets)>,
    /// Last warning about a consumer error, to keep the log readable.
    last_warning: Option<Instant>,
    pacer: Pacer,
}

impl KafkaSource {
    /// A source subtask; it connects on its first batch.
    ///
    /// # Errors
    /// When the client cannot be created (bad `properties`).
    pub fn new(cfg: Arc<KafkaSourceConfig>, subtask: u32, parallelism: u32) -> Result<Self, Error> {
        let mut config = client_config(&cfg.brokers, &[]);
        config
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        for (k, v) in &cfg.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer<Logs> = config
            .create_with_context(Logs::default())
            .map_err(|e| error(&cfg.node, "cannot create a Kafka consumer", &e))?;
        Ok(Self {
            subtask,
            parallelism,
            consumer,
            parts: BTreeMap::new(),
            split_ids: HashMap::new(),
            batch_splits: Vec::new(),
            restored: None,
            started: false,
            next_discovery: None,
            taken: VecDeque::new(),
            last_warning: None,
            pacer: Pacer::new(cfg.rate, parallelism),
            cfg,
        })
    }

    /// A broker request that failed: unreachable, or refused credentials.
    /// Before the first assignment the client's queued log lines (which say
    /// which) are served; after it, polling would take records, and a
    /// refusal then is not new anyway.
    fn unreachable(&self, e: &KafkaError) -> Error {
        if !self.started {
            let _ = self.consumer.poll(Duration::ZERO);
        }
        unreachable(&self.cfg.node, &self.cfg.brokers, self.cfg.timeout, e, self.consumer.context())
    }

    /// Every partition of the topics read, from the brokers' metadata.
    pub(super) fn discover(&self) -> Result<Vec<(String, i32)>, Error> {
        let cfg = &self.cfg;
        let topic = match &cfg.topics {
            Topics::Names(names) if names.len() == 1 => Some(names[0].as_str()),
            _ => None,
        };
        let metadata = self.consumer.fetch_metadata(topic, cfg.timeout).map_err(|e| self.unreachable(&e))?;
        let mut found = Vec::new();
        for t in metadata.topics() {
            if !cfg.topics.matches(t.name()) {
                continue;
            }
            if let Some(e) = t.error() {
                let code: rdkafka::types::RDKafkaErrorCode = e.into();
                if code == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                    continue; // said below, by name
                }
                return Err(error(&cfg.node, &format!("topic `{}`", t.name()), &KafkaError::MetadataFetch(code)));
            }
            found.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
        }
        if let Topics::Names(names) = &cfg.topics
            && let Some(missing) = names.iter().find(|n| !found.iter().any(|(t, _)| t == *n))
        {
            return Err(Error::InvalidJob(format!(
                "`{}`: Kafka topic `{missing}` does not exist on {} (create it, or fix `topic`)",
                cfg.node, cfg.brokers
            )));
        }
        if found.is_empty() {
            return Err(Error::InvalidJob(format!(
                "`{}`: no Kafka topic on {} matches topic_pattern `{}`",
                cfg.node,
                cfg.brokers,
                cfg.topics.describe()
            )));
        }
        Ok(found)
    }

    /// Assigns the partitions of this subtask: restored ones where they
    /// were, new ones where `start` (or, after the first start, earliest) says.
    fn start(&mut self) -> Result<(), Error> {
        let restored = self.restored.take();
        let bounded_restore = restored.as_ref().is_some_and(|r| r.bounded);
        let mut saved: BTreeMap<(String, i32), Part> = BTreeMap::new();
        for p in restored.iter().flat_map(|r| &r.partitions) {
            if assigned_subtask(&p.topic, p.partition, self.parallelism) == self.subtask {
                saved.insert((p.topic.clone(), p.partition), Part { next: p.next, stop: p.stop, done: p.done });
            }
        }
        let all = if bounded_restore { saved.keys().cloned().collect() } else { self.discover()? };
        let fresh = restored.is_none();
        let mut new = Vec::new();
        for (topic, partition) in all {
            if assigned_subtask(&topic, partition, self.parallelism) != self.subtask {
                continue;
            }
            match saved.remove(&(topic.clone(), partition)) {
                Some(part) => {
                    self.parts.insert((topic, partition), part);
                }
                None => new.push((topic, partition)),
            }
        }
        let start = if fresh { self.cfg.start } else { KafkaStart::Earliest };
        self.add(new, start, self.cfg.bounded && fresh)?;
        self.assign()?;
        self.started = true;
        self.schedule_discovery();
        Ok(())
    }

    /// Resolves the start (and, when bounded, stop) offsets of new partitions.
    fn add(&mut self, new: Vec<(String, i32)>, start: KafkaStart, bounded: bool) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let fail = |e: KafkaError| self.unreachable(&e);
        let mut added = Vec::with_capacity(new.len());
        let committed = if start == KafkaStart::Committed && !new.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &new {
                tpl.add_partition(t, *p);
            }
            Some(self.consumer.committed_offsets(tpl, cfg.timeout).map_err(fail)?)
        } else {
            None
        };
        for (topic, partition) in new {
            let (low, high) = self.consumer.fetch_watermarks(&topic, partition, cfg.timeout).map_err(fail)?;
            let next = match start {
                KafkaStart::Earliest => low,
                KafkaStart::Latest => high,
                KafkaStart::Committed => match committed.as_ref().and_then(|c| c.find_partition(&topic, partition)) {
                    Some(e) => match e.offset() {
                        Offset::Offset(o) => o.clamp(low, high),
                        _ => low,
                    },
                    None => low,
                },
                KafkaStart::Timestamp(ms) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&topic, partition, Offset::Offset(ms)).map_err(fail)?;
                    let found = self.consumer.offsets_for_times(tpl, cfg.timeout).map_err(fail)?;
                    match found.find_partition(&topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => high,
                    }
                }
            };
            let stop = bounded.then_some(high);
            let done = stop.is_some_and(|s| next >= s);
            tracing::debug!(
                "`{}` subtask {}: {topic}/{partition} from offset {next} (of {low}..{high})",
                cfg.node,
                self.subtask
            );
            added.push(((topic, partition), Part { next, stop, done }));
        }
        self.parts.extend(added);
        Ok(())
    }

    /// Hands the consumer every partition still to read, at its offset.
    fn assign(&mut self) -> Result<(), Error> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), part) in &self.parts {
            if !part.done {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(part.next))
                    .map_err(|e| error(&self.cfg.node, "cannot assign partitions", &e))?;
            }
        }
        self.consumer.assign(&tpl).map_err(|e| error(&self.cfg.node, "cannot assign partitions", &e))
    }

    fn schedule_discovery(&mut self) {
        self.next_discovery =
            self.cfg.discovery.filter(|_| !self.cfg.bounded).and_then(|d| Instant::now().checked_add(d));
    }

    /// Looks for new partitions (unbounded reads only).
    fn rediscover(&mut self) -> Result<(), Error> {
        self.schedule_discovery();
        let found = match self.discover() {
            Ok(found) => found,
            Err(e) => {
                // A broker blip must not fail a running job; the next round retries.
                tracing::warn!("`{}`: partition discovery failed: {e}", self.cfg.node);
                return Ok(());
            }
        };
        let new: Vec<(String, i32)> = found
            .into_iter()
            .filter(|(t, p)| {
                assigned_subtask(t, *p, self.parallelism) == self.subtask && !self.parts.contains_key(&(t.clone(), *p))
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "`{}` subtask {}: reading new partitions {}",
            self.cfg.node,
            self.subtask,
            new.iter().map(|(t, p)| format!("{t}/{p}")).collect::<Vec<_>>().join(", ")
        );
        self.add(new, KafkaStart::Earliest, false)?;
        self.assign()
    }

    /// Marks `(topic, partition)` done once it reached its stop offset;
    /// returns whether it is done.
    fn check_done(&mut self, topic: &str, partition: i32, at_end: bool) -> bool {
        let Some(part) = self.parts.get_mut(&(topic.to_owned(), partition)) else { return false };
        if part.done {
            return true;
        }
        let Some(stop) = part.stop else { return false };
        // At the end of a partition every record before `stop` was
        // delivered, even when the last offsets are transaction markers.
        if part.next >= stop || at_end {
            part.done = true;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let _ = self.consumer.pause(&tpl);
        }
        part.done
    }

    fn warn(&mut self, e: &KafkaError) {
        if self.last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            tracing::warn!("`{}` subtask {}: {e} (the consumer retries)", self.cfg.node, self.subtask);
            self.last_warning = Some(Instant::now());
        }
    }

    fn all_done(&self) -> bool {
        self.parts.values().all(|p| p.done)
    }
}

impl Source for KafkaSource {
    fn next_batch(&mut self, out: &mut Vec<u8>, max_records: usize) -> Result<SourceStatus, Error> {
        if !self.started {
            self.start()?;
        }
        if self.cfg.bounded && self.all_done() {
            return Ok(SourceStatus::Exhausted);
        }
        if self.next_discovery.is_some_and(|t| Instant::now() >= t) {
            self.rediscover()?;
        }
        let max_records = self.pacer.allowance(max_records);
        let mut emitted = 0;
        self.batch_splits.clear();
        while emitted < max_records {
            let wait = if emitted == 0 { POLL } else { Duration::ZERO };
            let Some(polled) = self.consumer.poll(wait) else { break };
            match polled {
                Ok(msg) => {
                    let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
                    let Some(part) = self.parts.get_mut(&(topic.clone(), partition)) else { continue };
                    if part.done || offset < part.next || part.stop.is_some_and(|s| offset >= s) {
                        // A bounded read's records past the end, or a stale fetch.
                        self.check_done(&topic, partition, false);
                        continue;
                    }
                    let timestamp = msg.timestamp().to_millis();
                    frame::write(out, msg.key(), timestamp, msg.payload().unwrap_or_default());
                    part.next = offset + 1;
                    let next_id = self.split_ids.len() as u32;
                    let split = *self.split_ids.entry((topic.clone(), partition)).or_insert(next_id);
                    self.batch_splits.push(split);
                    emitted += 1;
                    self.check_done(&topic, partition, false);
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    // The event names no topic. With one topic of that partition
                    // number the event is its end; with several, each is done
                    // only once the consumer's own position there reached its stop.
                    let at: Vec<String> =
                        self.parts.keys().filter(|(_, p)| *p == partition).map(|(t, _)| t.clone()).collect();
                    if let [topic] = at.as_slice() {
                        self.check_done(topic, partition, true);
                    } else if let Ok(positions) = self.consumer.position() {
                        for topic in at {
                            let reached = match positions.find_partition(&topic, partition).map(|e| e.offset()) {
                                Some(Offset::Offset(o)) => self
                                    .parts
                                    .get(&(topic.clone(), partition))
                                    .and_then(|p| p.stop)
                                    .is_some_and(|s| o >= s),
                                _ => false,
                            };
                            self.check_done(&topic, partition, reached);
                        }
                    }
                }
                Err(e) if is_fatal(&e) => {
                    return Err(error(&self.cfg.node, "the Kafka consumer failed", &e));
                }
                Err(e) => self.warn(&e),
            }
        }
        self.pacer.emitted(emitted);
        if self.cfg.bounded && self.all_done() {
            return Ok(SourceStatus::Exhausted);
        }
        Ok(SourceStatus::More)
    }

    fn splits(&self) -> (usize, &[u32]) {
        (self.parts.len().max(self.split_ids.len()).max(1), &self.batch_splits)
    }

    fn position(&self) -> SourcePosition {
        if !self.started
            && let Some(restored) = &self.restored
        {
            // Not assigned yet: what was restored is still where it stands —
            // for this subtask's partitions only (after a rescale it was
            // handed every old subtask's, which their new owners move on).
            let mut own = restored.clone();
            own.partitions.retain(|p| assigned_subtask(&p.topic, p.partition, self.parallelism) == self.subtask);
            return SourcePosition::Kafka(own);
        }
        SourcePosition::Kafka(KafkaPosition {
            started: self.started,
            bounded: self.cfg.bounded,
            partitions: self
                .parts
                .iter()
                .map(|((topic, partition), p)| KafkaPartitionPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    next: p.next,
                    stop: p.stop,
                    done: p.done,
                })
                .collect(),
        })
    }

    fn restore(&mut self, position: SourcePosition) -> Result<(), Error> {
        match position {
            // A subtask that had not started yet starts afresh.
            SourcePosition::Kafka(p) => {
                if p.started && p.bounded != self.cfg.bounded {
                    let (was, is) = if p.bounded { ("bounded", "unbounded") } else { ("unbounded", "bounded") };
                    return Err(Error::InvalidJob(format!(
                        "`{}`: the saved position is of a {was} read, the job now asks for an {is} one (`stop` \
                         changed); put `stop` back as it was, or rename the source to start it afresh",
                        self.cfg.node
                    )));
                }
                self.restored = p.started.then_some(p);
                Ok(())
            }
            other => Err(Error::InvalidJob(format!(
                "`{}`: the saved position is not a Kafka source's ({other:?}); a source cannot change its kind \
                 — rename it to start it afresh",
                self.cfg.node
            ))),
        }
    }

    fn checkpoint_taken(&mut self, checkpoint: u64) {
        let offsets = self.parts.iter().map(|((t, p), part)| (t.clone(), *p, part.next)).collect();
        self.taken.push_back((checkpoint, offsets));
        // Complete notices can be lost to a failed checkpoint; keep a few.
        while self.taken.len() > 16 {
            self.taken.pop_front();
        }
    }

    fn checkpoint_complete(&mut self, checkpoint: u64) {
        let mut latest = None;
        while self.taken.front().is_some_and(|(c, _)| *c <= checkpoint) {
            latest = self.taken.pop_front();
        }
        let Some((_, offsets)) = latest else { return };
        let mut tpl = TopicPartitionList::new();
        for (t, p, next) in &offsets {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*next));
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!("`{}`: committing offsets for monitoring failed: {e}", self.cfg.node);
        }
    }
}

/// Errors the consumer does not recover from by itself.
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::UnknownTopicOrPartition
        )
    )
}
