//! Seeing a running job (issue 14): busy and backpressured time per
//! subtask, in `/v1/job`, `weir status` and Prometheus' `/metrics`.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use weir_tests::wait_until;

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
    let log = dir.join("run.stderr");
    let mut addr = String::new();
    wait_until("the control API", TIMEOUT, || {
        assert!(!run.exited(), "weir exited: {}", std::fs::read_to_string(&log).unwrap_or_default());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find("control API on http://") {
            addr = text[at + "control API on http://".len()..].split_whitespace().next().unwrap_or("").to_owned();
        }
        !addr.is_empty()
    });
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
    run.kill();
}
