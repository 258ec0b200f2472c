//! Planning: checks a [`JobSpec`]'s cross-references and turns it into a
//! [`JobPlan`] — nodes in topological order with resolved paths, edges with
//! their partitioning. Pure: the only I/O is checking that files exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec::{
    CheckpointSpec, GeneratorSpec, JobSpec, LimitsSpec, OnBadRecord, Partition, RestartSpec, RestartStrategyKind,
    SinkKind, SourceSpec, WatermarkSpec,
};
use crate::Error;
use crate::connectors::extract::{ERRORS, Extractor};
use crate::connectors::kafka::{self, KafkaSinkConfig, KafkaSourceConfig};

/// A validated job, ready to run.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// Job name.
    pub name: String,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Records per batch.
    pub batch_size: usize,
    /// Whether [`JobPlan::chains`] may fuse nodes (`[job] chaining`).
    pub chaining: bool,
    /// Guest limits.
    pub limits: LimitsSpec,
    /// Checkpointing, if enabled.
    pub checkpoint: Option<CheckpointSpec>,
    /// What to do when a task fails.
    pub restart: RestartSpec,
    /// The job file's directory: relative store URLs are resolved against it.
    pub base_dir: PathBuf,
    /// Nodes in topological order: every edge points to an earlier node.
    pub nodes: Vec<Node>,
}

/// A source, operator or sink, with its parallelism and inputs.
#[derive(Debug, Clone)]
pub struct Node {
    /// Stable id from the job file.
    pub id: String,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// What the node does.
    pub kind: NodeKind,
    /// Incoming edges.
    pub inputs: Vec<Edge>,
    /// Sources: keys and timestamps read from the records, if asked for.
    pub extract: Option<Extractor>,
    /// Sources: how watermarks are made, if asked for.
    pub watermark: Option<WatermarkSpec>,
}

/// An edge from an earlier node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Index of the upstream node in [`JobPlan::nodes`].
    pub from: usize,
    /// How records are spread over this node's subtasks.
    pub partition: Partition,
    /// The upstream's side output this edge reads (`input = "window.late"`),
    /// or `None` for its main output.
    pub output: Option<String>,
}

/// The node id and side output an `input = "…"` names: `"window"` is the
/// main output of `window`, `"window.late"` its side output `late` (when
/// no node is called `window.late`). `exists` says which ids are nodes.
pub fn split_input(input: &str, exists: impl Fn(&str) -> bool) -> (&str, Option<&str>) {
    if exists(input) {
        return (input, None);
    }
    match input.split_once('.') {
        Some((id, output)) if exists(id) && !output.is_empty() => (id, Some(output)),
        _ => (input, None),
    }
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Lines of files.
    FileSource {
        /// A file or a directory.
        path: PathBuf,
        /// Lines per second in total, if limited.
        rate: Option<f64>,
    },
    /// Generated records.
    Generator(Box<GeneratorSpec>),
    /// Records of Kafka topics.
    KafkaSource(Arc<KafkaSourceConfig>),
    /// A Wasm operator.
    Operator {
        /// The `.wasm` component.
        module: PathBuf,
        /// The `config` table as JSON.
        config_json: String,
    },
    /// Files of lines.
    FileSink {
        /// Output directory.
        path: PathBuf,
    },
    /// Standard output.
    StdoutSink,
    /// Drops records (counting them).
    DiscardSink,
    /// A Kafka topic.
    KafkaSink(Arc<KafkaSinkConfig>),
}

impl NodeKind {
    /// `source`, `operator` or `sink`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::FileSource { .. } | Self::Generator(_) | Self::KafkaSource(_) => "source",
            Self::Operator { .. } => "operator",
            Self::FileSink { .. } | Self::StdoutSink | Self::DiscardSink | Self::KafkaSink(_) => "sink",
        }
    }
}

impl JobPlan {
    /// The plan's tasks: each a chain of node indices, in plan order, that
    /// one thread per subtask runs. Node `b` joins the chain of `a` when `a`
    /// is an operator whose only consumer is `b`, and `b` (an operator or a
    /// sink) reads only `a`, forward (so with the same parallelism). Records
    /// then pass from `a` to `b` as a call, not through a channel. Sources
    /// are never chained: reading input overlaps with processing it.
    /// Without `[job] chaining`, every node is a chain of its own.
    pub fn chains(&self) -> Vec<Vec<usize>> {
        let mut consumers = vec![0usize; self.nodes.len()];
        for node in &self.nodes {
            for edge in &node.inputs {
                consumers[edge.from] += 1;
            }
        }
        let mut chain_of: Vec<usize> = Vec::with_capacity(self.nodes.len());
        let mut chains: Vec<Vec<usize>> = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let joins = match node.inputs.as_slice() {
                [edge]
                    if self.chaining
                        && edge.partition == Partition::Forward
                        && edge.output.is_none()
                        && consumers[edge.from] == 1 =>
                {
                    let up = &self.nodes[edge.from];
                    matches!(up.kind, NodeKind::Operator { .. }) && node.kind.label() != "source"
                }
                _ => false,
            };
            if joins {
                let c = chain_of[node.inputs[0].from];
                chains[c].push(n);
                chain_of.push(c);
            } else {
                chain_of.push(chains.len());
                chains.push(vec![n]);
            }
        }
        chains
    }
}

/// Where `builtin = "NAME"` operators are looked up, in order.
#[derive(Debug, Clone, Default)]
pub struct BuiltinDirs(pub Vec<PathBuf>);

impl BuiltinDirs {
    /// `$WEIR_OPERATORS_DIR` (colon-separated), then `operators/` next to the
    /// `weir` executable, then the build output of a source checkout
    /// (`target/wasm32-wasip2/release`, seen from `target/<profile>/weir`).
    pub fn from_env() -> Self {
        let mut dirs: Vec<PathBuf> =
            std::env::var_os("WEIR_OPERATORS_DIR").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
        if let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            dirs.push(exe_dir.join("operators"));
            dirs.push(exe_dir.join("../wasm32-wasip2/release"));
        }
        Self(dirs)
    }

    fn find(&self, name: &str) -> Result<PathBuf, String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("`{name}` is not a built-in operator name"));
        }
        let file = format!("{}.wasm", name.replace('-', "_"));
        let found = self.0.iter().map(|d| d.join(&file)).find(|p| p.is_file());
        found.map(|p| p.canonicalize().unwrap_or(p)).ok_or_else(|| {
            let looked: Vec<_> = self.0.iter().map(|d| d.display().to_string()).collect();
            format!(
                "built-in operator `{name}` not found (looked for {file} in: {}); run the setup command from the README, or set WEIR_OPERATORS_DIR",
                looked.join(", ")
            )
        })
    }
}

/// Validates `spec` and plans it. Relative paths are resolved against `base_dir`
/// (the job file's directory).
///
/// # Errors
/// [`Error::InvalidJob`] naming the offending table and what to do.
pub fn plan(spec: &JobSpec, name: &str, base_dir: &Path, builtins: &BuiltinDirs) -> Result<JobPlan, Error> {
    let invalid = Error::InvalidJob;
    super::ranges::check(spec, spec.job.name.as_deref().unwrap_or(name))?;
    let max_parallelism = spec.job.max_parallelism.unwrap_or(weir_sdk::keygroup::DEFAULT_MAX_PARALLELISM);
    if !(1..=32768).contains(&max_parallelism) {
        return Err(invalid(format!("[job] max_parallelism = {max_parallelism}: must be between 1 and 32768")));
    }
    let batch_size = spec.job.batch_size.unwrap_or(1024);
    if batch_size == 0 {
        return Err(invalid("[job] batch_size must be at least 1".into()));
    }
    if spec.sources.is_empty() {
        return Err(invalid("the job has no sources: add a [sources.ID] table".into()));
    }
    if spec.sinks.is_empty() {
        return Err(invalid("the job has no sinks: add a [sinks.ID] table (kind = \"stdout\" or \"file\")".into()));
    }
    let job_name = spec.job.name.clone().unwrap_or_else(|| name.to_owned());
    let drafts = drafts(spec, &job_name, base_dir, builtins)?;
    if let Some(d) = drafts.iter().find(|d| d.id.ends_with(LOCAL_SUFFIX)) {
        return Err(invalid(format!(
            "[{}.{}] ids ending in `{LOCAL_SUFFIX}` are Weir's own (the local instance of a pre-aggregated \
             operator); rename it",
            d.section, d.id
        )));
    }
    let order = topological_order(&drafts)?;
    // Node index of each draft: a pre-aggregated operator adds a node in front of it.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut nodes: Vec<Node> = Vec::with_capacity(order.len());
    for d in &order {
        let parallelism = d.parallelism.unwrap_or(1);
        if parallelism == 0 || parallelism > max_parallelism {
            return Err(invalid(format!(
                "[{}.{}] parallelism = {parallelism}: must be between 1 and max_parallelism ({max_parallelism})",
                d.section, d.id
            )));
        }
        let mut inputs = Vec::new();
        for input in &d.inputs {
            let (id, output) = split_input(input, |id| order.iter().any(|d| d.id == id));
            let from = index[id];
            let up: &Node = &nodes[from];
            let partition = d.partition.unwrap_or(if up.parallelism == parallelism {
                Partition::Forward
            } else {
                Partition::Rebalance
            });
            if partition == Partition::Forward && up.parallelism != parallelism {
                return Err(invalid(format!(
                    "[{}.{}] partition = \"forward\" needs equal parallelism, but `{input}` has {} and `{}` has {parallelism}; use \"rebalance\" or \"key\"",
                    d.section, d.id, up.parallelism, d.id
                )));
            }
            if d.keyed_builtin && parallelism > 1 && partition != Partition::Key {
                return Err(invalid(format!(
                    "[{}.{}] keeps state per key, so with parallelism {parallelism} it needs partition = \"key\" \
                     (each key's records must meet in one subtask; otherwise windows are split and fire more than once)",
                    d.section, d.id
                )));
            }
            inputs.push(Edge { from, partition, output: output.map(str::to_owned) });
        }
        let mut kind = d.kind.clone();
        if d.pre_aggregate {
            let local = pre_aggregate(d, &mut kind, &mut inputs, &nodes)?;
            nodes.push(local);
        }
        index.insert(&d.id, nodes.len());
        nodes.push(Node {
            id: d.id.clone(),
            parallelism,
            kind,
            inputs,
            extract: d.extract.clone(),
            watermark: d.watermark,
        });
    }
    if let Some(c) = &spec.checkpoint {
        if c.interval.is_zero() || c.max_concurrent == 0 || c.timeout.is_zero() {
            return Err(invalid("[checkpoint] interval, timeout and max_concurrent must be positive".into()));
        }
        // `faulty+` wraps any of them in the test-only fault injector.
        let store = c.store.strip_prefix("faulty+").unwrap_or(&c.store);
        if !["file://", "memory:", "s3://"].iter().any(|scheme| store.starts_with(scheme)) {
            return Err(invalid(format!(
                "[checkpoint] store `{}` is not supported: use file://DIR, memory:// or s3://bucket/prefix",
                c.store
            )));
        }
    }
    if spec.checkpoint.is_none()
        && let Some(sink) = nodes.iter().find(
            |n| matches!(&n.kind, NodeKind::KafkaSink(k) if k.delivery == super::spec::KafkaDelivery::ExactlyOnce),
        )
    {
        return Err(invalid(format!(
            "[sinks.{}] an exactly-once kafka sink publishes what each checkpoint covers once it completes, and \
             holds it in memory until then: add a [checkpoint] section (its interval bounds that memory), or set \
             delivery = \"at-least-once\"",
            sink.id
        )));
    }
    let restart = spec.restart.clone().unwrap_or(RestartSpec {
        strategy: if spec.checkpoint.is_some() { RestartStrategyKind::FixedDelay } else { RestartStrategyKind::None },
        attempts: 3,
        delay: std::time::Duration::from_secs(1),
        max_delay: std::time::Duration::from_secs(60),
    });
    Ok(JobPlan {
        name: job_name,
        max_parallelism,
        batch_size,
        chaining: spec.job.chaining.unwrap_or(true),
        limits: spec.limits.clone(),
        checkpoint: spec.checkpoint.clone(),
        restart,
        base_dir: base_dir.to_path_buf(),
        nodes,
    })
}

/// For a pre-aggregated operator `d` (of `kind`, reading `inputs`): the
/// local node that goes in front of its keyed edge, with the upstream's
/// parallelism (so it chains onto the upstream operator). `kind` and
/// `inputs` become the global instance's: it reads the local node by key.
fn pre_aggregate(d: &Draft, kind: &mut NodeKind, inputs: &mut [Edge], nodes: &[Node]) -> Result<Node, Error> {
    let invalid = |why: &str| {
        Error::InvalidJob(format!(
            "[{}.{}] pre_aggregate = true {why}: it combines records of a key before a keyed exchange; set \
             partition = \"key\" on one input, or remove pre_aggregate",
            d.section, d.id
        ))
    };
    let NodeKind::Operator { module, config_json } = kind else {
        return Err(invalid("is for operators"));
    };
    let [edge] = inputs else {
        return Err(Error::InvalidJob(format!(
            "[{}.{}] pre_aggregate = true needs exactly one input (it has {}); remove pre_aggregate, or merge \
             the inputs in an operator before it",
            d.section,
            d.id,
            inputs.len()
        )));
    };
    if edge.partition != Partition::Key {
        return Err(invalid("needs a `partition = \"key\"` input"));
    }
    let with_role = |role: &str| {
        let mut table: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(config_json).expect("a config is a JSON object");
        table.insert(PRE_AGGREGATE_ROLE.into(), role.into());
        serde_json::Value::Object(table).to_string()
    };
    let up = &nodes[edge.from];
    let local = Node {
        id: format!("{}{LOCAL_SUFFIX}", d.id),
        parallelism: up.parallelism,
        kind: NodeKind::Operator { module: module.clone(), config_json: with_role("local") },
        inputs: vec![Edge { from: edge.from, partition: Partition::Forward, output: edge.output.take() }],
        extract: None,
        watermark: None,
    };
    *config_json = with_role("global");
    edge.from = nodes.len();
    Ok(local)
}

/// The config key that tells the two instances of a pre-aggregated operator
/// which they are (the SDK's `weir.pre_aggregate`).
pub const PRE_AGGREGATE_ROLE: &str = "weir.pre_aggregate";

/// The id of a pre-aggregated operator's local instance is its own plus
/// this; a job file's ids may not end in it, so it never clashes with one
/// and a savepoint's `*.local` node is always such an instance (stateless).
pub const LOCAL_SUFFIX: &str = ".local";

/// The pre-aggregation role (`"local"` or `"global"`) set in an operator's
/// config JSON by [`pre_aggregate`], if any.
pub fn pre_aggregate_role(config_json: &str) -> Option<String> {
    let table: serde_json::Map<String, serde_json::Value> = serde_json::from_str(config_json).ok()?;
    table.get(PRE_AGGREGATE_ROLE)?.as_str().map(str::to_owned)
}

impl Node {
    /// Whether this is the local instance of a pre-aggregated operator: it
    /// holds no state at any checkpoint.
    pub fn is_local_instance(&self) -> bool {
        matches!(&self.kind, NodeKind::Operator { config_json, .. }
            if pre_aggregate_role(config_json).as_deref() == Some("local"))
    }
}

/// A node before ordering.
struct Draft {
    section: &'static str,
    id: String,
    parallelism: Option<u32>,
    partition: Option<Partition>,
    inputs: Vec<String>,
    kind: NodeKind,
    extract: Option<Extractor>,
    watermark: Option<WatermarkSpec>,
    /// The side outputs it can have, when known (a source's); `None` for
    /// an operator, whose guest decides.
    side_outputs: Option<Vec<&'static str>>,
    /// A built-in that keeps per-key state and must run behind `partition = "key"`.
    keyed_builtin: bool,
    /// `pre_aggregate = true`: a local instance goes in front of its keyed edge.
    pre_aggregate: bool,
}

fn drafts(spec: &JobSpec, job: &str, base: &Path, builtins: &BuiltinDirs) -> Result<Vec<Draft>, Error> {
    let mut out = Vec::new();
    for (id, s) in &spec.sources {
        let (key, timestamp, on_bad) = s.extraction();
        let extract =
            Extractor::new(id, key, timestamp, on_bad).map_err(|e| Error::InvalidJob(format!("[sources.{id}] {e}")))?;
        let (kind, parallelism) = match s {
            SourceSpec::File { path, parallelism, rate, .. } => {
                let path = base.join(path);
                if !path.exists() {
                    return Err(Error::InvalidJob(format!("[sources.{id}] path {} does not exist", path.display())));
                }
                (NodeKind::FileSource { path, rate: *rate }, *parallelism)
            }
            SourceSpec::Generator(g) => (NodeKind::Generator(Box::new(g.clone())), g.parallelism),
            SourceSpec::Kafka(k) => {
                let cfg =
                    kafka::source_config(id, job, k).map_err(|e| Error::InvalidJob(format!("[sources.{id}] {e}")))?;
                (NodeKind::KafkaSource(Arc::new(cfg)), k.parallelism)
            }
        };
        let inputs = vec![];
        let watermark = s.watermark();
        if let Some(idle) = watermark.and_then(|w| w.idle_timeout)
            && idle < std::time::Duration::from_millis(1)
        {
            return Err(Error::InvalidJob(format!(
                "[sources.{id}] watermark idle_timeout = {idle:?} is under 1 ms: every input would be idle at \
                 once and event time would never advance; set it to how long a quiet input may hold event time \
                 back (e.g. \"30s\"), or leave it out"
            )));
        }
        let side_outputs =
            Some(if s.extraction().2 == Some(OnBadRecord::SideOutput) { vec![ERRORS] } else { Vec::new() });
        out.push(Draft {
            side_outputs,
            keyed_builtin: false,
            pre_aggregate: false,
            section: "sources",
            id: id.clone(),
            parallelism,
            partition: None,
            inputs,
            kind,
            extract,
            watermark,
        });
    }
    for (id, o) in &spec.operators {
        let module = match (&o.wasm, &o.builtin) {
            (Some(wasm), None) => {
                let path = base.join(wasm);
                if !path.is_file() {
                    return Err(Error::InvalidJob(format!(
                        "[operators.{id}] wasm = {}: no such file; build the operator (`weir build`) or fix the path",
                        path.display()
                    )));
                }
                path
            }
            (None, Some(name)) => {
                builtins.find(name).map_err(|e| Error::InvalidJob(format!("[operators.{id}] {e}")))?
            }
            _ => {
                return Err(Error::InvalidJob(format!(
                    "[operators.{id}] set exactly one of `wasm = \"path/to/op.wasm\"` or `builtin = \"NAME\"`"
                )));
            }
        };
        if let Some(reserved) = o.config.keys().find(|k| k.starts_with("weir.")) {
            return Err(Error::InvalidJob(format!(
                "[operators.{id}] config key `{reserved}`: keys starting with `weir.` are Weir's own; rename it"
            )));
        }
        let config_json = serde_json::to_string(&o.config).expect("a TOML table is valid JSON");
        let kind = NodeKind::Operator { module, config_json };
        let inputs = o.input.ids().to_vec();
        out.push(Draft {
            extract: None,
            watermark: None,
            side_outputs: None,
            keyed_builtin: o.builtin.as_deref() == Some("window"),
            pre_aggregate: o.pre_aggregate,
            section: "operators",
            id: id.clone(),
            parallelism: o.parallelism,
            partition: o.partition,
            inputs,
            kind,
        });
    }
    for (id, s) in &spec.sinks {
        let kafka_only = [
            ("brokers", s.brokers.is_some()),
            ("topic", s.topic.is_some()),
            ("delivery", s.delivery.is_some()),
            ("writer_id_prefix", s.writer_id_prefix.is_some()),
            ("timeout", s.timeout.is_some()),
            ("properties", !s.properties.is_empty()),
        ];
        if s.kind != SinkKind::Kafka
            && let Some((key, _)) = kafka_only.iter().find(|(_, set)| *set)
        {
            return Err(Error::InvalidJob(format!("[sinks.{id}] only a kafka sink takes `{key}`")));
        }
        let kind = match (s.kind, &s.path) {
            (SinkKind::Kafka, None) => NodeKind::KafkaSink(Arc::new(
                kafka::sink_config(id, job, s).map_err(|e| Error::InvalidJob(format!("[sinks.{id}] {e}")))?,
            )),
            (SinkKind::File, Some(path)) => NodeKind::FileSink { path: base.join(path) },
            (SinkKind::File, None) => {
                return Err(Error::InvalidJob(format!("[sinks.{id}] a file sink needs `path` (its output directory)")));
            }
            (SinkKind::Stdout, None) => NodeKind::StdoutSink,
            (SinkKind::Discard, None) => NodeKind::DiscardSink,
            (SinkKind::Stdout | SinkKind::Discard | SinkKind::Kafka, Some(_)) => {
                return Err(Error::InvalidJob(format!("[sinks.{id}] only a file sink takes a `path`")));
            }
        };
        let inputs = s.input.ids().to_vec();
        out.push(Draft {
            extract: None,
            watermark: None,
            side_outputs: Some(Vec::new()),
            keyed_builtin: false,
            pre_aggregate: false,
            section: "sinks",
            id: id.clone(),
            parallelism: s.parallelism,
            partition: s.partition,
            inputs,
            kind,
        });
    }
    check_references(&out)?;
    Ok(out)
}

fn check_references(drafts: &[Draft]) -> Result<(), Error> {
    let mut sections: BTreeMap<&str, &str> = BTreeMap::new();
    for d in drafts {
        if let Some(other) = sections.insert(&d.id, d.section) {
            return Err(Error::InvalidJob(format!(
                "id `{}` is used by both [{other}.{0}] and [{}.{0}]; ids must be unique across sources, operators and sinks",
                d.id, d.section
            )));
        }
    }
    for d in drafts {
        if d.section != "sources" && d.inputs.is_empty() {
            return Err(Error::InvalidJob(format!("[{}.{}] has no input", d.section, d.id)));
        }
        for input in &d.inputs {
            let (id, output) = split_input(input, |id| sections.contains_key(id));
            if let Some(output) = output
                && output.len() > 255
            {
                return Err(Error::InvalidJob(format!(
                    "[{}.{}] input `{input}`: a side output's name is at most 255 bytes",
                    d.section, d.id
                )));
            }
            if let (Some(output), Some(known)) =
                (output, drafts.iter().find(|u| u.id == id).and_then(|u| u.side_outputs.as_ref()))
                && !known.contains(&output)
            {
                let hint = if output == ERRORS {
                    format!(" (a source has one with on_bad_record = \"side-output\" in [sources.{id}])")
                } else if known.is_empty() {
                    String::new()
                } else {
                    format!(" (it has: {})", known.join(", "))
                };
                return Err(Error::InvalidJob(format!(
                    "[{}.{}] input `{input}`: `{id}` has no side output `{output}`{hint}",
                    d.section, d.id
                )));
            }
            match sections.get(id) {
                None => {
                    let known: Vec<_> = drafts.iter().filter(|d| d.section != "sinks").map(|d| d.id.as_str()).collect();
                    return Err(Error::InvalidJob(format!(
                        "[{}.{}] input `{input}` does not exist; known sources and operators: {}",
                        d.section,
                        d.id,
                        known.join(", ")
                    )));
                }
                Some(&"sinks") => {
                    return Err(Error::InvalidJob(format!(
                        "[{}.{}] input `{input}` is a sink; sinks have no output",
                        d.section, d.id
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Kahn's algorithm; what is left over lies on or behind a cycle.
fn topological_order(drafts: &[Draft]) -> Result<Vec<&Draft>, Error> {
    let mut pending: BTreeMap<&str, &Draft> = drafts.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let ids: BTreeSet<&str> = drafts.iter().map(|d| d.id.as_str()).collect();
    let mut order = Vec::with_capacity(drafts.len());
    loop {
        let ready: Vec<&str> = pending
            .values()
            .filter(|d| d.inputs.iter().all(|i| placed.contains(split_input(i, |id| ids.contains(id)).0)))
            .map(|d| d.id.as_str())
            .collect();
        if ready.is_empty() {
            break;
        }
        for id in ready {
            order.push(pending.remove(id).expect("ready ids are pending"));
            placed.insert(id);
        }
    }
    if pending.is_empty() {
        return Ok(order);
    }
    let stuck: Vec<String> = pending.values().map(|d| format!("{}.{}", d.section, d.id)).collect();
    Err(Error::InvalidJob(format!(
        "the dataflow has a cycle through {}; break it, dataflows must be acyclic",
        stuck.join(" → ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::load::parse;

    fn plan_text(text: &str) -> Result<JobPlan, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "a b\n").unwrap();
        std::fs::write(dir.path().join("op.wasm"), b"\0asm").unwrap();
        let spec = parse(text, &[]).map_err(|e| e.to_string())?;
        plan(&spec, "test", dir.path(), &BuiltinDirs(vec![dir.path().to_path_buf()])).map_err(|e| e.to_string())
    }

    const BASE: &str = r#"
[sources.lines]
kind = "file"
path = "in.txt"
[operators.a]
wasm = "op.wasm"
input = "lines"
parallelism = 2
[operators.b]
wasm = "op.wasm"
input = "a"
partition = "key"
parallelism = 3
[sinks.out]
kind = "stdout"
input = ["b", "a"]
"#;

    #[test]
    fn orders_nodes_and_picks_default_partitions() {
        let p = plan_text(BASE).unwrap();
        let ids: Vec<_> = p.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["lines", "a", "b", "out"]);
        assert_eq!(p.nodes[1].inputs, [Edge { from: 0, partition: Partition::Rebalance, output: None }]);
        assert_eq!(p.nodes[2].inputs, [Edge { from: 1, partition: Partition::Key, output: None }]);
        assert_eq!(p.nodes[3].inputs[0].partition, Partition::Rebalance);
        assert_eq!(p.max_parallelism, 128);
    }

    fn chain_ids(p: &JobPlan) -> Vec<Vec<&str>> {
        p.chains().iter().map(|c| c.iter().map(|&n| p.nodes[n].id.as_str()).collect()).collect()
    }

    #[test]
    fn forward_single_consumer_operators_and_their_sink_are_chained() {
        let text = r#"
[sources.lines]
kind = "file"
path = "in.txt"
[operators.a]
wasm = "op.wasm"
input = "lines"
[operators.b]
wasm = "op.wasm"
input = "a"
[operators.c]
wasm = "op.wasm"
input = "b"
partition = "key"
[operators.d]
wasm = "op.wasm"
input = "c"
[sinks.out]
kind = "stdout"
input = "d"
"#;
        let p = plan_text(text).unwrap();
        // The source stays alone; a key edge starts a new chain.
        assert_eq!(chain_ids(&p), [vec!["lines"], vec!["a", "b"], vec!["c", "d", "out"]]);
        let p = plan_text(&format!("[job]\nchaining = false\n{text}")).unwrap();
        assert_eq!(p.chains().len(), p.nodes.len());
    }

    #[test]
    fn fan_out_fan_in_and_parallelism_changes_break_chains() {
        // BASE: a (×2) feeds b (key) and out; out reads two inputs.
        let p = plan_text(BASE).unwrap();
        assert_eq!(chain_ids(&p), [vec!["lines"], vec!["a"], vec!["b"], vec!["out"]]);
        let text = r#"
[sources.lines]
kind = "file"
path = "in.txt"
[operators.a]
wasm = "op.wasm"
input = "lines"
[operators.b]
wasm = "op.wasm"
input = "a"
parallelism = 2
[sinks.out]
kind = "stdout"
input = "b"
parallelism = 2
"#;
        assert_eq!(chain_ids(&plan_text(text).unwrap()), [vec!["lines"], vec!["a"], vec!["b", "out"]]);
    }

    #[test]
    fn missing_input_is_named() {
        let err = plan_text(&BASE.replace("input = \"a\"", "input = \"nope\"")).unwrap_err();
        assert!(err.contains("[operators.b] input `nope` does not exist"), "{err}");
    }

    #[test]
    fn cycle_is_rejected() {
        let text = BASE.replace("input = \"lines\"", "input = \"b\"");
        let err = plan_text(&text).unwrap_err();
        assert!(err.contains("cycle"), "{err}");
        assert!(err.contains("operators.a") && err.contains("operators.b"), "{err}");
    }

    #[test]
    fn forward_needs_equal_parallelism() {
        let err = plan_text(&BASE.replace("partition = \"key\"", "partition = \"forward\"")).unwrap_err();
        assert!(err.contains("forward"), "{err}");
    }

    #[test]
    fn missing_wasm_and_builtin_are_explained() {
        let err = plan_text(&BASE.replacen("wasm = \"op.wasm\"", "wasm = \"gone.wasm\"", 1)).unwrap_err();
        assert!(err.contains("[operators.a] wasm") && err.contains("no such file"), "{err}");
        let err = plan_text(&BASE.replacen("wasm = \"op.wasm\"", "builtin = \"nosuch\"", 1)).unwrap_err();
        assert!(err.contains("built-in operator `nosuch` not found"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_sink_inputs_are_rejected() {
        let dup = format!("{BASE}\n[sinks.a]\nkind = \"stdout\"\ninput = \"lines\"\n");
        assert!(plan_text(&dup).unwrap_err().contains("unique"));
        let from_sink = format!("{BASE}\n[sinks.more]\nkind = \"stdout\"\ninput = \"out\"\n");
        assert!(plan_text(&from_sink).unwrap_err().contains("is a sink"));
    }

    #[test]
    fn parallelism_bounds_are_checked() {
        let err = plan_text(&BASE.replace("parallelism = 3", "parallelism = 500")).unwrap_err();
        assert!(err.contains("max_parallelism"), "{err}");
    }
}
