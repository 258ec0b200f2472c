//! The control API of a running job: a small JSON-over-HTTP server that
//! `weir run` starts (axum, on its own thread), and the blocking client the
//! `weir status | savepoint | stop | cancel` commands use.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/v1/job` | status, attempt, graph, per-operator counts and rates, checkpoint counters |
//! | GET | `/v1/checkpoints` | the last checkpoints and savepoints, completed or abandoned |
//! | GET | `/v1/checkpoints/details/{id}` | one of them, with each subtask's size, alignment and sync time |
//! | GET | `/` | the dashboard (a page without data, so without the token: it asks the API with it) |
//! | GET | `/metrics` | the same numbers in Prometheus' text format (see [`JobControl::metrics`]) |
//! | POST | `/v1/savepoints` | `{"target": DIR?}` → waits, returns `{"id", "path"}` |
//! | POST | `/v1/stop` | `{"target": DIR?}`: stop with a savepoint → `{"id", "path"}`; the job then ends |
//! | POST | `/v1/cancel` | stops the job without a savepoint → `{"status": "cancelling"}` |
//!
//! Every request carries a token as `Authorization: Bearer TOKEN`. With
//! `--api-token` the user chooses it (and may then bind off loopback);
//! otherwise `weir run` makes a random one for the run and leaves it in a
//! file only this user can read ([`token_path`]: `$XDG_RUNTIME_DIR/weir/api/`
//! or `~/.cache/weir/api/`, `0700`, the file `0600`), where the CLI finds it.
//! So on a shared machine only the user who started a job controls it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::checkpoint::coordinator::{CheckpointStats, SavepointInfo, SavepointRequest};
use crate::checkpoint::storage::Storage;
use crate::dataflow::NodeStats;
use crate::dataflow::metrics::CALL_BUCKETS_US;
use crate::job::JobPlan;

/// How many throughput samples a run report keeps (about an hour's).
pub const THROUGHPUT_SAMPLES: usize = 3600;

/// The address clients use when not told otherwise (Flink's REST port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8081";

/// What the API knows about the running job; shared with `run`.
pub struct JobControl {
    job: String,
    graph: Value,
    started: Instant,
    /// `running`, `restarting`, `stopping`, …
    pub state: Mutex<&'static str>,
    /// Restarts so far.
    pub attempt: AtomicU32,
    /// Counters of the current attempt, and rates sampled by [`Self::sample`].
    nodes: Mutex<Sampled>,
    /// Checkpoint counters and history.
    pub checkpoints: Arc<CheckpointStats>,
    /// Savepoint requests, read by the current attempt's coordinator.
    requests: Sender<SavepointRequest>,
    /// Raised by `POST /v1/cancel`; `run` polls it.
    pub cancel: AtomicBool,
    /// The last failure that caused a restart: when (ms since the epoch), and why.
    last_failure: Mutex<Option<(u64, String)>>,
    /// Records/s out of the sources at each sample, oldest first (at most [`THROUGHPUT_SAMPLES`]).
    throughput: Mutex<std::collections::VecDeque<f64>>,
    /// Default savepoint target, and what relative targets resolve against.
    default_target: String,
    base_dir: PathBuf,
    savepoint_timeout: Duration,
}

impl JobControl {
    /// Control state for `plan`; savepoint requests go to `requests`.
    pub fn new(
        plan: &JobPlan,
        checkpoints: Arc<CheckpointStats>,
        requests: Sender<SavepointRequest>,
        default_target: String,
        savepoint_timeout: Duration,
    ) -> Self {
        let graph = plan
            .nodes
            .iter()
            .map(|n| {
                let inputs: Vec<Value> = n
                    .inputs
                    .iter()
                    .map(|e| json!({ "from": plan.nodes[e.from].id, "output": e.output, "partition": format!("{:?}", e.partition).to_lowercase() }))
                    .collect();
                json!({ "id": n.id, "kind": n.kind.label(), "parallelism": n.parallelism, "inputs": inputs })
            })
            .collect();
        Self {
            job: plan.name.clone(),
            graph: Value::Array(graph),
            started: Instant::now(),
            state: Mutex::new("starting"),
            attempt: AtomicU32::new(0),
            nodes: Mutex::new(Sampled::new(&[])),
            checkpoints,
            requests,
            cancel: AtomicBool::new(false),
            last_failure: Mutex::new(None),
            throughput: Mutex::default(),
            default_target,
            base_dir: plan.base_dir.clone(),
            savepoint_timeout,
        }
    }

    /// Sets the job state shown by the API.
    pub fn set_state(&self, state: &'static str) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The job failed (and will restart) because of `cause`.
    pub fn failed(&self, cause: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((u64::try_from(now).unwrap_or(u64::MAX), cause.to_owned()));
    }

    /// A new attempt started with these counters.
    pub fn attach(&self, stats: &[NodeStats]) {
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = Sampled::new(stats);
    }

    /// Updates per-node rates (records/s since the previous sample); call every ~second.
    pub fn sample(&self) {
        let mut guard = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let sampled = &mut *guard;
        let dt = sampled.at.elapsed().as_secs_f64();
        if dt < 0.5 {
            return;
        }
        for ((s, rate), prev) in sampled.stats.iter().zip(sampled.rates.iter_mut()).zip(sampled.last.iter_mut()) {
            let now = (s.metrics.records_in(), s.metrics.records_out());
            *rate = ((now.0 - prev.0) as f64 / dt, (now.1 - prev.1) as f64 / dt);
            *prev = now;
        }
        for (n, s) in sampled.stats.iter().enumerate() {
            for (i, time) in s.times.iter().enumerate() {
                let now = (time.idle_ns(), time.backpressured_ns());
                let before = std::mem::replace(&mut sampled.last_times[n][i], now);
                sampled.shares[n][i] = if time.ended() {
                    Shares::default()
                } else {
                    Shares::over(dt, now.0.saturating_sub(before.0), now.1.saturating_sub(before.1))
                };
                sampled.shares[n][i].watermark = time.watermark();
                sampled.shares[n][i].guest_memory = time.guest_memory.load(Ordering::Relaxed);
            }
        }
        sampled.at = Instant::now();
        let sources: f64 =
            sampled.stats.iter().zip(&sampled.rates).filter(|(s, _)| s.is_source).map(|(_, r)| r.1).sum();
        let mut throughput = self.throughput.lock().unwrap_or_else(|p| p.into_inner());
        if throughput.len() == THROUGHPUT_SAMPLES {
            throughput.pop_front();
        }
        throughput.push_back(sources.round());
    }

    fn status(&self) -> Value {
        let guard = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let (stats, rates) = (&guard.stats, &guard.rates);
        let mut graph = self.graph.clone();
        if let Value::Array(nodes) = &mut graph {
            for (((node, s), (rate_in, rate_out)), shares) in nodes.iter_mut().zip(stats).zip(rates).zip(&guard.shares)
            {
                node["records_in"] = json!(s.metrics.records_in());
                node["records_out"] = json!(s.metrics.records_out());
                node["in_per_s"] = json!(rate_in.round());
                node["out_per_s"] = json!(rate_out.round());
                let max = |f: fn(&Shares) -> f64| shares.iter().map(f).fold(0.0, f64::max).round();
                node["busy_ms_per_s"] = json!(max(|s| s.busy));
                node["backpressured_ms_per_s"] = json!(max(|s| s.backpressured));
                let times = &s.times;
                node["subtasks"] = shares
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        json!({
                            "subtask": i,
                            "busy_ms_per_s": s.busy.round(),
                            "backpressured_ms_per_s": s.backpressured.round(),
                            "idle_ms_per_s": s.idle.round(),
                            "watermark": s.watermark,
                            "guest_memory_bytes": s.guest_memory,
                            // Counted live, as the node's total is.
                            "records_in": times.get(i).map_or(0, |t| t.records_in()),
                        })
                    })
                    .collect();
            }
        }
        let c = &self.checkpoints;
        json!({
            "job": self.job,
            "state": *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            "attempt": self.attempt.load(Ordering::Relaxed),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "nodes": graph,
            "last_failure": self.last_failure.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
                .map(|(at, why)| json!({ "at_ms": at, "cause": why })),
            "checkpoints": {
                "completed": c.completed.load(Ordering::Relaxed),
                "last_id": c.last_id.load(Ordering::Relaxed),
                "last_duration_ms": c.last_duration_ms.load(Ordering::Relaxed),
                "last_bytes": c.last_bytes.load(Ordering::Relaxed),
                "last_alignment_ms": c.last_alignment_ms.load(Ordering::Relaxed),
            },
        })
    }

    /// The job's metrics in Prometheus' text format (version 0.0.4), with
    /// Flink-like names: counters per node, and per subtask the ms per
    /// second busy, backpressured and idle over the last sample.
    pub fn metrics(&self) -> String {
        let guard = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let job = label(&self.job);
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let per_node = |f: &dyn Fn(&NodeStats) -> u64| -> Vec<(String, f64)> {
            guard.stats.iter().map(|s| (format!("job=\"{job}\",node=\"{}\"", label(&s.id)), f(s) as f64)).collect()
        };
        family(
            &mut out,
            "weir_records_in_total",
            "counter",
            "Records a node received (this attempt).",
            per_node(&|s| s.metrics.records_in()),
        );
        family(
            &mut out,
            "weir_records_out_total",
            "counter",
            "Records a node emitted (this attempt).",
            per_node(&|s| s.metrics.records_out()),
        );
        let job = job.as_str();
        let per_subtask = |f: fn(&Shares) -> f64| -> Vec<(String, f64)> {
            guard
                .stats
                .iter()
                .zip(&guard.shares)
                .flat_map(|(s, shares)| {
                    shares.iter().enumerate().map(move |(i, share)| {
                        (format!("job=\"{job}\",node=\"{}\",subtask=\"{i}\"", label(&s.id)), f(share).round())
                    })
                })
                .collect()
        };
        family(
            &mut out,
            "weir_busy_time_ms_per_second",
            "gauge",
            "Ms per second a subtask worked (neither idle nor backpressured).",
            per_subtask(|s| s.busy),
        );
        family(
            &mut out,
            "weir_backpressured_time_ms_per_second",
            "gauge",
            "Ms per second a subtask waited for room downstream.",
            per_subtask(|s| s.backpressured),
        );
        family(
            &mut out,
            "weir_idle_time_ms_per_second",
            "gauge",
            "Ms per second a subtask waited for input.",
            per_subtask(|s| s.idle),
        );
        let operators = || guard.stats.iter().filter(|s| s.kind == "operator");
        let memory = operators()
            .flat_map(|s| {
                s.times.iter().enumerate().map(move |(i, t)| {
                    let bytes = t.guest_memory.load(Ordering::Relaxed) as f64;
                    (format!("job=\"{job}\",node=\"{}\",subtask=\"{i}\"", label(&s.id)), bytes)
                })
            })
            .collect();
        family(&mut out, "weir_guest_memory_bytes", "gauge", "Linear memory of a guest instance.", memory);
        let _ = writeln!(
            out,
            "# HELP weir_guest_call_seconds Time of a guest's process calls (one per batch).\n# TYPE weir_guest_call_seconds histogram"
        );
        for s in operators() {
            let node = format!("job=\"{job}\",node=\"{}\"", label(&s.id));
            let mut counts = vec![0u64; CALL_BUCKETS_US.len() + 1];
            let mut ns = 0u64;
            for t in &s.times {
                let (c, n) = t.calls();
                counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
                ns = ns.saturating_add(n);
            }
            let mut cumulative = 0;
            for (i, count) in counts.iter().enumerate() {
                cumulative += count;
                let le = CALL_BUCKETS_US.get(i).map_or_else(|| "+Inf".to_owned(), |us| (*us as f64 / 1e6).to_string());
                let _ = writeln!(out, "weir_guest_call_seconds_bucket{{{node},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "weir_guest_call_seconds_sum{{{node}}} {}", ns as f64 / 1e9);
            let _ = writeln!(out, "weir_guest_call_seconds_count{{{node}}} {cumulative}");
        }
        let c = &self.checkpoints;
        let one = |v: u64| vec![(format!("job=\"{job}\""), v as f64)];
        family(
            &mut out,
            "weir_checkpoints_completed_total",
            "counter",
            "Checkpoints and savepoints completed in this run.",
            one(c.completed.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "weir_checkpoints_failed_total",
            "counter",
            "Checkpoints and savepoints abandoned in this run.",
            one(c.abandoned.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "weir_last_checkpoint_duration_ms",
            "gauge",
            "Trigger to completion of the last completed checkpoint.",
            one(c.last_duration_ms.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "weir_last_checkpoint_size_bytes",
            "gauge",
            "State size of the last completed checkpoint.",
            one(c.last_bytes.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "weir_last_checkpoint_alignment_ms",
            "gauge",
            "Longest barrier alignment of the last completed checkpoint.",
            one(c.last_alignment_ms.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "weir_restarts_total",
            "counter",
            "Restarts after failures in this run.",
            one(u64::from(self.attempt.load(Ordering::Relaxed))),
        );
        family(
            &mut out,
            "weir_uptime_seconds",
            "gauge",
            "Seconds since the run started.",
            one(self.started.elapsed().as_secs()),
        );
        out
    }

    /// A one-file HTML report of the run so far: the dashboard, with the
    /// job's last status, its checkpoint history and its throughput
    /// samples inside instead of a live API behind it.
    pub fn report_html(&self) -> String {
        let history = self.checkpoints.history.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let throughput: Vec<f64> = self.throughput.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        let data = json!({ "job": self.status(), "checkpoints": history, "throughput": throughput });
        // Inside a <script>, "</script" or "<!--" in a string (a node id)
        // would change how the page parses: no "<" at all, JSON escapes it.
        let data = data.to_string().replace('<', "\\u003c");
        DASHBOARD.replacen("<script>", &format!("<script>window.WEIR_REPORT = {data};</script>\n<script>"), 1)
    }

    /// Takes a savepoint (blocking): opens the target, asks the coordinator, waits.
    fn savepoint(&self, target: Option<String>, stop: bool) -> Result<SavepointInfo, (StatusCode, String)> {
        let target = target.unwrap_or_else(|| self.default_target.clone());
        let url = if target.contains("://") {
            target
        } else {
            let dir = std::path::absolute(self.base_dir.join(&target))
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("savepoint target {target}: {e}")))?;
            format!("file://{}", dir.display())
        };
        let storage =
            Storage::open(&url, &self.base_dir, &self.job).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = SavepointRequest { target: Arc::new(storage), stop, reply };
        self.requests.send(request).map_err(|_| (StatusCode::CONFLICT, "the job is not running".to_owned()))?;
        if stop {
            self.set_state("stopping");
        }
        match answer.recv_timeout(self.savepoint_timeout + Duration::from_secs(5)) {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(why)) => Err((StatusCode::INTERNAL_SERVER_ERROR, why)),
            Err(_) => Err((StatusCode::GATEWAY_TIMEOUT, "no answer from the checkpoint coordinator".to_owned())),
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Per-node counters and the rates last sampled from them.
struct Sampled {
    stats: Vec<NodeStats>,
    /// Records in/out per second, per node.
    rates: Vec<(f64, f64)>,
    /// When `last` was read.
    at: Instant,
    last: Vec<(u64, u64)>,
    /// Per node, per subtask: ms per second idle, backpressured and busy
    /// over the last interval (Flink's `idleTimeMsPerSecond`, …).
    shares: Vec<Vec<Shares>>,
    /// Per node, per subtask: idle and backpressured ns when last read.
    last_times: Vec<Vec<(u64, u64)>>,
}

/// How a subtask spent a second, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shares {
    /// Waiting for input.
    pub idle: f64,
    /// Waiting for room downstream.
    pub backpressured: f64,
    /// The rest: working.
    pub busy: f64,
    /// Its event time (watermark), if it has one.
    pub watermark: Option<i64>,
    /// Bytes of linear memory of its guest (0 for sources and sinks).
    pub guest_memory: u64,
}

impl Shares {
    /// Over `dt` seconds in which `idle_ns` and `backpressured_ns` passed waiting.
    pub fn over(dt: f64, idle_ns: u64, backpressured_ns: u64) -> Self {
        let per_s = |ns: u64| (ns as f64 / 1e6 / dt).clamp(0.0, 1000.0);
        let (idle, backpressured) = (per_s(idle_ns), per_s(backpressured_ns));
        Self { idle, backpressured, busy: (1000.0 - idle - backpressured).max(0.0), watermark: None, guest_memory: 0 }
    }
}

impl Sampled {
    fn new(stats: &[NodeStats]) -> Self {
        Self {
            stats: stats.to_vec(),
            rates: vec![(0.0, 0.0); stats.len()],
            at: Instant::now(),
            last: vec![(0, 0); stats.len()],
            shares: stats.iter().map(|s| vec![Shares::default(); s.times.len()]).collect(),
            last_times: stats.iter().map(|s| vec![(0, 0); s.times.len()]).collect(),
        }
    }
}

/// Body of the savepoint and stop requests.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointBody {
    /// Directory (or URL) the savepoint directory is created in.
    #[serde(default)]
    pub target: Option<String>,
}

struct Shared {
    control: Arc<JobControl>,
    token: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn auth(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/" {
        return next.run(request).await;
    }
    if let Some(token) = &shared.token {
        // The scheme is case-insensitive (RFC 7235); the token is not.
        let given = request.headers().get("authorization").and_then(|v| v.to_str().ok());
        let presented =
            given.and_then(|v| v.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
        if presented.map(|(_, t)| t) != Some(token.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong token: send `Authorization: Bearer TOKEN`");
        }
    }
    next.run(request).await
}

/// A savepoint request's body: none at all is fine (no target); one that is
/// not the documented JSON is answered in the documented error JSON.
type Body = Result<Json<SavepointBody>, JsonRejection>;

async fn savepoint_handler(shared: Arc<Shared>, body: Body, stop: bool) -> Response {
    let target = match body {
        Ok(Json(b)) => b.target,
        Err(JsonRejection::MissingJsonContentType(_)) => None,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let control = shared.control.clone();
    match tokio::task::spawn_blocking(move || control.savepoint(target, stop)).await {
        Ok(Ok(info)) => Json(info).into_response(),
        Ok(Err((status, why))) => error(status, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The dashboard: one page, embedded; it holds no data (that comes from
/// the API, with the token), so it is served without one.
const DASHBOARD: &str = include_str!("dashboard.html");

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Html(DASHBOARD) }))
        .route("/v1/job", get(|State(s): State<Arc<Shared>>| async move { Json(s.control.status()) }))
        .route(
            "/v1/checkpoints",
            get(|State(s): State<Arc<Shared>>| async move {
                let history = s.control.checkpoints.history.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Json(json!({ "checkpoints": history }))
            }),
        )
        .route(
            "/v1/checkpoints/details/{id}",
            get(|State(s): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<String>| async move {
                let Some(id) = id.parse::<u64>().ok().filter(|_| id.bytes().all(|b| b.is_ascii_digit())) else {
                    return error(StatusCode::BAD_REQUEST, "a checkpoint id is a whole number (0 to 2^64 - 1)");
                };
                let history = s.control.checkpoints.history.lock().unwrap_or_else(|p| p.into_inner());
                let Some(entry) = history.iter().find(|c| c.id == id) else {
                    return error(
                        StatusCode::NOT_FOUND,
                        format!("checkpoint {id} is not among the last ones of this run"),
                    );
                };
                let mut details = json!(entry);
                details["subtasks"] = entry
                    .nodes
                    .iter()
                    .flat_map(|n| {
                        n.subtasks.iter().map(move |t| {
                            json!({ "node": n.id, "subtask": t.subtask, "bytes": t.size,
                                    "alignment_ms": t.alignment_ms, "sync_ms": t.sync_ms })
                        })
                    })
                    .collect();
                Json(details).into_response()
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<Shared>>| async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.control.metrics())
            }),
        )
        .route("/v1/savepoints", post(|State(s): State<Arc<Shared>>, body: Body| savepoint_handler(s, body, false)))
        .route("/v1/stop", post(|State(s): State<Arc<Shared>>, body: Body| savepoint_handler(s, body, true)))
        .route(
            "/v1/cancel",
            post(|State(s): State<Arc<Shared>>| async move {
                s.control.cancel.store(true, Ordering::Relaxed);
                (StatusCode::ACCEPTED, Json(json!({ "status": "cancelling" })))
            }),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see the README's control API section") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "wrong method for this endpoint; see the README's control API section",
            )
        })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared)
}

/// Binds `addr` and serves the API on a background thread; returns the
/// address actually bound (port 0 picks a free one), the token it requires
/// and, when it made one, the token's file.
///
/// # Errors
/// [`Error::InvalidJob`] for a non-loopback address without a token;
/// [`Error::Io`] when the address cannot be bound.
pub fn serve(
    addr: SocketAddr,
    token: Option<String>,
    control: Arc<JobControl>,
) -> Result<(SocketAddr, String, Option<TokenFile>), Error> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(Error::InvalidJob(format!(
            "the control API would listen on {addr}, which is not loopback: set a token with --api-token \
             (or WEIR_API_TOKEN), or bind to 127.0.0.1"
        )));
    }
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::io(format!("cannot serve the control API on {addr}"), e))?;
    let bound = listener.local_addr().map_err(|e| Error::io("control API address", e))?;
    listener.set_nonblocking(true).map_err(|e| Error::io("control API socket", e))?;
    let (token, file) = match token {
        Some(token) => (token, None),
        None => {
            let token = random_token()?;
            let file = TokenFile::write(bound.port(), &token)?;
            (token, Some(file))
        }
    };
    let app = router(Arc::new(Shared { control, token: Some(token.clone()) }));
    std::thread::Builder::new()
        .name("control-api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("control API: cannot start its runtime: {e}"),
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!("control API stopped: {e}");
                        }
                    }
                    Err(e) => tracing::error!("control API: {e}"),
                }
            });
        })
        .map_err(|e| Error::io("cannot start the control API thread", e))?;
    Ok((bound, token, file))
}

/// Where the token of a run serving the API on `port` (without
/// `--api-token`) is kept: `$XDG_RUNTIME_DIR/weir/api/<port>.token`, else
/// `~/.cache/weir/api/<port>.token`.
pub fn token_path(port: u16) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("api").join(format!("{port}.token")))
}

/// A run's token file (`0600` in a `0700` directory), removed when dropped.
#[derive(Debug)]
pub struct TokenFile(PathBuf);

impl TokenFile {
    fn write(port: u16, token: &str) -> Result<Self, Error> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let path = token_path(port).ok_or_else(|| {
            let why = std::io::Error::new(std::io::ErrorKind::NotFound, "set HOME or XDG_RUNTIME_DIR");
            Error::io("no place for the control API token", why)
        })?;
        let fail = |e| Error::io(format!("cannot write the control API token {}", path.display()), e);
        let dir = path.parent().expect("the token path has a directory");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        // A stale file of an earlier run on this port may have had other permissions.
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        file.write_all(token.as_bytes()).map_err(fail)?;
        Ok(Self(path))
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// 128 random bits from the OS, as hex.
fn random_token() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("cannot make a control API token from /dev/urandom", e))?;
    Ok(hex::encode(bytes))
}

/// A client of a job's control API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for the API at `addr` (`HOST:PORT` or a URL).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(addr: &str, token: Option<String>) -> Result<Self, Error> {
        crate::checkpoint::storage::install_crypto_provider();
        let base = if addr.contains("://") { addr.trim_end_matches('/').to_owned() } else { format!("http://{addr}") };
        // Without a token, use the one the run left for its user.
        let token = token.or_else(|| {
            let port = base.rsplit(':').next()?.trim_end_matches('/').parse().ok()?;
            std::fs::read_to_string(token_path(port)?).ok().map(|t| t.trim().to_owned())
        });
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { base, token, http })
    }

    /// `GET path` → JSON.
    ///
    /// # Errors
    /// [`Error::Api`] naming the address and what went wrong.
    pub fn get(&self, path: &str) -> Result<Value, Error> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    /// `POST path` with a JSON body → JSON.
    ///
    /// # Errors
    /// [`Error::Api`] naming the address and what went wrong.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request)
    }

    fn send(&self, mut request: reqwest::blocking::RequestBuilder) -> Result<Value, Error> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().map_err(|e| {
            Error::Api(format!(
                "no job's control API answers at {} ({e}); is `weir run` running? pass its address with --api",
                self.base
            ))
        })?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let why = value.get("error").and_then(Value::as_str).map_or_else(|| value.to_string(), str::to_owned);
            return Err(Error::Api(format!("{} answered {status}: {why}", self.base)));
        }
        Ok(value)
    }
}
