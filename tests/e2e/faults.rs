//! Exactly-once under operator mistakes and storage faults (issue 10): one
//! regression test per defect, each failing without its fix — savepoints
//! that deleted each other, a savepoint that committed output before the
//! first checkpoint, two runs of one job, transient read errors taken for
//! damage, a final checkpoint whose failed upload hung the job, hostile
//! store contents, SIGTERM — plus a seeded randomized sequence of runs,
//! kills, savepoints and injected storage faults whose failing seed replays.

use std::path::{Path, PathBuf};

use weir_tests::{Rng, committed_lines, complete_checkpoints, wait_until};

use crate::{Background, TIMEOUT, assert_output_exact, weir, with_input, write};

/// `lines` (file `in.txt`, `rate` lines/s) → `tokenize` ×2 → keyed `count`
/// ×2 → file sink `out/` ×2, job `f`, plus `tail` (e.g. `[checkpoint]`).
fn wordcount(rate: u32, tail: &str) -> String {
    crate::recovery::wordcount_behind("", rate, tail).replace("name = \"wc\"", "name = \"f\"")
}

const CHECKPOINTS: &str = "[checkpoint]\ninterval = \"100ms\"\n";

/// Starts `weir run job.toml --api 127.0.0.1:0 EXTRA…`; returns it and its API address.
pub fn start(dir: &Path, name: &str, extra: &[&str]) -> (Background, String) {
    match try_start(dir, name, extra) {
        Ok(started) => started,
        Err(run) => panic!("weir exited early:\n{}", run.stderr),
    }
}

/// As [`start`]; a run that exits before serving its API comes back as `Err`.
fn try_start(dir: &Path, name: &str, extra: &[&str]) -> Result<(Background, String), weir_tests::Run> {
    let mut args = vec!["run", "job.toml", "--api", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut run = Background::start(dir, name, &args, &[]);
    let log = dir.join(format!("{name}.stderr"));
    let mut addr = String::new();
    wait_until("the control API", TIMEOUT, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find("control API on http://") {
            addr = text[at + 22..].split_whitespace().next().unwrap_or("").to_owned();
        }
        !addr.is_empty() || run.exited()
    });
    if addr.is_empty() {
        return Err(run.finish());
    }
    Ok((run, addr))
}

fn checkpoints(dir: &Path) -> Vec<u64> {
    complete_checkpoints(&dir.join("checkpoints/f"))
}

fn wait_for_checkpoint(dir: &Path, run: &mut Background) {
    wait_until("a checkpoint", TIMEOUT, || run.exited() || !checkpoints(dir).is_empty());
    assert!(!run.exited(), "the job ended before its first checkpoint");
}

/// `weir savepoint` (or `stop --savepoint`) into `target`; the path printed.
pub fn savepoint(dir: &Path, addr: &str, stop: bool, target: &str) -> PathBuf {
    let args: &[&str] = if stop {
        &["stop", "--savepoint", "--api", addr, "--target", target]
    } else {
        &["savepoint", "--api", addr, "--target", target]
    };
    let taken = weir(dir, args);
    taken.expect_code(0);
    let path = PathBuf::from(taken.stdout.trim());
    assert!(path.join("_manifest.json").is_file(), "no savepoint at {path:?}");
    path
}

/// Every file under `dir` with its contents, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    files.sort();
    files
}

/// Defect 1, without `[checkpoint]`: stop with a savepoint, resume from it,
/// stop again into the same target — the first savepoint is still there
/// (ids continue after the savepoint resumed from; directories are unique).
#[test]
fn a_savepoint_never_deletes_another() {
    let (tmp, text) = with_input(20_000, 101);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, ""));
    let (run, addr) = start(dir, "first", &[]);
    let first = savepoint(dir, &addr, true, "sp");
    run.finish().expect_code(0);
    let before = snapshot(&first);
    let (run, addr) = start(dir, "second", &["--from-savepoint", first.to_str().unwrap()]);
    let second = savepoint(dir, &addr, true, "sp");
    run.finish().expect_code(0);
    assert_ne!(first, second);
    assert_eq!(snapshot(&first), before, "the first savepoint was touched");
    let run = weir(dir, &["run", "job.toml", "--quiet", "--from-savepoint", second.to_str().unwrap()]);
    run.expect_code(0);
    assert_output_exact(dir, &text);
}

/// Defect 1, with `[checkpoint]`: a savepoint, a SIGKILL, a rerun and
/// another savepoint into the same target leave the first one whole.
#[test]
fn a_savepoint_survives_a_kill_and_the_next_savepoint() {
    let (tmp, _) = with_input(20_000, 102);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, CHECKPOINTS));
    let (mut run, addr) = start(dir, "first", &[]);
    wait_for_checkpoint(dir, &mut run);
    let first = savepoint(dir, &addr, false, "sp");
    run.kill();
    let before = snapshot(&first);
    let (run, addr) = start(dir, "second", &[]);
    let second = savepoint(dir, &addr, false, "sp");
    assert_ne!(first, second);
    run.kill();
    assert_eq!(snapshot(&first), before, "the first savepoint was touched");
}

/// Defect 2: a savepoint taken before the first checkpoint commits no
/// output, so a kill and a rerun from the beginning duplicate nothing.
#[test]
fn a_savepoint_before_the_first_checkpoint_commits_nothing() {
    let (tmp, text) = with_input(20_000, 103);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, "[checkpoint]\ninterval = \"1h\"\n"));
    let (run, addr) = start(dir, "first", &[]);
    savepoint(dir, &addr, false, "sp");
    run.kill();
    assert!(checkpoints(dir).is_empty(), "no checkpoint was meant to complete");
    let rerun = weir(dir, &["run", "job.toml", "--quiet"]);
    rerun.expect_code(0);
    assert_output_exact(dir, &text);
}

/// A savepoint taken while the job runs leaves its last output uncommitted
/// until the next checkpoint; a rerun before that removes it. Resuming from
/// that savepoint then is refused up front (exit 2), saying why — not a
/// failure at run time (found in review).
#[test]
fn a_savepoint_whose_output_was_rolled_back_is_refused_clearly() {
    let (tmp, _) = with_input(20_000, 117);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, "[checkpoint]\ninterval = \"1h\"\n"));
    let (run, addr) = start(dir, "first", &[]);
    let sp = savepoint(dir, &addr, false, "sp");
    run.kill();
    weir(dir, &["run", "job.toml", "--quiet", "--no-api"]).expect_code(0);
    let resumed = weir(dir, &["run", "job.toml", "--quiet", "--no-api", "--from-savepoint", sp.to_str().unwrap()]);
    resumed.expect_code(2).expect_stderr(&["is gone", "stop savepoint"]);
}

/// Defect 3: a second `weir run` of a live job is refused (exit 2) naming
/// the first; `--takeover` fences the first, which stops without
/// committing anything more, and the output is still exactly-once.
#[test]
fn a_second_run_is_refused_and_takeover_fences_the_first() {
    let (tmp, text) = with_input(20_000, 104);
    let dir = tmp.path();
    // No restarts: a takeover must not cost the new run a failover either.
    write(dir, "job.toml", &wordcount(8_000, &format!("{CHECKPOINTS}[restart]\nstrategy = \"none\"\n")));
    let (mut first, _) = start(dir, "first", &[]);
    wait_for_checkpoint(dir, &mut first);
    let refused = weir(dir, &["run", "job.toml", "--quiet", "--no-api"]);
    refused.expect_code(2).expect_stderr(&["already running", &format!("pid {}", first.child.id()), "--takeover"]);
    assert!(!first.exited(), "the refused run must not disturb the first");
    let second = Background::start(dir, "second", &["run", "job.toml", "--no-api", "--takeover"], &[]);
    let fenced = first.finish();
    fenced.expect_code(2).expect_stderr(&["taken over"]);
    // The new owner waited for the fenced run to stop before touching the
    // output, so nothing of the fenced run is left behind either.
    second.finish().expect_code(0).expect_stderr(&["waiting for the fenced run"]);
    assert_output_exact(dir, &text);
}

/// Defect 3 for a job without `[checkpoint]` (no store, no ownership
/// record): a second run writing the same output directory is refused.
#[test]
fn two_runs_never_share_an_output_directory() {
    let (tmp, text) = with_input(20_000, 115);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, ""));
    let (first, _) = start(dir, "first", &[]);
    let second = weir(dir, &["run", "job.toml", "--quiet", "--no-api"]);
    second.expect_code(2).expect_stderr(&["sink `out`", "is being written by another weir process"]);
    first.finish().expect_code(0);
    assert_output_exact(dir, &text);
}

/// Defect 4: the newest checkpoint's objects cannot be read (a failing
/// store, not damage): the run fails, retrying, and touches no output —
/// it does not fall back and retract what that checkpoint committed.
#[test]
fn a_failing_store_on_restore_is_not_damage() {
    let (tmp, _) = with_input(2_000, 105);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(1_000_000, CHECKPOINTS));
    weir(dir, &["run", "job.toml", "--quiet"]).expect_code(0);
    let newest = *checkpoints(dir).last().expect("a final checkpoint");
    let before = snapshot(&dir.join("out"));
    let store = format!("checkpoint.store=faulty+file://checkpoints?get=1&only=chk-{newest:010}/");
    let rerun = weir(dir, &["run", "job.toml", "--set", &store, "--set", "restart.attempts=1"]);
    rerun.expect_code(1).expect_stderr(&["injected fault"]);
    assert!(!rerun.stderr.contains("unusable"), "a read error is not damage:\n{}", rerun.stderr);
    assert_eq!(snapshot(&dir.join("out")), before, "output was touched");
}

/// Defect 8: the final checkpoint's upload fails once; with
/// `tolerable_failures = 1` the job retries it and ends instead of hanging.
#[test]
fn a_failed_final_checkpoint_is_retried_not_waited_for() {
    let (tmp, text) = with_input(2_000, 106);
    let dir = tmp.path();
    let tail = "[checkpoint]\ninterval = \"1h\"\ntolerable_failures = 1\n\
                store = \"faulty+file://checkpoints?put=1&only=chk-0000000001/\"\n";
    write(dir, "job.toml", &wordcount(1_000_000, tail));
    let run = weir(dir, &["run", "job.toml"]);
    run.expect_code(0).expect_stderr(&["checkpoint 1 abandoned", "checkpoint 2 complete (final)"]);
    assert_output_exact(dir, &text);
}

/// Defect 9: directories in the store that Weir did not write — an id that
/// overflows, garbage manifests — are ignored or reported, never a panic.
#[test]
fn hostile_store_contents_do_not_panic() {
    let (tmp, text) = with_input(2_000, 107);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(1_000_000, CHECKPOINTS));
    for name in ["chk-18446744073709551615", "chk-99999999999999999999", "chk-x"] {
        std::fs::create_dir_all(dir.join("checkpoints/f").join(name)).unwrap();
        write(&dir.join("checkpoints/f").join(name), "_manifest.json", "{ not json");
    }
    std::fs::create_dir_all(dir.join("checkpoints/f/_owners")).unwrap();
    write(&dir.join("checkpoints/f/_owners"), "0000000009.json", "garbage");
    // An epoch beyond what Weir uses is not Weir's: ignored, not built upon.
    write(&dir.join("checkpoints/f/_owners"), "281474976710656.json", "{}");
    let run = weir(dir, &["run", "job.toml", "--quiet"]);
    run.expect_code(0);
    assert_output_exact(dir, &text);
    let listed = weir(dir, &["checkpoints", "list", "job.toml"]);
    listed.expect_code(0);
    assert!(!listed.stderr.contains("panicked"), "{}", listed.stderr);
}

/// Defect 11: SIGTERM cancels in an orderly way (exit 3, said so); a rerun
/// resumes and the output is exact.
#[test]
fn sigterm_cancels_in_an_orderly_way() {
    let (tmp, text) = with_input(20_000, 108);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, CHECKPOINTS));
    let (mut run, _) = start(dir, "first", &[]);
    wait_for_checkpoint(dir, &mut run);
    let pid = run.child.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    run.finish().expect_code(3).expect_stderr(&["SIGTERM", "cancel"]);
    weir(dir, &["run", "job.toml", "--quiet"]).expect_code(0);
    assert_output_exact(dir, &text);
}

/// A checkpointed WordCount (input seeded by `seed`) run until its first
/// checkpoint, then stopped with a savepoint: its directory, input and savepoint.
fn stopped_with_a_savepoint(seed: u64) -> (tempfile::TempDir, String, PathBuf) {
    let (tmp, text) = with_input(20_000, seed);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, CHECKPOINTS));
    let (mut run, addr) = start(dir, "first", &[]);
    wait_for_checkpoint(dir, &mut run);
    let sp = savepoint(dir, &addr, true, "sp");
    run.finish().expect_code(0);
    (tmp, text, sp)
}

/// Defect 10: a job resumed from a savepoint may write its sink elsewhere:
/// the old directory keeps the output up to the savepoint, the new one gets
/// the rest, and together they are exactly-once.
#[test]
fn a_savepoint_resumes_into_another_sink_directory() {
    let (tmp, text, sp) = stopped_with_a_savepoint(109);
    let dir = tmp.path();
    let resumed = weir(
        dir,
        &["run", "job.toml", "--quiet", "--from-savepoint", sp.to_str().unwrap(), "--set", "sinks.out.path=out2"],
    );
    resumed.expect_code(0);
    let mut lines = committed_lines(&dir.join("out"));
    lines.extend(committed_lines(&dir.join("out2")));
    weir_tests::assert_exact(&weir_tests::counts_by_word(&lines), &weir_tests::expected_counts(&text));
    assert!(weir_tests::hidden_files(&dir.join("out2")).is_empty());
}

/// Defect 12: rerunning a finished job commits what its final checkpoint
/// names and writes no further checkpoint.
#[test]
fn rerunning_a_finished_job_writes_no_new_checkpoint() {
    let (tmp, text) = with_input(2_000, 110);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(1_000_000, CHECKPOINTS));
    weir(dir, &["run", "job.toml", "--quiet"]).expect_code(0);
    let before = checkpoints(dir);
    for _ in 0..2 {
        weir(dir, &["run", "job.toml", "--quiet"]).expect_code(0);
    }
    assert_eq!(checkpoints(dir), before);
    assert_output_exact(dir, &text);
}

/// A seeded 20-kill soak on a real S3 server (`s3s-fs`): SIGKILL at a
/// random moment, rerun, twenty times, then run to the end. The output is
/// exactly-once, retention holds, and no run was refused as a live owner
/// (a killed run's ownership passes at once on the same host).
#[test]
fn twenty_kills_on_s3_are_exactly_once() {
    let server = weir_tests::S3Server::start(&["soak"]);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (tmp, text) = with_input(60_000, 111);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(10_000, "[checkpoint]\ninterval = \"50ms\"\nstore = \"s3://soak/ckpt\"\n"));
    let mut rng = Rng::from_env_or_time();
    let mut kills = 0;
    for round in 0..20 {
        let mut run = Background::start(dir, &format!("run{round}"), &["run", "job.toml", "--no-api"], &env);
        let _ = wait_until_or_exit(&mut run, 50 + rng.below(400));
        if run.exited() {
            run.finish().expect_code(0);
            break;
        }
        let killed = run.kill();
        assert!(!killed.stderr.contains("already running"), "round {round}: {}", killed.stderr);
        kills += 1;
    }
    assert!(kills >= 10, "the job finished after only {kills} kills");
    eprintln!("{kills} kills");
    let last = crate::weir_env(dir, &["run", "job.toml", "--no-api"], &env);
    last.expect_code(0);
    assert_output_exact(dir, &text);
    let kept = complete_checkpoints(&server.root.path().join("soak/ckpt/f"));
    assert!((1..=3).contains(&kept.len()), "after {kills} kills, complete checkpoints kept: {kept:?}");
}

/// Torn writes (the store acknowledges half an object) never make a
/// checkpoint look complete: each is caught when written and the
/// checkpoint abandoned, so every checkpoint that completes is restorable.
#[test]
fn torn_writes_never_complete_a_checkpoint() {
    let (tmp, text) = with_input(5_000, 112);
    let dir = tmp.path();
    let tail = "[checkpoint]\ninterval = \"20ms\"\ntolerable_failures = 1000\n\
                store = \"faulty+file://checkpoints?seed=5&torn=0.3&only=.state\"\n";
    write(dir, "job.toml", &wordcount(20_000, tail));
    let run = weir(dir, &["run", "job.toml"]);
    run.expect_code(0).expect_stderr(&["holds", "bytes of", "abandoned"]);
    // Every complete checkpoint left is whole: a rerun of the finished job
    // restores the newest without falling back.
    let rerun = weir(dir, &["run", "job.toml", "--set", "checkpoint.store=file://checkpoints"]);
    rerun.expect_code(0);
    assert!(!rerun.stderr.contains("unusable"), "{}", rerun.stderr);
    assert_output_exact(dir, &text);
}

/// A manifest that leaves out one of a node's subtasks is damage (that
/// subtask would restart empty): the checkpoint is skipped, not restored.
#[test]
fn a_manifest_missing_a_subtask_is_damage() {
    let (tmp, text) = with_input(20_000, 113);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(8_000, CHECKPOINTS));
    let mut run = Background::start(dir, "first", &["run", "job.toml", "--no-api"], &[]);
    wait_until("two checkpoints", TIMEOUT, || run.exited() || checkpoints(dir).len() >= 2);
    run.kill();
    let newest = *checkpoints(dir).last().expect("a checkpoint");
    let path = dir.join(format!("checkpoints/f/chk-{newest:010}/_manifest.json"));
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let count = manifest["nodes"].as_array_mut().unwrap().iter_mut().find(|n| n["id"] == "count").unwrap();
    count["subtasks"].as_array_mut().unwrap().pop();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let rerun = weir(dir, &["run", "job.toml", "--no-api"]);
    rerun.expect_code(0).expect_stderr(&[&format!("checkpoint {newest} is unusable"), "lists subtasks"]);
    assert_output_exact(dir, &text);
}

/// After a stop with a savepoint, a plain rerun resumes from that savepoint
/// (it is also the job's newest checkpoint): nothing committed is taken back.
#[test]
fn a_plain_rerun_after_a_stop_resumes_from_the_savepoint() {
    let (tmp, text, sp) = stopped_with_a_savepoint(114);
    let dir = tmp.path();
    let id: u64 = sp.file_name().unwrap().to_str().unwrap().split('-').nth(2).unwrap().parse().unwrap();
    assert_eq!(checkpoints(dir).last(), Some(&id), "the stop savepoint is the newest checkpoint");
    let rerun = weir(dir, &["run", "job.toml", "--no-api"]);
    rerun.expect_code(0).expect_stderr(&[&format!("restoring checkpoint {id}")]);
    assert!(!rerun.stderr.contains("removing part-"), "committed output taken back:\n{}", rerun.stderr);
    assert_output_exact(dir, &text);
}

/// Defect 12: an S3 endpoint that accepts connections but never answers is
/// not silent — the log says it is waiting within seconds.
#[test]
fn a_stalled_s3_server_is_reported_while_waiting() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // Accepts and holds every connection, answering nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let (tmp, _) = with_input(100, 116);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(1_000_000, "[checkpoint]\ninterval = \"1s\"\nstore = \"s3://stalled/p\"\n"));
    let env = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "k"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AWS_REGION", "us-east-1"),
    ];
    let run = Background::start(dir, "stalled", &["run", "job.toml", "--no-api"], &env);
    let log = dir.join("stalled.stderr");
    wait_until("a line about the stalled store", TIMEOUT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("no answer after 5s; still waiting"))
    });
    run.kill();
}

/// Seeded random sequences of runs, SIGKILLs, savepoints, stops with a
/// savepoint (resumed from, sometimes at another parallelism) and injected
/// storage faults (failed, lost and slow puts; failing reads) against one
/// job: whatever happens, the committed output in the end is exactly-once.
/// Replay a failure with the `WEIR_TEST_SEED` it prints.
#[test]
fn random_runs_kills_savepoints_and_faults_are_exactly_once() {
    let mut rng = Rng::from_env_or_time();
    let cases = std::env::var("WEIR_PROPERTY_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3);
    let mut seen = std::collections::BTreeMap::<&str, u32>::new();
    for case in 0..cases {
        let (tmp, text) = with_input(20_000, 200 + case);
        let dir = tmp.path();
        // The savepoint to resume from, and `count`'s parallelism (which
        // only a savepoint may change).
        let mut resume: Option<PathBuf> = None;
        let mut parallelism = 2;
        for step in 0..5 {
            let seed = rng.below(1_000_000);
            let store = match rng.below(3) {
                0 => "file://checkpoints".to_owned(),
                1 => format!("faulty+file://checkpoints?seed={seed}&put=0.05&lost=0.5&torn=0.05&slow_ms=2"),
                _ => format!("faulty+file://checkpoints?seed={seed}&get=0.2&put=0.02"),
            };
            let mut extra: Vec<String> = Vec::new();
            let resuming = resume.take();
            let before = parallelism;
            if let Some(sp) = &resuming {
                parallelism = 1 + rng.below(3);
                extra.extend(["--from-savepoint".into(), sp.display().to_string()]);
            }
            let tail = format!(
                "[checkpoint]\ninterval = \"50ms\"\ntolerable_failures = 100\nstore = \"{store}\"\n\
                 [restart]\nattempts = 100\ndelay = \"10ms\"\n"
            );
            write(dir, "job.toml", &with_parallelism(&wordcount(10_000, &tail), parallelism));
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let (mut run, addr) = match try_start(dir, &format!("c{case}s{step}"), &extra) {
                Ok(started) => started,
                Err(done) => {
                    // Only the store may make a run give up: the next run retries.
                    assert!(store_failure(&done.stderr), "case {case} step {step}: {}", done.stderr);
                    (resume, parallelism) = (resuming, before);
                    continue;
                }
            };
            if wait_until_or_exit(&mut run, rng.below(800)) {
                let done = run.finish();
                if done.code == Some(0) {
                    *seen.entry("finished").or_default() += 1;
                    break;
                }
                *seen.entry("failed on the store").or_default() += 1;
                // Only the store may make a run give up: the next run retries.
                assert!(store_failure(&done.stderr), "case {case} step {step}: {}", done.stderr);
                if resuming.is_some() && !done.stderr.contains("a restore point") {
                    // It failed before the savepoint became the job's checkpoint.
                    (resume, parallelism) = (resuming, before);
                }
                continue;
            }
            let action = match rng.below(3) {
                0 => {
                    run.kill();
                    "killed"
                }
                1 => {
                    // A savepoint may fail under injected faults; the job goes on.
                    let _ = weir(dir, &["savepoint", "--api", &addr, "--target", "sp"]);
                    run.kill();
                    "savepoint, then killed"
                }
                _ => {
                    let stopped = weir(dir, &["stop", "--savepoint", "--api", &addr, "--target", "sp"]);
                    let done = run.finish();
                    if stopped.code == Some(0) && done.code == Some(0) {
                        resume = Some(PathBuf::from(stopped.stdout.trim()));
                        "stopped with a savepoint"
                    } else {
                        "stop failed"
                    }
                }
            };
            *seen.entry(action).or_default() += 1;
        }
        // Finish the job on a healthy store.
        let mut args = vec!["run", "job.toml", "--quiet"];
        let sp = resume.map(|p| p.display().to_string());
        if let Some(sp) = &sp {
            args.extend(["--from-savepoint", sp]);
        }
        write(dir, "job.toml", &with_parallelism(&wordcount(1_000_000, CHECKPOINTS), parallelism));
        let last = weir(dir, &args);
        assert_eq!(last.code, Some(0), "case {case}, final run: {}", last.stderr);
        assert_output_exact(dir, &text);
        assert!(!committed_lines(&dir.join("out")).is_empty());
    }
    eprintln!("{cases} cases: {seen:?}");
}

/// `job` with `count` at `parallelism`.
fn with_parallelism(job: &str, parallelism: u64) -> String {
    job.replace("partition = \"key\"\nparallelism = 2", &format!("partition = \"key\"\nparallelism = {parallelism}"))
}

/// Whether a run's error is the injected store's doing: a fault, or a torn
/// write caught by verification.
fn store_failure(stderr: &str) -> bool {
    stderr.contains("injected fault") || stderr.contains("bytes of")
}

/// Waits up to `ms` or until `run` exits; true if it exited.
pub fn wait_until_or_exit(run: &mut Background, ms: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        if run.exited() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    run.exited()
}

/// Issue 16 #5: a savepoint or stop-with-savepoint whose upload fails
/// (injected faults: every put, or only the manifest) is an error for the
/// client, and the job runs on, exactly-once, as Flink's does — also with
/// no restarts allowed: a failed stop is not a failure of the job (its
/// sources had stopped, so it goes on from its latest checkpoint).
#[test]
fn a_failed_savepoint_or_stop_leaves_the_job_running() {
    let (tmp, text) = with_input(20_000, 117);
    let dir = tmp.path();
    write(dir, "job.toml", &wordcount(2_000, &format!("{CHECKPOINTS}[restart]\nstrategy = \"none\"\n")));
    let (mut run, addr) = start(dir, "run", &[]);
    wait_for_checkpoint(dir, &mut run);
    for (how, faults) in [(&["savepoint"][..], "put=1"), (&["stop", "--savepoint"][..], "put=1&only=_manifest")] {
        let target = format!("faulty+file://{}/bad?{faults}", dir.display());
        let mut args = how.to_vec();
        args.extend(["--api", &addr, "--target", &target]);
        let failed = weir(dir, &args);
        assert_ne!(failed.code, Some(0), "{how:?} with {faults} succeeded:\n{}", failed.stdout);
        assert!(failed.stderr.contains("injected fault"), "{how:?}: {}", failed.stderr);
        assert!(!run.exited(), "{how:?} with {faults} ended the job");
    }
    savepoint(dir, &addr, true, "good");
    let done = run.finish();
    done.expect_code(0).expect_stderr(&["stop-with-savepoint", "the job goes on from its latest checkpoint"]);
    weir(dir, &["run", "job.toml", "--no-api", "--quiet"]).expect_code(0);
    assert_output_exact(dir, &text);
}
