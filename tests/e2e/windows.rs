//! Event time end to end (issue 13): watermarks from the source, the
//! built-in `window` operator (tumbling and session windows, late records
//! to a side output), processing-time timers on the injectable clock, and
//! window results exactly once across kills and rescales. Every expected
//! result is computed here, independently, from the input the test wrote.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use weir_tests::{Rng, committed_lines, complete_checkpoints, wait_until};

use crate::savepoints::{start_with_api, stop_with_savepoint};
use crate::{Background, TIMEOUT, run_job, wasm, weir, write};

/// Event time of the first click.
const BASE: i64 = 1_700_000_000_000;
/// How far a click's timestamp may be behind the largest before it: the
/// input's disorder stays within the watermark's bound (3 s).
const DISORDER: i64 = 2_000;

/// One click: user, event time, amount.
type Click = (String, i64, i64);

/// `n` clicks of 30 users, 50 ms apart on average, each moved back by up
/// to [`DISORDER`] ms (seeded); then `late` clicks an hour before the rest.
fn clicks(n: usize, late: usize, seed: u64) -> (Vec<Click>, String) {
    let mut rng = Rng::new(seed);
    let mut all = Vec::with_capacity(n + late);
    for i in 0..n {
        let user = format!("u{}", rng.below(30));
        let ts = BASE + 50 * i as i64 - rng.below(DISORDER as u64 + 1) as i64;
        all.push((user, ts, 1 + rng.below(9) as i64));
    }
    for i in 0..late {
        all.push((format!("u{i}"), BASE - 3_600_000 + i as i64, 100));
    }
    let text = all.iter().map(|(u, ts, a)| format!("{{\"user\":\"{u}\",\"ts\":{ts},\"amount\":{a}}}\n")).collect();
    (all, text)
}

/// A window result: key, start, end, value.
type Fired = (String, i64, i64, i64);

/// Tumbling `size` windows summing `amount`, per user.
fn tumbling_sums(clicks: &[Click], size: i64) -> Vec<Fired> {
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (user, ts, amount) in clicks {
        *sums.entry((user.clone(), ts - ts.rem_euclid(size))).or_default() += amount;
    }
    sums.into_iter().map(|((user, start), sum)| (user, start, start + size, sum)).collect()
}

/// Session windows (clicks at most `gap` apart are one session) counting clicks, per user.
fn session_counts(clicks: &[Click], gap: i64) -> Vec<Fired> {
    let mut by_user: HashMap<&str, Vec<i64>> = HashMap::new();
    for (user, ts, _) in clicks {
        by_user.entry(user).or_default().push(*ts);
    }
    let mut out = Vec::new();
    for (user, mut times) in by_user {
        times.sort_unstable();
        let (mut start, mut last, mut count) = (times[0], times[0], 0);
        for t in times {
            if t - last > gap {
                out.push((user.to_owned(), start, last + gap, count));
                (start, count) = (t, 0);
            }
            last = t;
            count += 1;
        }
        out.push((user.to_owned(), start, last + gap, count));
    }
    out.sort();
    out
}

/// The window results committed under `dir/out`, sorted.
fn fired(dir: &Path) -> Vec<Fired> {
    let mut got: Vec<Fired> = committed_lines(&dir.join("out"))
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let int = |f: &str| v[f].as_i64().unwrap_or_else(|| panic!("{f} in {line:?}"));
            (v["key"].as_str().expect("a key").to_owned(), int("start"), int("end"), int("value"))
        })
        .collect();
    got.sort();
    got
}

/// Clicks from `clicks.jsonl` (key, timestamp and watermarks from the
/// records) → `win` (the built-in window operator with `window`, keyed) →
/// file sink `out/`; its `late` side output → file sink `late/`.
fn window_job(window: &str, sources: u32, parallelism: u32, extra: &str) -> String {
    format!(
        r#"
[job]
name = "win"
{extra}

[sources.clicks]
kind = "file"
path = "clicks.jsonl"
parallelism = {sources}
key = {{ json = "user" }}
timestamp = {{ json = "ts" }}
watermark = {{ max_out_of_orderness = "3s", interval = "0s" }}

[operators.win]
builtin = "window"
input = "clicks"
partition = "key"
parallelism = {parallelism}
config = {window}

[sinks.out]
kind = "file"
path = "out"
input = "win"
parallelism = {parallelism}

[sinks.late]
kind = "file"
path = "late"
input = "win.late"
"#
    )
}

const TUMBLING: &str = r#"{ kind = "tumbling", size = "10s", aggregate = "sum", field = "amount" }"#;
const SESSIONS: &str = r#"{ kind = "session", gap = "1s" }"#;

/// The same input gives the same windows and sessions at parallelism 1,
/// 3 and 8, chained into the sink or not, and the same records are late.
/// Their lateness is decided by a one-reader source, so it does not depend
/// on how readers interleave; a second run with three readers (no late
/// records) shows the minimum over inputs holds every window back enough.
#[test]
fn windows_and_sessions_equal_an_independent_computation_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (all, text) = clicks(6_000, 7, 41);
    write(dir, "clicks.jsonl", &text);
    let on_time = &all[..6_000];
    let late: Vec<String> = text.lines().skip(6_000).map(str::to_owned).collect();
    for (window, expected) in [(TUMBLING, tumbling_sums(on_time, 10_000)), (SESSIONS, session_counts(on_time, 1_000))] {
        for (sources, parallelism, chaining) in [(1, 1, true), (1, 3, true), (1, 8, false), (1, 3, false)] {
            let _ = std::fs::remove_dir_all(dir.join("out"));
            let _ = std::fs::remove_dir_all(dir.join("late"));
            let job = window_job(window, sources, parallelism, &format!("chaining = {chaining}"));
            let job = write(dir, "job.toml", &job);
            run_job(dir, &job, &[]).expect_code(0);
            let what = format!("{window} at parallelism {parallelism}, chaining {chaining}");
            assert_eq!(fired(dir), expected, "{what}");
            let mut got_late = committed_lines(&dir.join("late"));
            got_late.sort();
            let mut want_late = late.clone();
            want_late.sort();
            assert_eq!(got_late, want_late, "late records of {what}");
        }
    }
    // Three readers of one file: each reads a third, far apart in event time.
    write(dir, "clicks.jsonl", &text.lines().take(6_000).map(|l| format!("{l}\n")).collect::<String>());
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let job = write(dir, "job.toml", &window_job(SESSIONS, 3, 3, ""));
    run_job(dir, &job, &[]).expect_code(0);
    assert_eq!(fired(dir), session_counts(on_time, 1_000), "sessions with three readers");
}

/// The tumbling-window job, paced, with checkpoints every 100 ms.
fn paced(parallelism: u32) -> String {
    window_job(TUMBLING, 1, parallelism, "")
        .replace("parallelism = 1\nkey", "parallelism = 1\nrate = 4000\nkey")
        .replace("[sinks.late]", "[checkpoint]\ninterval = \"100ms\"\n\n[sinks.late]")
}

fn newest(dir: &Path) -> u64 {
    complete_checkpoints(&dir.join("checkpoints/win")).last().copied().unwrap_or(0)
}

/// SIGKILL five times at seeded moments (`WEIR_TEST_SEED` replays) while
/// windows are open and timers pending, then run to the end: every window
/// result is committed exactly once, and equals the independent one.
#[test]
fn window_results_are_exactly_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (all, text) = clicks(12_000, 0, 42);
    write(dir, "clicks.jsonl", &text);
    write(dir, "job.toml", &paced(3));
    let mut rng = Rng::from_env_or_time();
    let mut kills = 0;
    for round in 0..5 {
        let before = newest(dir);
        let mut run = Background::start(dir, &format!("run{round}"), &["run", "job.toml"], &[]);
        let more = 1 + rng.below(3);
        wait_until("new checkpoints", TIMEOUT, || run.exited() || newest(dir) >= before + more);
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        if run.exited() {
            break;
        }
        run.kill();
        kills += 1;
    }
    assert!(kills >= 2, "the job ended before it could be killed twice");
    weir(dir, &["run", "job.toml"]).expect_code(0).expect_stderr(&["restoring checkpoint"]);
    assert_eq!(fired(dir), tumbling_sums(&all, 10_000));
}

/// Rescale the window operator 2 → 5 → 1 through stop-with-savepoint,
/// with windows open and their timers pending each time: every window is
/// reported once, with its full sum.
#[test]
fn windows_rescale_through_savepoints_with_pending_timers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (all, text) = clicks(12_000, 0, 43);
    write(dir, "clicks.jsonl", &text);
    for p in [2, 5, 1] {
        // File sinks keep their parallelism; the window operator rescales.
        let mut job =
            paced(p).replace(&format!("input = \"win\"\nparallelism = {p}"), "input = \"win\"\nparallelism = 1");
        if p == 1 {
            job = job.replace("rate = 4000\n", "");
        }
        write(dir, &format!("p{p}.toml"), &job);
    }
    let (mut run, addr) = start_with_api(dir, "p2", "p2.toml", &[]);
    wait_until("checkpoints at parallelism 2", TIMEOUT, || run.exited() || newest(dir) >= 2);
    let first = stop_with_savepoint_into(dir, &addr, run);
    let inspected = weir(dir, &["inspect", &first]);
    inspected.expect_code(0);
    assert!(inspected.stdout.contains("event time read up to"), "{}", inspected.stdout);
    let before = newest(dir);
    let (mut run, addr) = start_with_api(dir, "p5", "p5.toml", &["--from-savepoint", &first]);
    wait_until("checkpoints at parallelism 5", TIMEOUT, || run.exited() || newest(dir) >= before + 2);
    let second = stop_with_savepoint_into(dir, &addr, run);
    weir(dir, &["run", "p1.toml", "--from-savepoint", &second])
        .expect_code(0)
        .expect_stderr(&["rescaling `win` from 5 to 1"]);
    assert_eq!(fired(dir), tumbling_sums(&all, 10_000));
}

/// [`stop_with_savepoint`], checking the job had open windows to carry.
fn stop_with_savepoint_into(dir: &Path, addr: &str, run: Background) -> String {
    let path = stop_with_savepoint(dir, addr, run);
    let inspected = weir(dir, &["inspect", &path]);
    assert!(inspected.stdout.contains("win"), "{}", inspected.stdout);
    path
}

/// Processing-time timers follow the host's one clock (`WEIR_CLOCK_FILE`):
/// records flow while it stands still and no timer fires; once the test
/// moves it past the timers, each fires, once.
#[test]
fn processing_time_timers_fire_when_the_injected_clock_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let clock = write(dir, "clock", "1000000");
    let job = format!(
        r#"
[sources.events]
kind = "generator"
format = "events"
vocabulary = 3
rate = 200

[operators.alarm]
wasm = "{}"
input = "events"
partition = "key"
config = {{ after = 5000 }}

[sinks.out]
kind = "stdout"
input = "alarm"
"#,
        wasm("alarm")
    );
    write(dir, "job.toml", &job);
    let mut run = Background::start(dir, "run", &["run", "job.toml", "--quiet"], &[("WEIR_CLOCK_FILE", &clock)]);
    let out = || std::fs::read_to_string(dir.join("run.stdout")).unwrap_or_default();
    // Many ticks (every 100 ms) pass while 300 records go by at time 1 000 000.
    wait_until("records at the stopped clock", TIMEOUT, || run.exited() || out().matches("seen").count() >= 300);
    assert!(!run.exited(), "the job ended early");
    assert!(out().lines().filter(|l| l.starts_with("seen")).all(|l| l.ends_with(" at 1000000")), "{}", out());
    assert!(!out().contains("fired"), "a timer fired before its time:\n{}", out());
    // Every timer is at 1 005 000 (one per key: registering it again keeps one).
    let text = out();
    let mut keys: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("seen ")?.split(' ').next()).collect();
    keys.sort_unstable();
    keys.dedup();
    write(dir, "clock", "1005000");
    wait_until("timers to fire", TIMEOUT, || run.exited() || out().matches("fired").count() >= keys.len());
    // Records keep coming (and set timers at 1 010 000): give a wrong second firing time to show.
    let seen = out().matches("seen").count();
    wait_until("more records", TIMEOUT, || run.exited() || out().matches("seen").count() >= seen + 100);
    let text = out();
    let fired: Vec<&str> = text.lines().filter(|l| l.starts_with("fired")).collect();
    let mut fired_keys: Vec<&str> = fired.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    fired_keys.sort_unstable();
    assert_eq!(fired_keys, keys, "each key's timer fires once: {fired:?}");
    assert!(fired.iter().all(|l| l.ends_with(" 1005000 at 1005000")), "{fired:?}");
    run.kill();
}

/// An operator built against the previous operator interface
/// (`weir:operator@0.1.0`) is refused with what to do, not a linker error.
#[test]
fn an_operator_built_for_the_old_interface_says_to_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", "a\n");
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stamp-weir-operator-0.1.0.wasm");
    let job =
        crate::pipeline("in.txt", &format!("[operators.old]\nwasm = \"{}\"\ninput = \"lines\"", old.display()), "old");
    let job = write(dir, "job.toml", &job);
    run_job(dir, &job, &[]).expect_code(2).expect_stderr(&[
        "weir:operator@0.1.0",
        "another version of Weir's operator interface",
        "weir build",
    ]);
}

/// Event-time settings that cannot work are refused before the job starts
/// (exit 2, naming the table): an `idle_timeout` under 1 ms (every input
/// idle at once: event time would never move), a side output no source
/// has, and a parallel `window` not behind `partition = "key"` (each key's
/// windows would be split over subtasks and fire more than once).
#[test]
fn event_time_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "clicks.jsonl", "{\"user\":\"a\",\"ts\":1}\n");
    let base = window_job(TUMBLING, 1, 2, "");
    let cases = [
        (
            base.replace("max_out_of_orderness = \"3s\"", "max_out_of_orderness = \"3s\", idle_timeout = \"0s\""),
            vec!["[sources.clicks]", "idle_timeout", "under 1 ms"],
        ),
        (
            base.replace("input = \"win.late\"", "input = \"clicks.errors\""),
            vec!["[sinks.late]", "`clicks` has no side output `errors`", "on_bad_record = \"side-output\""],
        ),
        (base.replace("partition = \"key\"\n", ""), vec!["[operators.win]", "partition = \"key\""]),
    ];
    for (job, needles) in cases {
        let job = write(dir, "job.toml", &job);
        weir(dir, &["validate", &job]).expect_code(2).expect_stderr(&needles);
    }
}
