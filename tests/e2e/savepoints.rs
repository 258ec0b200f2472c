//! Savepoints and the control API: savepoint while running, stop with a
//! savepoint and resume with upgraded operators or another parallelism,
//! relocation, state that does not fit, cancel, and the API token.
//! Exactly-once is checked across every stop/resume.

use std::path::Path;

use weir_tests::{Run, committed_lines, complete_checkpoints, counts_by_word, hidden_files, text, wait_until};

use crate::{Background, TIMEOUT, assert_output_exact, wasm, weir, with_input, write};

/// Lines per second for jobs a test stops or cancels: slow enough that they
/// are still running when it does, even on a loaded 2-core machine.
const SLOW: u32 = 8_000;

/// `lines` (file `in.txt`, `rate` lines/s) → `tokenize` → keyed `stats`
/// (the given `.wasm`, `parallelism`) → file sink `out/` ×2, checkpointing
/// every 100 ms into `checkpoints/`, savepoints into `savepoints/`.
fn job(stats_wasm: &str, stats_id: &str, parallelism: u32, rate: u32) -> String {
    format!(
        r#"
[job]
name = "sp"

[sources.lines]
kind = "file"
path = "in.txt"
rate = {rate}

[operators.tokenize]
builtin = "tokenize"
input = "lines"
parallelism = 2

[operators.{stats_id}]
wasm = "{stats_wasm}"
input = "tokenize"
partition = "key"
parallelism = {parallelism}

[sinks.out]
kind = "file"
path = "out"
input = "{stats_id}"
parallelism = 2

[checkpoint]
interval = "100ms"
"#
    )
}

/// Starts `weir run JOB --api 127.0.0.1:0 EXTRA…` in `dir`; returns it and
/// the API address once it is serving.
pub fn start_with_api(dir: &Path, name: &str, job: &str, extra: &[&str]) -> (Background, String) {
    let mut args = vec!["run", job, "--api", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut run = Background::start(dir, name, &args, &[]);
    let addr = api_address(dir, name, &mut run, "control API on http://");
    (run, addr)
}

/// Waits until run `name`'s log has a line with `prefix`; returns the word after it.
pub fn api_address(dir: &Path, name: &str, run: &mut Background, prefix: &str) -> String {
    let log = dir.join(format!("{name}.stderr"));
    let mut found = String::new();
    wait_until("the control API", TIMEOUT, || {
        assert!(!run.exited(), "weir exited early:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find(prefix) {
            found = text[at + prefix.len()..].split_whitespace().next().unwrap_or("").to_owned();
        }
        !found.is_empty()
    });
    found
}

/// Waits until the job in `dir` has completed `n` checkpoints (so it is well under way).
fn wait_for_checkpoints(dir: &Path, run: &mut Background, n: usize) {
    let store = dir.join("checkpoints/sp");
    wait_until("checkpoints", TIMEOUT, || run.exited() || complete_checkpoints(&store).len() >= n);
    assert!(!run.exited(), "the job ended before {n} checkpoints");
}

/// `weir stop --savepoint` against `addr`; returns the savepoint path it printed.
pub fn stop_with_savepoint(dir: &Path, addr: &str, run: Background) -> String {
    let stopped = weir(dir, &["stop", "--savepoint", "--api", addr, "--target", "sp-dir"]);
    stopped.expect_code(0);
    let path = stopped.stdout.trim().to_owned();
    assert!(Path::new(&path).join("_manifest.json").is_file(), "no savepoint at {path:?}");
    let finished = run.finish();
    finished.expect_code(0).expect_stderr(&["savepoint", "complete"]);
    assert_eq!(finished.stdout.trim(), path, "`weir run` prints the savepoint it stopped with");
    path
}

/// A savepoint taken while the job runs does not disturb it: the job goes
/// on to an exact end, the savepoint is complete and listed in the API's
/// checkpoint history, and `weir status` shows the job and its operators.
#[test]
fn savepoint_while_running_then_continue() {
    let (tmp, text) = with_input(20_000, 31);
    let dir = tmp.path();
    write(dir, "job.toml", &job("count", "stats", 2, SLOW).replace("wasm = \"count\"", "builtin = \"count\""));
    let (mut run, addr) = start_with_api(dir, "run", "job.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 1);
    let status = weir(dir, &["status", "--api", &addr]);
    status.expect_code(0);
    assert!(status.stdout.contains("job `sp`: running"), "{}", status.stdout);
    for node in ["lines", "tokenize", "stats", "out"] {
        assert!(status.stdout.contains(node), "{node} missing from:\n{}", status.stdout);
    }
    let taken = weir(dir, &["savepoint", "--api", &addr, "--target", "sp-dir"]);
    taken.expect_code(0);
    let path = taken.stdout.trim();
    assert!(path.starts_with(dir.join("sp-dir").to_str().unwrap()), "{path}");
    let manifest = std::fs::read_to_string(Path::new(path).join("_manifest.json")).unwrap();
    assert!(manifest.contains("\"kind\": \"savepoint\""), "{manifest}");
    let history = weir(dir, &["status", "--api", &addr, "--json"]);
    history.expect_code(0);
    run.finish().expect_code(0);
    assert_output_exact(dir, &text);
    assert!(Path::new(path).join("_manifest.json").is_file(), "retention must never remove a savepoint");
}

/// The issue's upgrade path: stop v1 with a savepoint, start v2 (a new state
/// shape, migrated on restore, and a new parallelism) from it. The combined
/// output counts every word exactly once, and v2 shows the carried-over state.
#[test]
fn stop_with_savepoint_upgrade_and_resume_is_exact() {
    let (tmp, text) = with_input(20_000, 32);
    let dir = tmp.path();
    write(dir, "v1.toml", &job(&wasm("word_stats_v1"), "stats", 2, SLOW));
    write(dir, "v2.toml", &job(&wasm("word_stats_v2"), "stats", 3, 1_000_000));
    let (mut run, addr) = start_with_api(dir, "v1", "v1.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 2);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    let inspected = weir(dir, &["inspect", &savepoint]);
    inspected.expect_code(0);
    assert!(inspected.stdout.contains("word-stats-v1 1.0.0 (state version 1)"), "{}", inspected.stdout);
    assert!(inspected.stdout.contains("key groups 64..128"), "{}", inspected.stdout);
    // Where the source stood (its file and offset) and what the sink held.
    assert!(inspected.stdout.contains("in.txt at byte "), "{}", inspected.stdout);
    assert!(inspected.stdout.contains("file(s) to commit") || inspected.stdout.contains("nothing pending"));
    let v2 = weir(dir, &["run", "v2.toml", "--from-savepoint", &savepoint]);
    v2.expect_code(0).expect_stderr(&["starting from savepoint", "rescaling `stats` from 2 to 3"]);
    assert_output_exact(dir, &text);
    let lines = committed_lines(&dir.join("out"));
    assert!(lines.iter().any(|l| l.contains("\"since\":1")), "v2 never saw v1's state");
}

/// Rescale a keyed operator 2 → 4 → 1 through two stop-with-savepoints:
/// every key keeps its count.
#[test]
fn rescale_up_and_down_keeps_every_count() {
    let (tmp, text) = with_input(30_000, 33);
    let dir = tmp.path();
    let counting =
        |p: u32, rate: u32| job("count", "stats", p, rate).replace("wasm = \"count\"", "builtin = \"count\"");
    write(dir, "p2.toml", &counting(2, SLOW));
    write(dir, "p4.toml", &counting(4, SLOW));
    write(dir, "p1.toml", &counting(1, 1_000_000));
    let (mut run, addr) = start_with_api(dir, "p2", "p2.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 2);
    let first = stop_with_savepoint(dir, &addr, run);
    // By id, not by count: retention keeps only the newest 3.
    let newest = || complete_checkpoints(&dir.join("checkpoints/sp")).last().copied().unwrap_or(0);
    let before = newest();
    let (mut run, addr) = start_with_api(dir, "p4", "p4.toml", &["--from-savepoint", &first]);
    wait_until("new checkpoints at parallelism 4", TIMEOUT, || run.exited() || newest() >= before + 2);
    let second = stop_with_savepoint(dir, &addr, run);
    weir(dir, &["run", "p1.toml", "--from-savepoint", &second]).expect_code(0);
    assert_output_exact(dir, &text);
}

/// Saved state for an operator the new job does not have fails the start
/// (exit 2, naming it) unless `--allow-non-restored-state`; a new operator
/// without saved state starts empty.
#[test]
fn state_for_a_removed_operator_needs_allow_non_restored_state() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &text(20_000, 34));
    write(dir, "old.toml", &job(&wasm("word_stats_v1"), "stats", 2, SLOW));
    write(dir, "new.toml", &job(&wasm("word_stats_v1"), "renamed", 2, 1_000_000));
    let (mut run, addr) = start_with_api(dir, "old", "old.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 1);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    let refused = weir(dir, &["run", "new.toml", "--from-savepoint", &savepoint]);
    refused.expect_code(2).expect_stderr(&["state for `stats`", "--allow-non-restored-state"]);
    let allowed = weir(dir, &["run", "new.toml", "--from-savepoint", &savepoint, "--allow-non-restored-state"]);
    allowed.expect_code(0).expect_stderr(&["dropping the state of stats", "`renamed` has no state"]);
}

/// A savepoint written by v2 (state version 2) cannot start v1, which reads
/// only version 1: the start fails naming the operator and both versions.
#[test]
fn newer_state_version_is_rejected_by_an_older_operator() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &text(20_000, 35));
    write(dir, "v2.toml", &job(&wasm("word_stats_v2"), "stats", 2, SLOW));
    write(dir, "v1.toml", &job(&wasm("word_stats_v1"), "stats", 2, SLOW));
    let (mut run, addr) = start_with_api(dir, "v2", "v2.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 1);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    let before = committed_lines(&dir.join("out")).len();
    let refused = weir(dir, &["run", "v1.toml", "--from-savepoint", &savepoint]);
    refused.expect_code(2).expect_stderr(&["operator `stats`", "state version 2", "word-stats-v1", "up to 1"]);
    assert_eq!(committed_lines(&dir.join("out")).len(), before, "a refused start must not touch the output");
}

/// Issue 11 #8: an operator whose own `restore` rejects the saved state (here
/// `dedup` given word-stats' state) fails the start at once with exit 2 and
/// its reason — bad input, not a failure to retry.
#[test]
fn state_an_operator_rejects_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &text(20_000, 41));
    write(dir, "v1.toml", &job(&wasm("word_stats_v1"), "stats", 2, SLOW));
    write(dir, "other.toml", &job(&wasm("dedup"), "stats", 2, SLOW));
    let (mut run, addr) = start_with_api(dir, "v1", "v1.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 1);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    let refused = weir(dir, &["run", "other.toml", "--from-savepoint", &savepoint]);
    // Issue 16 #4: the call that failed is named, and nothing says "resumed" before it.
    refused.expect_code(2).expect_stderr(&["operator `stats`", "failed in `restore`", "cannot restore"]);
    assert!(!refused.stderr.contains("restarting"), "bad state is not retried:\n{}", refused.stderr);
    assert!(!refused.stderr.contains("resumed from"), "\"resumed\" before a failed restore:\n{}", refused.stderr);
}

/// A savepoint is self-contained: moved elsewhere (the original deleted), it
/// still resumes the job exactly.
#[test]
fn relocated_savepoint_resumes_exactly() {
    let (tmp, text) = with_input(20_000, 36);
    let dir = tmp.path();
    write(dir, "job.toml", &job(&wasm("word_stats_v1"), "stats", 2, SLOW));
    let (mut run, addr) = start_with_api(dir, "run", "job.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 2);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    let moved = dir.join("elsewhere/backup");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&savepoint, &moved).unwrap();
    std::fs::remove_dir_all(dir.join("checkpoints")).unwrap();
    weir(dir, &["run", "job.toml", "--from-savepoint", moved.to_str().unwrap()]).expect_code(0);
    assert_output_exact(dir, &text);
}

/// `weir cancel` ends the job without a savepoint: exit 3, nothing
/// in-progress left, and what was committed is exactly-once so far.
#[test]
fn cancel_stops_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &text(20_000, 37));
    write(dir, "job.toml", &job(&wasm("word_stats_v1"), "stats", 2, SLOW));
    let (mut run, addr) = start_with_api(dir, "run", "job.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 1);
    weir(dir, &["cancel", "--api", &addr]).expect_code(0);
    let cancelled: Run = run.finish();
    cancelled.expect_code(3).expect_stderr(&["cancelled"]);
    let out = dir.join("out");
    assert!(hidden_files(&out).is_empty(), "in-progress files left behind: {:?}", hidden_files(&out));
    weir_tests::assert_exact_prefix(&counts_by_word(&committed_lines(&out)));
}

/// Off loopback the API needs a token; with one, requests without it are refused.
#[test]
fn api_off_loopback_requires_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &text(20_000, 38));
    write(dir, "job.toml", &job(&wasm("word_stats_v1"), "stats", 1, SLOW));
    weir(dir, &["run", "job.toml", "--api", "0.0.0.0:0"])
        .expect_code(2)
        .expect_stderr(&["not loopback", "--api-token"]);
    let mut run =
        Background::start(dir, "run", &["run", "job.toml", "--api", "0.0.0.0:0", "--api-token", "s3cret"], &[]);
    let port = api_address(dir, "run", &mut run, "control API on http://0.0.0.0:");
    let addr = format!("127.0.0.1:{port}");
    weir(dir, &["status", "--api", &addr]).expect_code(1).expect_stderr(&["401", "token"]);
    weir(dir, &["status", "--api", &addr, "--api-token", "wrong"]).expect_code(1).expect_stderr(&["401"]);
    weir(dir, &["status", "--api", &addr, "--api-token", "s3cret"]).expect_code(0);
    weir(dir, &["cancel", "--api", &addr, "--api-token", "s3cret"]).expect_code(0);
    run.finish().expect_code(3);
}

/// Issue 11 #7: on loopback without `--api-token`, the API still needs a
/// token — a random one per run, in a file only this user can read (where
/// the CLI finds it) and gone when the run ends. A local process without it
/// is refused.
#[test]
fn the_api_answers_only_the_user_who_started_the_job() {
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let runtime = dir.join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    write(dir, "in.txt", &text(20_000, 40));
    write(dir, "job.toml", &job(&wasm("word_stats_v1"), "stats", 1, SLOW));
    let mut run = Background::start(dir, "run", &["run", "job.toml", "--api", "127.0.0.1:0"], &env);
    let addr = api_address(dir, "run", &mut run, "control API on http://");
    let port = addr.rsplit(':').next().unwrap();
    let token_file = runtime.join(format!("weir/api/{port}.token"));
    assert_eq!(std::fs::metadata(&token_file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(token_file.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
    // Any other local process: no token, no control.
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    raw.write_all(b"POST /v1/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Every error answer is the documented JSON, whatever went wrong.
    let token = std::fs::read_to_string(&token_file).unwrap();
    let ask = |request: String| {
        let mut raw = std::net::TcpStream::connect(&addr).unwrap();
        raw.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        answer
    };
    let auth = format!("Authorization: Bearer {token}\r\nConnection: close\r\n");
    for (request, status) in [
        (
            format!(
                "POST /v1/savepoints HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 8\r\n\r\nnot json"
            ),
            "400",
        ),
        (
            format!(
                "POST /v1/savepoints HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"bogus\":1}}"
            ),
            "422",
        ),
        (format!("GET /v1/stop HTTP/1.1\r\nHost: x\r\n{auth}\r\n"), "405"),
        (format!("GET /v1/nothing HTTP/1.1\r\nHost: x\r\n{auth}\r\n"), "404"),
    ] {
        let answer = ask(request.clone());
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{request:?} answered {answer:?}");
        assert!(answer.contains("application/json") && answer.contains("{\"error\":"), "{answer}");
    }
    // The user's CLI finds the token.
    crate::weir_env(dir, &["status", "--api", &addr], &env).expect_code(0);
    crate::weir_env(dir, &["cancel", "--api", &addr], &env).expect_code(0);
    run.finish().expect_code(3);
    assert!(!token_file.exists(), "the token file outlived the run");
}

/// Records without a key on a `partition = "key"` edge are routed by their
/// value, and `count` must keep its state under that same key: counted at
/// parallelism 2, stopped with a savepoint and resumed at parallelism 1,
/// every value's updates are exactly 1, 2, …, N (none lost in the rescale,
/// none counted under an empty key).
#[test]
fn keyless_records_on_a_key_edge_keep_their_counts_across_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // One word per line: the source emits each as a record without a key.
    let words: String = text(2_500, 39)
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| format!("{}\n", w.to_lowercase()))
        .collect();
    write(dir, "in.txt", &words);
    let counting = |p: u32, rate: u32| {
        format!(
            "[job]\nname = \"sp\"\n\n[sources.lines]\nkind = \"file\"\npath = \"in.txt\"\nrate = {rate}\n\n\
             [operators.stats]\nbuiltin = \"count\"\ninput = \"lines\"\npartition = \"key\"\nparallelism = {p}\n\n\
             [sinks.out]\nkind = \"file\"\npath = \"out\"\ninput = \"stats\"\nparallelism = 2\n\n\
             [checkpoint]\ninterval = \"100ms\"\n"
        )
    };
    write(dir, "p2.toml", &counting(2, SLOW));
    write(dir, "p1.toml", &counting(1, 1_000_000));
    let (mut run, addr) = start_with_api(dir, "p2", "p2.toml", &[]);
    wait_for_checkpoints(dir, &mut run, 2);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    weir(dir, &["run", "p1.toml", "--from-savepoint", &savepoint])
        .expect_code(0)
        .expect_stderr(&["rescaling `stats` from 2 to 1"]);
    assert_output_exact(dir, &words);
}
