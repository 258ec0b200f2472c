//! Checkpoints and recovery: SIGKILL and resume, in-process failover after
//! guest traps, fallback past damaged checkpoints, barrier alignment with a
//! slow input. Every test checks the exactly-once property of the combined
//! output: each word's count updates are exactly 1, 2, …, N.

use std::path::Path;
use std::time::Duration;

use weir_tests::{
    Rng, S3Server, assert_exact, assert_exact_prefix, committed_lines, complete_checkpoints, counts_by_word,
    expected_counts, hidden_files, text, wait_until,
};

use crate::{Background, TIMEOUT, assert_output_exact, wasm, weir, weir_env, with_input, write};

/// WordCount with checkpointing: `lines` (file `in.txt`, at most `rate`
/// lines/s) → `tokenize` ×2 → keyed `count` ×2 → file sink `out/` ×2,
/// plus `extra` TOML (e.g. a `[restart]` table or more `[checkpoint]` keys).
fn checkpointed_wordcount(rate: u32, extra: &str) -> String {
    wordcount_behind("", rate, &format!("[checkpoint]\ninterval = \"150ms\"\n{extra}"))
}

/// As [`checkpointed_wordcount`], with an operator `first` (a TOML table
/// `[operators.first]` without its `input`, or "" for none) between the
/// source and `tokenize`, and `tail` (whole tables) appended.
pub fn wordcount_behind(first: &str, rate: u32, tail: &str) -> String {
    let (first, tokenize_input) =
        if first.is_empty() { (String::new(), "lines") } else { (format!("{first}\ninput = \"lines\"\n"), "first") };
    format!(
        r#"
[job]
name = "wc"

[sources.lines]
kind = "file"
path = "in.txt"
rate = {rate}

{first}
[operators.tokenize]
builtin = "tokenize"
input = "{tokenize_input}"
parallelism = 2

[operators.count]
builtin = "count"
input = "tokenize"
partition = "key"
parallelism = 2

[sinks.out]
kind = "file"
path = "out"
input = "count"
parallelism = 2

{tail}
"#
    )
}

/// The newest complete checkpoint of job `wc` in `dir/checkpoints`, or 0.
fn newest_checkpoint(dir: &Path) -> u64 {
    complete_checkpoints(&dir.join("checkpoints/wc")).last().copied().unwrap_or(0)
}

/// Runs `weir run job.toml` (logging at info) to completion.
fn run_to_end(dir: &Path) -> weir_tests::Run {
    let run = weir(dir, &["run", "job.toml"]);
    run.expect_code(0);
    run
}

/// The issue's main scenario: WordCount over 1 million words, parallelism 2,
/// a 150 ms interval, SIGKILLed at several random points (during start-up,
/// right after a checkpoint completes, a few checkpoints later, at a random
/// moment between checkpoints) and rerun each time; the combined output is
/// exactly what one uninterrupted run produces.
#[test]
fn sigkill_at_random_points_then_resume_is_exactly_once() {
    let (tmp, text) = with_input(125_000, 11); // 8 words per line: 1,000,000 words
    let dir = tmp.path();
    write(dir, "job.toml", &checkpointed_wordcount(50_000, ""));
    let mut rng = Rng::from_env_or_time();
    let mut kills = Vec::new();
    for round in 0..5 {
        let before = newest_checkpoint(dir);
        let mut run = Background::start(dir, &format!("run{round}"), &["run", "job.toml"], &[]);
        let point = rng.below(4);
        let mut reached = |what: &str, done: &dyn Fn() -> bool| {
            wait_until(what, TIMEOUT, || run.exited() || done());
        };
        match point {
            0 => reached("start-up", &|| {
                std::fs::read_to_string(dir.join(format!("run{round}.stderr")))
                    .is_ok_and(|s| s.contains("operator `count`"))
            }),
            1 => reached("a new checkpoint", &|| newest_checkpoint(dir) > before),
            2 => {
                let more = 2 + rng.below(3);
                reached("a few new checkpoints", &|| newest_checkpoint(dir) >= before + more);
            }
            _ => {
                reached("a new checkpoint", &|| newest_checkpoint(dir) > before);
                // Anywhere between two checkpoints: the point is random, the assertions are not.
                std::thread::sleep(Duration::from_millis(rng.below(150)));
            }
        }
        if run.exited() {
            run.finish().expect_code(0);
            break;
        }
        run.kill();
        kills.push((point, newest_checkpoint(dir)));
    }
    assert!(kills.len() >= 2, "the job finished too fast to be killed more than {} time(s)", kills.len());
    let last = run_to_end(dir);
    if kills.iter().any(|&(_, newest)| newest > 0) {
        last.expect_stderr(&["restoring checkpoint"]);
    }
    assert_output_exact(dir, &text);
    // Retention held across the kills: at most `retain` (default 3) complete
    // checkpoints, and nothing the killed runs left half-written.
    let store = dir.join("checkpoints/wc");
    let complete = complete_checkpoints(&store);
    assert!((1..=3).contains(&complete.len()), "complete checkpoints kept: {complete:?}");
    let all: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chk-"))
        .collect();
    assert_eq!(all.len(), complete.len(), "incomplete checkpoints left behind: {all:?} (complete: {complete:?})");
}

/// A pipeline whose operator `first` (the `panic_at` guest) panics at its
/// `at`-th line: in the first attempt only (`attempts = 1`), or in every attempt.
fn trapping_wordcount(at: u32, only_first_attempt: bool, restart: &str) -> String {
    let attempts = if only_first_attempt { ", attempts = 1" } else { "" };
    let boom = format!(
        "[operators.first]\nwasm = \"{}\"\npartition = \"rebalance\"\nparallelism = 2\nconfig = {{ at = {at}{attempts} }}",
        wasm("panic_at")
    );
    wordcount_behind(&boom, 40_000, &format!("[checkpoint]\ninterval = \"100ms\"\n\n[restart]\n{restart}"))
}

/// A guest panic mid-stream fails over in-process: every module is
/// reinstantiated from the latest checkpoint and the output stays exact.
#[test]
fn guest_trap_fails_over_in_process_with_exact_output() {
    let (tmp, text) = with_input(40_000, 5);
    let dir = tmp.path();
    write(dir, "job.toml", &trapping_wordcount(8_000, true, "strategy = \"fixed-delay\"\ndelay = \"20ms\""));
    let run = run_to_end(dir);
    run.expect_stderr(&[
        "operator `first`",
        "boom at record 8000",
        "restarting in 20ms (restart 1 of 3",
        "restoring checkpoint",
    ]);
    assert_output_exact(dir, &text);
}

/// A guest that fails in every attempt makes the job fail after the
/// configured restarts, with the last cause; the output written so far is
/// still exactly-once as far as it goes, and nothing in-progress is left.
#[test]
fn guest_trapping_every_attempt_fails_after_the_configured_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &text(40_000, 6));
    let restart = "strategy = \"exponential-backoff\"\nattempts = 2\ndelay = \"10ms\"\nmax_delay = \"15ms\"";
    write(dir, "job.toml", &trapping_wordcount(3_000, false, restart));
    let run = weir(dir, &["run", "job.toml"]);
    run.expect_code(1).expect_stderr(&[
        "restarting in 10ms (restart 1 of 2",
        "restarting in 15ms (restart 2 of 2",
        "operator `first`",
        "boom at record 3000",
        "restarted 2 time(s)",
    ]);
    assert_eq!(run.stderr.matches("restarting in").count(), 2, "{}", run.stderr);
    let out = dir.join("out");
    assert!(hidden_files(&out).is_empty(), "in-progress files left behind: {:?}", hidden_files(&out));
    assert_exact_prefix(&counts_by_word(&committed_lines(&out)));
}

/// A corrupted state object in the newest checkpoint: the host says so,
/// restores the previous complete checkpoint, and the output stays exact.
#[test]
fn corrupt_state_object_falls_back_to_the_previous_checkpoint() {
    let (tmp, text) = with_input(60_000, 8);
    let dir = tmp.path();
    write(dir, "job.toml", &checkpointed_wordcount(40_000, ""));
    let mut run = Background::start(dir, "first", &["run", "job.toml"], &[]);
    wait_until("three checkpoints", TIMEOUT, || run.exited() || newest_checkpoint(dir) >= 3);
    assert!(!run.exited(), "the job ended before three checkpoints: {}", run.finish().stderr);
    run.kill();
    let newest = newest_checkpoint(dir);
    let object = dir.join(format!("checkpoints/wc/chk-{newest:010}/count/0.state"));
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&object, bytes).unwrap();
    let run = run_to_end(dir);
    run.expect_stderr(&[
        &format!("checkpoint {newest} is unusable"),
        "checksum",
        "falling back to the previous complete checkpoint",
        &format!("restoring checkpoint {}", newest - 1),
    ]);
    assert_output_exact(dir, &text);
}

/// A deleted state object in the final checkpoint of a finished job: a rerun
/// falls back to the one before, replays from there — replacing output the
/// final checkpoint had committed — and the output is still exact.
#[test]
fn missing_state_object_falls_back_even_past_committed_output() {
    let (tmp, text) = with_input(30_000, 9);
    let dir = tmp.path();
    write(dir, "job.toml", &checkpointed_wordcount(60_000, "retain = 5"));
    run_to_end(dir);
    let newest = newest_checkpoint(dir);
    assert!(newest >= 2, "expected several checkpoints, the newest is {newest}");
    std::fs::remove_file(dir.join(format!("checkpoints/wc/chk-{newest:010}/out/1.state"))).unwrap();
    let run = run_to_end(dir);
    run.expect_stderr(&[&format!("checkpoint {newest} is unusable"), &format!("restoring checkpoint {}", newest - 1)]);
    assert_output_exact(dir, &text);
}

/// `--fresh` ignores the finished job's checkpoints and processes the input
/// again (into a new output directory); without it, a finished job has
/// nothing left to do and says so.
#[test]
fn rerun_of_a_finished_job_and_fresh() {
    let (tmp, text) = with_input(2_000, 10);
    let dir = tmp.path();
    write(dir, "job.toml", &checkpointed_wordcount(1_000_000, ""));
    run_to_end(dir);
    let again = run_to_end(dir);
    again.expect_stderr(&["is the job's final one", "--fresh"]);
    assert_output_exact(dir, &text);
    let fresh = weir(dir, &["run", "job.toml", "--fresh", "--set", "sinks.out.path=out2"]);
    fresh.expect_code(0).expect_stderr(&["starting fresh"]);
    assert!(!fresh.stderr.contains("restoring checkpoint"), "{}", fresh.stderr);
    let out2 = dir.join("out2");
    assert_exact(&counts_by_word(&committed_lines(&out2)), &expected_counts(&text));
}

/// Barrier alignment: `count` ×2 reads a keyed fan-in from two sources, one
/// unthrottled and one 50× slower. Killed mid-run and resumed, the output
/// is exact — which needs every snapshot to cover exactly the records
/// before its barrier on both inputs.
#[test]
fn barrier_alignment_with_a_slow_input_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let fast = text(20_000, 21);
    let slow = text(1_500, 22);
    write(dir, "fast.txt", &fast);
    write(dir, "slow.txt", &slow);
    let job = r#"
[job]
name = "wc"

[sources.fast]
kind = "file"
path = "fast.txt"
rate = 25000

[sources.slow]
kind = "file"
path = "slow.txt"
rate = 500

[operators.tokenize_fast]
builtin = "tokenize"
input = "fast"

[operators.tokenize_slow]
builtin = "tokenize"
input = "slow"

[operators.count]
builtin = "count"
input = ["tokenize_fast", "tokenize_slow"]
partition = "key"
parallelism = 2

[sinks.out]
kind = "file"
path = "out"
input = "count"
parallelism = 2

[checkpoint]
interval = "100ms"
"#;
    write(dir, "job.toml", job);
    let mut run = Background::start(dir, "first", &["run", "job.toml"], &[]);
    wait_until("two checkpoints", TIMEOUT, || run.exited() || newest_checkpoint(dir) >= 2);
    assert!(!run.exited(), "the job ended too early: {}", run.finish().stderr);
    run.kill();
    run_to_end(dir).expect_stderr(&["restoring checkpoint"]);
    assert_output_exact(dir, &format!("{fast}{slow}"));
}

/// Checkpoints through `s3://` against a real S3-compatible server on
/// loopback: written while the job runs, listed, restored after SIGKILL.
#[test]
fn checkpoints_to_s3_are_listed_and_restored() {
    let server = S3Server::start(&["weir-test"]);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (tmp, text) = with_input(40_000, 12);
    let dir = tmp.path();
    write(dir, "job.toml", &checkpointed_wordcount(40_000, "store = \"s3://weir-test/ckpt\""));
    let in_bucket = server.root.path().join("weir-test/ckpt/wc");
    let mut run = Background::start(dir, "first", &["run", "job.toml"], &env);
    wait_until("two checkpoints in the bucket", TIMEOUT, || {
        run.exited() || complete_checkpoints(&in_bucket).len() >= 2
    });
    assert!(!run.exited(), "the job ended before two checkpoints: {}", run.finish().stderr);
    run.kill();
    assert!(!dir.join("checkpoints").exists(), "checkpoints went to local disk, not S3");
    let newest = *complete_checkpoints(&in_bucket).last().unwrap();
    let listed = weir_env(dir, &["checkpoints", "list", "job.toml"], &env);
    listed.expect_code(0);
    assert!(
        listed.stdout.lines().any(|l| l.split_whitespace().take(2).eq([newest.to_string().as_str(), "complete"])),
        "checkpoint {newest} not listed as complete:\n{}",
        listed.stdout
    );
    let resumed = weir_env(dir, &["run", "job.toml"], &env);
    resumed.expect_code(0).expect_stderr(&["from s3://weir-test/ckpt", "restoring checkpoint"]);
    assert_output_exact(dir, &text);
}

/// Checkpoints that time out are abandoned (their files deleted) and counted
/// against `tolerable_failures`; one too many fails the attempt over, and
/// the restarted job — whose snapshots are fast again — finishes exactly.
#[test]
fn timed_out_checkpoints_are_abandoned_and_fail_over_past_the_tolerance() {
    let (tmp, text) = with_input(20_000, 13);
    let dir = tmp.path();
    let slow = format!(
        "[operators.first]\nwasm = \"{}\"\npartition = \"rebalance\"\nparallelism = 2\nconfig = {{ snapshot_ms = 400, attempts = 1 }}",
        wasm("spin")
    );
    let tail = "[checkpoint]\ninterval = \"100ms\"\ntimeout = \"150ms\"\ntolerable_failures = 1\n\n[restart]\ndelay = \"20ms\"";
    let job = wordcount_behind(&slow, 20_000, tail);
    write(dir, "job.toml", &job);
    let run = run_to_end(dir);
    run.expect_stderr(&[
        "abandoned: not complete after 150ms",
        "more than [checkpoint] tolerable_failures = 1",
        "restarting in 20ms",
        "checkpoint",
    ]);
    assert!(run.stderr.matches("abandoned").count() >= 2, "{}", run.stderr);
    // Ids never repeat within a run, even after a failover from abandoned checkpoints.
    assert!(!run.stderr.contains("checkpoint 1 complete"), "{}", run.stderr);
    assert_output_exact(dir, &text);
    let listed = weir(dir, &["checkpoints", "list", "job.toml"]);
    listed.expect_code(0);
    assert!(!listed.stdout.contains("incomplete"), "abandoned checkpoints left behind:\n{}", listed.stdout);
}

/// A file added to the input directory between a SIGKILL and the rerun, one
/// that sorts before the file being read: the rerun refuses the changed
/// input (exit 2, naming the new file) and touches no output, instead of
/// seeking into the wrong file; with the directory as it was, the job
/// resumes exactly where it stood.
#[test]
fn a_file_added_to_the_input_before_a_rerun_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("in")).unwrap();
    let (b, c) = (text(3_000, 41), text(3_000, 42));
    write(dir, "in/b.txt", &b);
    write(dir, "in/c.txt", &c);
    write(dir, "job.toml", &checkpointed_wordcount(4_000, "").replace("path = \"in.txt\"", "path = \"in\""));
    let mut run = Background::start(dir, "first", &["run", "job.toml"], &[]);
    wait_until("two checkpoints", TIMEOUT, || run.exited() || newest_checkpoint(dir) >= 2);
    assert!(!run.exited(), "the job ended too early: {}", run.finish().stderr);
    run.kill();
    // Longer than anything read so far, so an index-based position lands inside it.
    write(dir, "in/a.txt", &text(10_000, 43));
    let out = dir.join("out");
    let before = committed_lines(&out);
    let refused = weir(dir, &["run", "job.toml"]);
    refused.expect_code(2).expect_stderr(&["input", "changed since the checkpoint", "added: a.txt"]);
    assert_eq!(committed_lines(&out), before, "a refused restore must not touch the output");
    std::fs::rename(dir.join("in/a.txt"), dir.join("a.txt")).unwrap();
    run_to_end(dir).expect_stderr(&["restoring checkpoint"]);
    assert_output_exact(dir, &format!("{b}{c}"));
}
