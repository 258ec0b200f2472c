//! Seeing a running job (issue 14): busy and backpressured time per
//! subtask, in `/v1/job`, `weir status` and Prometheus' `/metrics`.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use weir_tests::wait_until;

use crate::savepoints::api_address;
use crate::{Background, TIMEOUT, wasm, weir, write};

const TOKEN: &str = "observability-test-token";

/// `GET path` with the test's token; the body of the answer.
fn get(addr: &str, path: &str) -> String {
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    raw.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "GET {path}: {answer}");
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

fn node<'a>(job: &'a Value, id: &str) -> &'a Value {
    job["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}: {job}"))
}

/// Starts `job.toml` in `dir` with the API on a free port; returns it and the address.
fn start(dir: &Path) -> (Background, String) {
    let mut run =
        Background::start(dir, "run", &["run", "job.toml", "--api", "127.0.0.1:0", "--api-token", TOKEN], &[]);
    let addr = api_address(dir, "run", &mut run, "control API on http://");
    (run, addr)
}

/// Backpressure is real: a fast generator feeding an operator that works
/// 200 µs per record shows the generator backpressured over half of each
/// second and the slow operator busy over half — in `/v1/job`, in
/// `weir status`, and in `/metrics`, which a Prometheus text-format parser
/// reads with values consistent with `/v1/job`.
#[test]
fn a_slow_operator_backpressures_its_source_and_metrics_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let job = format!(
        r#"
[job]
name = "slow"

[sources.gen]
kind = "generator"

[operators.slow]
wasm = "{}"
input = "gen"
config = {{ work_us = 200 }}

[sinks.out]
kind = "discard"
input = "slow"

[checkpoint]
interval = "200ms"
"#,
        wasm("spin")
    );
    write(dir, "job.toml", &job);
    let (mut run, addr) = start(dir);
    let mut seen = Value::Null;
    wait_until("the source backpressured and the slow operator busy", TIMEOUT, || {
        assert!(!run.exited(), "weir exited");
        seen = serde_json::from_str(&get(&addr, "/v1/job")).unwrap();
        node(&seen, "gen")["backpressured_ms_per_s"].as_f64().unwrap_or(0.0) > 500.0
            && node(&seen, "slow")["busy_ms_per_s"].as_f64().unwrap_or(0.0) > 500.0
    });
    // The operator is not backpressured (its sink discards), the source not busy.
    assert!(node(&seen, "slow")["backpressured_ms_per_s"].as_f64().unwrap() < 100.0, "{seen}");
    assert!(node(&seen, "gen")["subtasks"][0]["busy_ms_per_s"].as_f64().unwrap() < 500.0, "{seen}");

    let status = weir(dir, &["status", "--api", &addr, "--api-token", TOKEN]);
    status.expect_code(0);
    assert!(status.stdout.contains("backpressured"), "{}", status.stdout);

    // `/metrics` between two reads of `/v1/job`: counters in between, gauges equal to one of them.
    let before: Value = serde_json::from_str(&get(&addr, "/v1/job")).unwrap();
    let text = get(&addr, "/metrics");
    let after: Value = serde_json::from_str(&get(&addr, "/v1/job")).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let found = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"));
        match found.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    let records_in = sample("weir_records_in_total", &[("job", "slow"), ("node", "slow")]);
    let (low, high) =
        (node(&before, "slow")["records_in"].as_f64().unwrap(), node(&after, "slow")["records_in"].as_f64().unwrap());
    assert!(low <= records_in && records_in <= high, "{low} <= {records_in} <= {high}");
    let busy = sample("weir_busy_time_ms_per_second", &[("node", "slow"), ("subtask", "0")]);
    let busy_seen = [&before, &after].map(|j| node(j, "slow")["subtasks"][0]["busy_ms_per_s"].as_f64().unwrap());
    assert!(busy_seen.contains(&busy), "{busy} not in {busy_seen:?}");
    let backpressured = sample("weir_backpressured_time_ms_per_second", &[("node", "gen"), ("subtask", "0")]);
    assert!(backpressured > 500.0, "{backpressured}");
    let completed = sample("weir_checkpoints_completed_total", &[("job", "slow")]);
    assert!(completed <= after["checkpoints"]["completed"].as_f64().unwrap());
    assert_eq!(sample("weir_restarts_total", &[("job", "slow")]), 0.0);
    // The guest's memory, and its calls by duration: each takes over 200 µs per record.
    assert!(sample("weir_guest_memory_bytes", &[("node", "slow"), ("subtask", "0")]) >= 65_536.0);
    let calls = scrape
        .samples
        .iter()
        .find(|s| s.metric == "weir_guest_call_seconds" && s.labels.get("node") == Some("slow"))
        .unwrap_or_else(|| panic!("no call-time histogram in:\n{text}"));
    let prometheus_parse::Value::Histogram(buckets) = &calls.value else { panic!("{:?}", calls.value) };
    let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
    let under_100us = buckets.iter().find(|b| b.less_than == 0.0001).map_or(-1.0, |b| b.count);
    assert!(total > 0.0 && under_100us == 0.0, "a batch of 200 µs records took under 100 µs? {buckets:?}");

    // A checkpoint's details: every subtask of every node, with its numbers.
    let mut id = 0;
    wait_until("a completed checkpoint", TIMEOUT, || {
        let job: Value = serde_json::from_str(&get(&addr, "/v1/job")).unwrap();
        id = job["checkpoints"]["last_id"].as_u64().unwrap_or(0);
        id > 0
    });
    let details: Value = serde_json::from_str(&get(&addr, &format!("/v1/checkpoints/details/{id}"))).unwrap();
    assert_eq!(details["id"], id);
    assert_eq!(details["status"], "completed");
    let mut nodes: Vec<&str> =
        details["subtasks"].as_array().unwrap().iter().map(|t| t["node"].as_str().unwrap()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["gen", "out", "slow"], "{details}");
    assert!(details["subtasks"].as_array().unwrap().iter().all(|t| t["sync_ms"].is_u64() && t["bytes"].is_u64()));
    run.kill();
}

/// Headless Chromium (driven through its DevTools protocol) on a running job.
struct Browser {
    child: std::process::Child,
    socket: tungstenite::WebSocket<std::net::TcpStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Opens `url` in headless Chromium (installed by the setup command).
    fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,1000"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting chromium (the setup command installs it)");
        // Chromium says where its DevTools listen in the profile directory.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut port = String::new();
        wait_until("chromium's DevTools port", TIMEOUT, || {
            port = std::fs::read_to_string(&port_file).unwrap_or_default().lines().next().unwrap_or("").to_owned();
            !port.is_empty()
        });
        let devtools = format!("127.0.0.1:{port}");
        let mut page = String::new();
        wait_until("the page's DevTools target", TIMEOUT, || {
            let list: Value = serde_json::from_str(&http_get(&devtools, "/json/list")).unwrap_or(Value::Null);
            let found = list.as_array().and_then(|a| a.iter().find(|t| t["type"] == "page"));
            page = found.and_then(|t| t["webSocketDebuggerUrl"].as_str()).unwrap_or("").to_owned();
            !page.is_empty()
        });
        let stream = std::net::TcpStream::connect(&devtools).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (socket, _) = tungstenite::client(page.as_str(), stream).expect("DevTools WebSocket");
        Self { child, socket, next_id: 0, _profile: profile }
    }

    /// Evaluates `expression` in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        self.socket.send(tungstenite::Message::text(call.to_string())).unwrap();
        loop {
            let message = self.socket.read().expect("a DevTools answer");
            let Ok(text) = message.to_text() else { continue };
            let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if answer["id"] == id {
                return answer["result"]["result"]["value"].clone();
            }
        }
    }
}

/// `GET path` from `addr` without a token (Chromium's DevTools, which
/// keeps connections open: read up to the `Content-Length`).
fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut raw) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = raw.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = raw.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                return body.to_owned();
            }
        }
        match raw.read(&mut chunk) {
            Ok(0) | Err(_) => return text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default(),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The dashboard in a real browser: every node of the job is in the graph,
/// rates become non-zero, a completed checkpoint shows in the history, and
/// clicking "Savepoint" takes one. A screenshot is left at
/// `target/dashboard.png`.
#[test]
fn the_dashboard_shows_the_job_and_takes_a_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let job = r#"
[job]
name = "dash"

[sources.gen]
kind = "generator"
format = "events"
rate = 20000
watermark = { max_out_of_orderness = "1s" }

[operators.win]
builtin = "window"
input = "gen"
partition = "key"
parallelism = 2
config = { kind = "tumbling", size = "1s" }

[sinks.out]
kind = "discard"
input = "win"

[checkpoint]
interval = "300ms"
"#;
    write(dir, "job.toml", job);
    let (mut run, addr) = start(dir);
    let log = std::fs::read_to_string(dir.join("run.stderr")).unwrap();
    let url = format!("http://{addr}/#token={TOKEN}");
    assert!(log.contains(&format!("dashboard on {url}")), "{log}");
    // The page itself needs no token (it holds no data); the data does.
    assert!(http_get(&addr, "/").contains("<title>weir</title>"));
    assert!(http_get(&addr, "/v1/job").contains("missing or wrong token"));

    let mut browser = Browser::open(&url);
    let nodes = "[...document.querySelectorAll('#graph .node')].map(n => n.dataset.id).sort().join(',')";
    wait_until("every node in the graph", TIMEOUT, || browser.eval(nodes) == "gen,out,win");
    let rates = "[...document.querySelectorAll('#graph .rate-out')].some(e => e.textContent !== '0')";
    wait_until("non-zero rates", TIMEOUT, || browser.eval(rates) == true);
    let completed = "[...document.querySelectorAll('#checkpoints td')].some(td => td.textContent === 'completed')";
    wait_until("a completed checkpoint in the history", TIMEOUT, || browser.eval(completed) == true);
    assert!(!run.exited(), "weir exited");

    browser.eval("document.getElementById('savepoint').click()");
    let savepoints = || -> usize {
        let history: Value = serde_json::from_str(&get(&addr, "/v1/checkpoints")).unwrap();
        history["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "savepoint" && c["status"] == "completed")
            .count()
    };
    wait_until("the savepoint the button asked for", TIMEOUT, || savepoints() == 1);
    let said = "document.getElementById('message').textContent";
    wait_until("the page to say where it is", TIMEOUT, || {
        browser.eval(said).as_str().is_some_and(|m| m.starts_with("savepoint: savepoint "))
    });

    let shot = weir_tests::target_dir().join("dashboard.png");
    let screenshot = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"])
        .args(["--virtual-time-budget=3000", &format!("--screenshot={}", shot.display()), &url])
        .output()
        .expect("chromium for a screenshot");
    assert!(screenshot.status.success() && shot.is_file(), "{screenshot:?}");
    run.kill();
}

/// `weir run --report FILE` leaves one HTML file that draws the run in a
/// browser with no job behind it: the graph with every node (one named to
/// break out of a `<script>` if the data were pasted in raw), the
/// checkpoint history, the throughput samples. A run that fails leaves one
/// that says why.
#[test]
fn a_run_report_draws_the_run_without_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let job = r#"
[job]
name = "rep"

[sources."gen<!--<script>"]
kind = "generator"
format = "events"
count = 30000
rate = 15000

[operators.win]
builtin = "window"
input = "gen<!--<script>"
partition = "key"
parallelism = 2
config = { kind = "tumbling", size = "1s" }

[sinks.out]
kind = "discard"
input = "win"

[checkpoint]
interval = "200ms"
"#;
    write(dir, "job.toml", job);
    weir(dir, &["run", "job.toml", "--no-api", "--report", "report.html"])
        .expect_code(0)
        .expect_stderr(&["report of the run in report.html"]);
    let report = dir.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("window.WEIR_REPORT = {"), "no data in the report");
    // Each window subtask's records, which add up to the node's.
    let at = html.find("WEIR_REPORT = ").unwrap() + "WEIR_REPORT = ".len();
    let data: serde_json::Value = serde_json::Deserializer::from_str(&html[at..]).into_iter().next().unwrap().unwrap();
    let win = data["job"]["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "win").unwrap();
    let per_subtask: Vec<u64> =
        win["subtasks"].as_array().unwrap().iter().map(|s| s["records_in"].as_u64().unwrap()).collect();
    assert_eq!(per_subtask.iter().sum::<u64>(), 30_000, "records per subtask: {per_subtask:?}");
    assert!(per_subtask.iter().all(|&n| n > 0), "both subtasks get keys: {per_subtask:?}");
    assert_eq!(win["records_in"], 30_000);
    let dom = dump_dom(&report);
    for id in ["gen&lt;!--&lt;script&gt;", "win", "out"] {
        assert!(dom.contains(&format!("<g class=\"node\" data-id=\"{id}\">")), "{id} not drawn:\n{dom}");
    }
    assert!(dom.contains("<td>completed</td>"), "no checkpoint in the history:\n{dom}");
    assert!(dom.contains("<polyline"), "no throughput plot:\n{dom}");
    assert!(dom.contains("finished"), "the job's end state is missing");
    assert!(!dom.contains("id=\"savepoint\""), "a report has no buttons");

    // A run that fails: the report says why.
    let failing = "[sources.lines]\nkind = \"generator\"\ncount = 10\n\
                   [sinks.out]\nkind = \"file\"\npath = \"/proc/no-such-dir\"\ninput = \"lines\"\n";
    write(dir, "fails.toml", failing);
    let run = weir(dir, &["run", "fails.toml", "--no-api", "--report", "fails.html"]);
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    let dom = dump_dom(&dir.join("fails.html"));
    assert!(dom.contains("last failure") && dom.contains("/proc/no-such-dir"), "{dom}");
}

/// The DOM of `file` once headless Chromium has run its scripts.
fn dump_dom(file: &Path) -> String {
    let dom = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000", "--dump-dom"])
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("chromium");
    String::from_utf8_lossy(&dom.stdout).into_owned()
}
