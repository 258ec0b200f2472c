//! The `kafka` source and sink: settings resolved from the job file, the
//! client configuration both share, partition assignment, and how Kafka
//! errors become Weir errors.
//!
//! - [`source`]: partitions spread over subtasks; each partition's next
//!   offset is checkpoint state (committed to the consumer group only for
//!   monitoring, as Flink does).
//! - [`sink`]: exactly-once (each checkpoint's records published once it
//!   completes, idempotently), or at-least-once.
//!
//! Both use librdkafka (through `rdkafka`) with blocking calls on the
//! subtask's own thread: no async runtime on the data path.

pub mod sink;
pub mod source;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

use crate::Error;
use crate::job::spec::{KafkaDelivery, KafkaSourceSpec, KafkaStart, SinkSpec};

/// Which topics a source reads.
#[derive(Debug, Clone)]
pub enum Topics {
    /// These names.
    Names(Vec<String>),
    /// Every topic whose name matches (anchored at both ends).
    Pattern(regex::Regex),
}

impl Topics {
    /// Whether `topic` is read.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Names(names) => names.iter().any(|n| n == topic),
            Self::Pattern(re) => re.is_match(topic),
        }
    }

    /// For messages: the names, or the pattern.
    pub fn describe(&self) -> String {
        match self {
            Self::Names(names) => names.join(", "),
            Self::Pattern(re) => format!("topics matching {}", re.as_str()),
        }
    }
}

/// A `kafka` source, resolved.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// The source's id, for messages.
    pub node: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// Topics read.
    pub topics: Topics,
    /// Consumer group for monitoring commits.
    pub group_id: String,
    /// Start of a fresh run.
    pub start: KafkaStart,
    /// Whether to stop at the end offsets of the first start.
    pub bounded: bool,
    /// Partition discovery interval (`None`: off).
    pub discovery: Option<Duration>,
    /// Longest wait for brokers at start.
    pub timeout: Duration,
    /// Records per second in total, if limited.
    pub rate: Option<f64>,
    /// Extra client properties.
    pub properties: Vec<(String, String)>,
}

/// A `kafka` sink, resolved.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// The sink's id, for messages.
    pub node: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic written.
    pub topic: String,
    /// Exactly-once (transactions) or at-least-once.
    pub delivery: KafkaDelivery,
    /// `<prefix>-<job>-<sink>`; subtask `s` writes as `<base>-<s>`.
    pub writer_base: String,
    /// Longest wait for a flush, a commit or the brokers at start.
    pub timeout: Duration,
    /// Extra client properties.
    pub properties: Vec<(String, String)>,
}

impl KafkaSinkConfig {
    /// The writer id of `subtask`.
    pub fn writer(&self, subtask: u32) -> String {
        format!("{}-{subtask}", self.writer_base)
    }
}

/// Resolves a source table; `Err` is the message (the caller names the table).
pub fn source_config(id: &str, job: &str, spec: &KafkaSourceSpec) -> Result<KafkaSourceConfig, String> {
    let topics = match (&spec.topic, &spec.topic_pattern) {
        (Some(t), None) => {
            let names = t.ids().to_vec();
            if names.is_empty() || names.iter().any(String::is_empty) {
                return Err("topic must name at least one topic".into());
            }
            Topics::Names(names)
        }
        (None, Some(p)) => Topics::Pattern(
            regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("topic_pattern {p:?} is not a regex: {e}"))?,
        ),
        _ => return Err("set exactly one of `topic = \"name\"` (or a list) and `topic_pattern = \"regex\"`".into()),
    };
    Ok(KafkaSourceConfig {
        node: id.into(),
        brokers: nonempty_brokers(&spec.brokers)?,
        topics,
        group_id: spec.group_id.clone().unwrap_or_else(|| format!("weir-{job}-{id}")),
        start: spec.start,
        bounded: spec.stop.is_some(),
        discovery: match spec.partition_discovery {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(Duration::from_secs(10)),
        },
        timeout: spec.timeout.unwrap_or(Duration::from_secs(10)),
        rate: spec.rate,
        properties: properties(&spec.properties)?,
    })
}

/// Resolves a sink table; `Err` is the message (the caller names the table).
pub fn sink_config(id: &str, job: &str, spec: &SinkSpec) -> Result<KafkaSinkConfig, String> {
    let brokers = spec.brokers.as_deref().ok_or("a kafka sink needs `brokers = \"host:port\"`")?;
    let topic = spec.topic.clone().filter(|t| !t.is_empty()).ok_or("a kafka sink needs `topic = \"name\"`")?;
    let prefix = spec.writer_id_prefix.as_deref().unwrap_or("weir");
    Ok(KafkaSinkConfig {
        node: id.into(),
        brokers: nonempty_brokers(brokers)?,
        topic,
        delivery: spec.delivery.unwrap_or_default(),
        writer_base: format!("{prefix}-{job}-{id}"),
        timeout: spec.timeout.unwrap_or(Duration::from_secs(30)),
        properties: properties(&spec.properties)?,
    })
}

fn nonempty_brokers(brokers: &str) -> Result<String, String> {
    if brokers.trim().is_empty() {
        return Err("brokers is empty: write e.g. brokers = \"127.0.0.1:9092\"".into());
    }
    Ok(brokers.trim().to_owned())
}

/// Client properties as librdkafka strings; tables and arrays are refused.
fn properties(table: &BTreeMap<String, toml::Value>) -> Result<Vec<(String, String)>, String> {
    table
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(format!("properties.{k}: use a string, number or boolean")),
            };
            Ok((k.clone(), v))
        })
        .collect()
}

/// The settings every client of `brokers` gets, then the user's `properties`
/// (which win).
fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    // librdkafka logs through `tracing`; keep its chatter at warnings.
    config.set("log_level", "4");
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// `weir validate --connect` for a source: reaches its brokers and says
/// which partitions it would read.
///
/// # Errors
/// As a run would fail: unreachable brokers, missing topics, bad properties.
pub fn check_source(cfg: &std::sync::Arc<KafkaSourceConfig>) -> Result<String, Error> {
    let found = source::KafkaSource::new(cfg.clone(), 0, 1)?.discover()?;
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    for (topic, _) in &found {
        *per_topic.entry(topic).or_default() += 1;
    }
    let topics: Vec<String> = per_topic.iter().map(|(t, n)| format!("{t} ({n} partitions)")).collect();
    Ok(format!("{}: reads {}", cfg.brokers, topics.join(", ")))
}

/// `weir validate --connect` for a sink: reaches its brokers and checks its topic.
///
/// # Errors
/// As a run would fail: unreachable brokers, a missing topic, bad properties.
pub fn check_sink(cfg: &std::sync::Arc<KafkaSinkConfig>) -> Result<String, Error> {
    let mut sink = sink::KafkaSink::new(cfg.clone(), 0);
    sink.open()?;
    Ok(format!("{}: writes {} ({} partitions)", cfg.brokers, cfg.topic, sink.partitions()?.len()))
}

/// librdkafka's logs and global errors, into `tracing` without the noise:
/// end-of-partition events (expected: readers ask for them), warnings that
/// a user property is for the other kind of client (`properties` go to
/// both), and connection errors as warnings (librdkafka retries them; what
/// fails the job is reported by the call that failed). A refused login is
/// kept, so that the call that then times out can say why.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    refused: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Logs {
    /// Why the brokers refused this client's credentials, if they did.
    fn refused(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn error(&self, error: &KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            self.refuse(reason);
        }
        log_error(error, reason);
    }

    /// Log lines arrive at once (errors only when the client is polled,
    /// which a blocking metadata request does not do).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if message.contains("SASL authentication error") || message.contains("Authentication failure") {
            self.refuse(message);
        }
        log_line(level, fac, message);
    }

    fn refuse(&self, reason: &str) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }
}

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        Logs::log(self, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        Logs::error(self, &error, reason);
    }
}

impl ConsumerContext for Logs {}

fn log_line(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    if fac == "CONFWARN" && message.contains("will be ignored") {
        return;
    }
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!("librdkafka: {fac} {message}"),
        L::Warning => tracing::warn!("librdkafka: {fac} {message}"),
        _ => tracing::debug!("librdkafka: {fac} {message}"),
    }
}

fn log_error(error: &KafkaError, reason: &str) {
    // rdkafka passes every error event here before the poll that returns it.
    let eof = matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
    if !eof {
        tracing::warn!("librdkafka: {error}: {reason}");
    }
}

/// Which subtask of `parallelism` reads `partition` of `topic`: partitions
/// of one topic go round-robin, each topic starting at a subtask chosen by
/// its name (Flink's assigner), so several small topics spread out too.
pub fn assigned_subtask(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let start = xxhash_rust::xxh3::xxh3_64(topic.as_bytes()) % u64::from(parallelism);
    ((start + u64::from(partition.unsigned_abs())) % u64::from(parallelism)) as u32
}

/// A Kafka error as a Weir error: bad settings, missing topics and refused
/// credentials are the job's fault (not retried); the rest (brokers down,
/// timeouts) are failures of the run, retried from the last checkpoint.
fn error(node: &str, what: &str, e: &KafkaError) -> Error {
    use RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code();
    let invalid = matches!(e, KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..))
        || matches!(
            code,
            Some(
                C::UnknownTopicOrPartition
                    | C::UnknownTopic
                    | C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::SaslAuthenticationFailed
                    | C::Authentication
                    | C::InvalidConfig
                    | C::MessageSizeTooLarge
                    | C::InvalidArgument
            )
        );
    let msg = format!("`{node}`: {what}: {e}");
    if invalid { Error::InvalidJob(msg) } else { Error::io(msg, std::io::Error::other(e.to_string())) }
}

/// Turns a metadata timeout into a message a user can act on: refused
/// credentials (bad input, not retried) or unreachable brokers.
fn unreachable(node: &str, brokers: &str, timeout: Duration, e: &KafkaError, logs: &Logs) -> Error {
    if let Some(reason) = logs.refused() {
        return Error::InvalidJob(format!(
            "`{node}`: the Kafka brokers {brokers} refused the credentials ({reason}); check sasl.username, \
             sasl.password and the other security `properties`"
        ));
    }
    error(
        node,
        &format!(
            "cannot reach the Kafka brokers {brokers} within {} (check `brokers`, that they run and listen there, \
             and the security `properties`)",
            humantime::format_duration(timeout)
        ),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_evenly_over_subtasks() {
        for parallelism in 1..6 {
            let mut per = vec![0; parallelism as usize];
            for p in 0..12 {
                per[assigned_subtask("words", p, parallelism) as usize] += 1;
            }
            let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
            assert!(hi - lo <= 1, "parallelism {parallelism}: {per:?}");
        }
    }

    #[test]
    fn patterns_are_anchored() {
        let spec: KafkaSourceSpec = toml::from_str("brokers = \"b:1\"\ntopic_pattern = \"ev-.*\"").unwrap();
        let cfg = source_config("in", "job", &spec).unwrap();
        assert!(cfg.topics.matches("ev-1"));
        assert!(!cfg.topics.matches("prev-1"));
        assert_eq!(cfg.group_id, "weir-job-in");
    }
}
