//! The job file's schema: what a user writes in `job.toml`, as serde types.
//! Unknown keys are rejected (a typo must not be silently ignored). Nothing
//! here checks cross-references; [`super::plan`] does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A whole job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `[job]`: name and job-wide settings.
    #[serde(default)]
    pub job: JobSection,
    /// `[limits]`: per guest instance resource limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// `[checkpoint]`: periodic snapshots; absent means no checkpoints.
    pub checkpoint: Option<CheckpointSpec>,
    /// `[restart]`: what to do when a task fails.
    pub restart: Option<RestartSpec>,
    /// `[sources.ID]` tables.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSpec>,
    /// `[operators.ID]` tables.
    #[serde(default)]
    pub operators: BTreeMap<String, OperatorSpec>,
    /// `[sinks.ID]` tables.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkSpec>,
}

/// `[job]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Job name; defaults to the job file's stem.
    pub name: Option<String>,
    /// Number of key groups: the upper bound of any parallelism, fixed for
    /// the life of the job's state. Default 128.
    pub max_parallelism: Option<u32>,
    /// Records per batch sent between tasks and into guests. Default 1024.
    pub batch_size: Option<usize>,
    /// Fuse forward-connected operators (and a sink after them) into one
    /// task, as Flink's operator chaining does. Default true.
    pub chaining: Option<bool>,
}

/// `[limits]`: what one guest instance may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSpec {
    /// Maximum linear memory per instance, e.g. `"512MiB"`.
    #[serde(with = "bytes")]
    pub memory: u64,
    /// Longest a single call into a guest may run, e.g. `"5s"`.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Largest record (key + value) an operator or source may emit, e.g.
    /// `"16MiB"`; a larger one fails the job naming who emitted it.
    #[serde(with = "bytes")]
    pub max_record: u64,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self { memory: 512 << 20, call_timeout: Duration::from_secs(5), max_record: 16 << 20 }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between checkpoint triggers, e.g. `"1s"`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A checkpoint not complete after this long is abandoned. Default `"60s"`.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the next trigger. Default `"0s"`.
    #[serde(default, with = "humantime_serde")]
    pub min_pause: Duration,
    /// Checkpoints in flight at once. Default 1.
    #[serde(default = "defaults::one")]
    pub max_concurrent: u32,
    /// Consecutive failed checkpoints tolerated before the job fails. Default 0.
    #[serde(default)]
    pub tolerable_failures: u32,
    /// Complete checkpoints kept; older ones are deleted. Default 3.
    #[serde(default = "defaults::retain")]
    pub retain: u32,
    /// Where checkpoints go: `file://DIR` (relative to the job file),
    /// `memory://`, or `s3://bucket/prefix`. Default `file://checkpoints`.
    #[serde(default = "defaults::store")]
    pub store: String,
    /// Where savepoints go unless the request names a target: a directory
    /// (relative to the job file) or a URL. Default `savepoints`.
    #[serde(default = "defaults::savepoints")]
    pub savepoints: String,
}

impl CheckpointSpec {
    /// For a job without `[checkpoint]`: no periodic checkpoints, but
    /// savepoints (and the final checkpoint, in memory) still work.
    pub fn savepoints_only() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            timeout: defaults::timeout(),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 0,
            retain: 1,
            store: "memory://".into(),
            savepoints: defaults::savepoints(),
        }
    }
}

/// `[restart]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    /// Default `fixed-delay` (with no `[restart]` section: `fixed-delay`
    /// when checkpointing, else `none`).
    #[serde(default = "defaults::strategy")]
    pub strategy: RestartStrategyKind,
    /// Restarts allowed before the job fails. Default 3.
    #[serde(default = "defaults::attempts")]
    pub attempts: u32,
    /// Wait before a restart (the first one, for exponential backoff). Default `"1s"`.
    #[serde(default = "defaults::delay", with = "humantime_serde")]
    pub delay: Duration,
    /// Cap on the exponential backoff. Default `"1m"`.
    #[serde(default = "defaults::max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
}

/// Restart strategies.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategyKind {
    /// Wait `delay` before each restart.
    FixedDelay,
    /// Wait `delay`, then twice that, …, at most `max_delay`.
    ExponentialBackoff,
    /// Fail at the first failure.
    None,
}

impl std::fmt::Display for RestartStrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FixedDelay => "fixed-delay",
            Self::ExponentialBackoff => "exponential-backoff",
            Self::None => "none",
        })
    }
}

mod defaults {
    use std::time::Duration;

    pub fn strategy() -> super::RestartStrategyKind {
        super::RestartStrategyKind::FixedDelay
    }

    pub fn timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn one() -> u32 {
        1
    }
    pub fn savepoints() -> String {
        "savepoints".into()
    }
    pub fn retain() -> u32 {
        3
    }
    pub fn store() -> String {
        "file://checkpoints".into()
    }
    pub fn attempts() -> u32 {
        3
    }
    pub fn delay() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_delay() -> Duration {
        Duration::from_secs(60)
    }
}

/// A `[sources.ID]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Lines of a text file, or of every file in a directory.
    File {
        /// File or directory, relative to the job file.
        path: PathBuf,
        /// Parallel readers; files are split between them. Default 1.
        parallelism: Option<u32>,
        /// Lines per second in total; as fast as possible if absent.
        rate: Option<f64>,
        /// Each record's key, read from its text.
        key: Option<FieldSpec>,
        /// Each record's event time, read from its text.
        timestamp: Option<FieldSpec>,
        /// A record whose key or timestamp cannot be read. Default `fail`.
        on_bad_record: Option<OnBadRecord>,
        /// Event-time watermarks from the records' timestamps.
        watermark: Option<WatermarkSpec>,
    },
    /// A deterministic sequence of records.
    Generator(GeneratorSpec),
    /// Records of Kafka topics (see `connectors::kafka`).
    Kafka(KafkaSourceSpec),
}

/// A `kafka` source's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// A topic name or a list of names (or use `topic_pattern`).
    pub topic: Option<Inputs>,
    /// A regular expression; every matching topic is read (new ones too).
    pub topic_pattern: Option<String>,
    /// Consumer group offsets are committed to (for monitoring; recovery
    /// uses the checkpoint). Default `weir-<job>-<source id>`.
    pub group_id: Option<String>,
    /// Where a fresh start (no checkpoint or savepoint) begins. Default `earliest`.
    #[serde(default)]
    pub start: KafkaStart,
    /// `"latest"`: read up to the end offsets found at the first start, then finish.
    pub stop: Option<KafkaStop>,
    /// Parallel readers; partitions are spread over them. Default 1.
    pub parallelism: Option<u32>,
    /// Records per second in total; as fast as possible if absent.
    pub rate: Option<f64>,
    /// Each record's key, read from its value (else the Kafka key).
    pub key: Option<FieldSpec>,
    /// Each record's event time, read from its value (else the Kafka timestamp).
    pub timestamp: Option<FieldSpec>,
    /// A record whose key or timestamp cannot be read. Default `fail`.
    pub on_bad_record: Option<OnBadRecord>,
    /// Event-time watermarks from the records' timestamps.
    pub watermark: Option<WatermarkSpec>,
    /// How often to look for new partitions (and topics matching
    /// `topic_pattern`); `"0"` turns it off. Default `"10s"`.
    #[serde(default, with = "humantime_serde::option")]
    pub partition_discovery: Option<Duration>,
    /// Longest wait for the brokers when starting (metadata, offsets). Default `"10s"`.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Extra librdkafka client properties (TLS, SASL, …), passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
}

/// Where a `kafka` source starts without restored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaStart {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// After the newest record at start.
    Latest,
    /// The consumer group's committed offset (earliest where there is none).
    Committed,
    /// The first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

impl<'de> Deserialize<'de> for KafkaStart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            At { timestamp_ms: i64 },
        }
        match Raw::deserialize(d) {
            Ok(Raw::Name(n)) => match n.as_str() {
                "earliest" => Ok(Self::Earliest),
                "latest" => Ok(Self::Latest),
                "committed" => Ok(Self::Committed),
                other => Err(serde::de::Error::custom(format!(
                    "start = {other:?}: use \"earliest\", \"latest\", \"committed\" or {{ timestamp_ms = N }}"
                ))),
            },
            Ok(Raw::At { timestamp_ms }) => Ok(Self::Timestamp(timestamp_ms)),
            Err(_) => Err(serde::de::Error::custom(
                "start: use \"earliest\", \"latest\", \"committed\" or { timestamp_ms = N }",
            )),
        }
    }
}

/// When a `kafka` source finishes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaStop {
    /// At the end offsets found when the job first started (a bounded read).
    Latest,
}

/// A `kafka` sink's delivery guarantee.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaDelivery {
    /// Each checkpoint's records are published once it completes, and a
    /// restore publishes exactly the ones Kafka does not have yet.
    #[default]
    ExactlyOnce,
    /// Flushed at every checkpoint; a failure may repeat records written
    /// since the last completed checkpoint.
    AtLeastOnce,
}

/// Where a key or timestamp is in a record's text: exactly one of `json`,
/// `csv` and `regex`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// A field of a JSON object (`a.b` for nested objects).
    pub json: Option<String>,
    /// A column (0-based) of separated text, without quoting.
    pub csv: Option<usize>,
    /// The column separator for `csv`. Default `,`.
    pub separator: Option<char>,
    /// A regex: its first capture group (the whole match without one).
    pub regex: Option<String>,
    /// For timestamps: how the text is written. Default `epoch-ms`.
    pub format: Option<TimeFormat>,
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TimeFormat {
    /// Milliseconds since the Unix epoch.
    #[default]
    EpochMs,
    /// Seconds since the Unix epoch (fractions allowed).
    EpochS,
    /// RFC 3339 in UTC, e.g. `2026-11-25T10:00:00Z` (or without the `Z`).
    Rfc3339,
}

impl TimeFormat {
    /// The name used in job files.
    pub fn name(self) -> &'static str {
        match self {
            Self::EpochMs => "epoch-ms",
            Self::EpochS => "epoch-s",
            Self::Rfc3339 => "rfc3339",
        }
    }
}

/// What a source does with a record whose key or timestamp cannot be read.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadRecord {
    /// Fail the job, naming the record.
    #[default]
    Fail,
    /// Drop it, counted (and logged once).
    Skip,
    /// Send it on unchanged, counted, to the source's side output `errors`
    /// (read it with `input = "<source>.errors"`).
    SideOutput,
}

impl SourceSpec {
    /// The watermark strategy, whatever the kind.
    pub fn watermark(&self) -> Option<WatermarkSpec> {
        match self {
            Self::File { watermark, .. } => *watermark,
            Self::Generator(g) => g.watermark,
            Self::Kafka(k) => k.watermark,
        }
    }

    /// `key`, `timestamp` and `on_bad_record`, whatever the kind.
    pub fn extraction(&self) -> (Option<&FieldSpec>, Option<&FieldSpec>, Option<OnBadRecord>) {
        match self {
            Self::File { key, timestamp, on_bad_record, .. } => (key.as_ref(), timestamp.as_ref(), *on_bad_record),
            Self::Generator(g) => (g.key.as_ref(), g.timestamp.as_ref(), g.on_bad_record),
            Self::Kafka(k) => (k.key.as_ref(), k.timestamp.as_ref(), k.on_bad_record),
        }
    }
}

/// A generator source's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSpec {
    /// Number of records to emit in total; unbounded if absent.
    pub count: Option<u64>,
    /// Records per second in total; as fast as possible if absent.
    pub rate: Option<f64>,
    /// What each record holds. Default `sequence`.
    #[serde(default)]
    pub format: GeneratorFormat,
    /// Vocabulary size for `words`. Default 1000.
    pub vocabulary: Option<u32>,
    /// Words per line for `words`. Default 8.
    pub words_per_line: Option<u32>,
    /// Seed for `words`. Default 0.
    pub seed: Option<u64>,
    /// Parallel generators; they split the sequence. Default 1.
    pub parallelism: Option<u32>,
    /// Each record's key, read from its text.
    pub key: Option<FieldSpec>,
    /// Each record's event time, read from its text.
    pub timestamp: Option<FieldSpec>,
    /// A record whose key or timestamp cannot be read. Default `fail`.
    pub on_bad_record: Option<OnBadRecord>,
    /// Event-time watermarks from the records' timestamps.
    pub watermark: Option<WatermarkSpec>,
    /// `events`: event time of record 0 (ms since the epoch). Default
    /// 1 700 000 000 000 (November 2023).
    pub start_ms: Option<i64>,
    /// `events`: event time between consecutive records, in ms. Default 1.
    pub step_ms: Option<i64>,
    /// `events`: each record's timestamp is moved back by up to this many
    /// ms (seeded, so the same every run): out-of-order input. Default 0.
    pub disorder_ms: Option<i64>,
}

/// How a source turns its records' timestamps into watermarks (Flink's
/// bounded out-of-orderness with idleness): `watermark = {
/// max_out_of_orderness = "5s", idle_timeout = "30s" }`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// How far behind the largest timestamp read a record may be and still
    /// be on time: the watermark is that largest timestamp less this, less 1 ms.
    #[serde(with = "humantime_serde")]
    pub max_out_of_orderness: Duration,
    /// A source subtask that reads nothing for this long (processing time)
    /// stops holding back event time downstream until it reads again.
    #[serde(default, with = "humantime_serde::option")]
    pub idle_timeout: Option<Duration>,
    /// Least processing time between two watermarks of a source subtask
    /// (Flink's auto-watermark interval). Default `"200ms"`; `"0s"` sends
    /// one after every batch that moves it, so which records are late
    /// depends on the input and its batching only, not on timing.
    #[serde(default, with = "humantime_serde::option")]
    pub interval: Option<Duration>,
}

/// What a generator emits.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorFormat {
    /// Record `n` is the decimal text of `n`.
    #[default]
    Sequence,
    /// Record `n` is a line of words drawn (Zipf-like) from `w0 … wN`,
    /// determined by `seed` and `n` alone.
    Words,
    /// Record `n` is an event `{"key":"k<rank>","ts":<ms>,"n":<n>}` keyed by
    /// `k<rank>` (Zipf-like over `vocabulary`), with event time `ts` =
    /// `start_ms + n × step_ms`, less a seeded disorder of up to `disorder_ms`.
    Events,
}

/// An `[operators.ID]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    /// Path of the operator's `.wasm` component, relative to the job file.
    pub wasm: Option<PathBuf>,
    /// Name of a built-in operator (`tokenize`, `count`, …), instead of `wasm`.
    pub builtin: Option<String>,
    /// Id(s) of the upstream source(s)/operator(s).
    pub input: Inputs,
    /// Number of parallel instances. Default 1.
    pub parallelism: Option<u32>,
    /// How the input is spread over instances. Default `forward` when the
    /// upstream parallelism is equal, else `rebalance`.
    pub partition: Option<Partition>,
    /// Local pre-aggregation before the keyed exchange (Flink's local–global
    /// aggregation): a second instance of the operator in each upstream
    /// subtask folds records into one partial per key and sends the partials
    /// every 100 ms and before each watermark, barrier and idle marker. The
    /// operator must implement `weir_sdk::Combine`, and read a
    /// `partition = "key"` edge.
    #[serde(default)]
    pub pre_aggregate: bool,
    /// Handed to the operator's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

/// A `[sinks.ID]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// What kind of sink.
    pub kind: SinkKind,
    /// Output directory (file sink), relative to the job file.
    pub path: Option<PathBuf>,
    /// Id(s) of the upstream source(s)/operator(s).
    pub input: Inputs,
    /// Number of parallel writers. Default 1.
    pub parallelism: Option<u32>,
    /// As for operators.
    pub partition: Option<Partition>,
    /// Kafka sink: bootstrap servers.
    pub brokers: Option<String>,
    /// Kafka sink: the topic written.
    pub topic: Option<String>,
    /// Kafka sink: `exactly-once` (default) or `at-least-once`.
    pub delivery: Option<KafkaDelivery>,
    /// Kafka sink: prefix of the writer ids that tag its records
    /// (`<prefix>-<job>-<sink id>-<subtask>`). Default `weir`.
    pub writer_id_prefix: Option<String>,
    /// Kafka sink: longest wait for the brokers at start and for a flush
    /// or commit. Default `"30s"`.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Kafka sink: extra librdkafka client properties, passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
}

/// Sink kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// One line per record in part files under `path`.
    File,
    /// One line per record on standard output.
    Stdout,
    /// Counts records and drops them (benchmarks, dry runs).
    Discard,
    /// Records of a Kafka topic, exactly-once by default.
    Kafka,
}

/// One input id or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    /// `input = "a"`.
    One(String),
    /// `input = ["a", "b"]`.
    Many(Vec<String>),
}

impl Inputs {
    /// The ids as a slice.
    pub fn ids(&self) -> &[String] {
        match self {
            Inputs::One(id) => std::slice::from_ref(id),
            Inputs::Many(ids) => ids,
        }
    }
}

/// How records are spread over the instances of the consuming node.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Partition {
    /// Instance `i` feeds instance `i` (equal parallelism only).
    Forward,
    /// By key group of the record key (by value for records without a key).
    Key,
    /// Round-robin over instances.
    Rebalance,
    /// Every record to every instance.
    Broadcast,
}

/// Sizes like `"512MiB"` or plain byte counts.
mod bytes {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(s) => s
                .parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| serde::de::Error::custom(format!("invalid size {s:?} ({e}); write e.g. \"512MiB\""))),
        }
    }
}

/// Durations like `"500ms"` or `"5s"`.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "0" {
            return Ok(Duration::ZERO);
        }
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?} ({e}); write e.g. \"500ms\" or \"5s\""))
        })
    }

    /// For optional durations (`#[serde(default, with = "humantime_serde::option")]`).
    pub mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}
