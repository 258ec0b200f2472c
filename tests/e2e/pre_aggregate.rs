//! Local pre-aggregation (`pre_aggregate = true`): counts stay exact across
//! SIGKILLs, through savepoints that switch it on and off and rescale, and
//! the job file cannot ask for it where it cannot work.
//!
//! With pre-aggregation `count` emits one update per partial, not per
//! record, so the check here is: each word's committed updates are strictly
//! increasing (a duplicated partial or a replayed update would repeat or go
//! back) and the last one is the word's true count (a lost or doubled
//! partial would change it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir_tests::{Rng, committed_lines, complete_checkpoints, counts_by_word, expected_counts, wait_until};

use crate::recovery::wordcount_behind;
use crate::savepoints::{start_with_api, stop_with_savepoint};
use crate::{Background, TIMEOUT, weir, with_input, write};

/// Turns `pre_aggregate` on for the keyed `count` of a job text.
fn pre_aggregated(job: &str) -> String {
    let keyed = "builtin = \"count\"\ninput = \"tokenize\"\npartition = \"key\"\n";
    assert!(job.contains(keyed), "the job has a keyed count");
    job.replace(keyed, &format!("{keyed}pre_aggregate = true\n"))
}

/// Each word's committed updates (sorted) strictly increase and end at its
/// true count; returns how many updates there were in all.
#[track_caller]
fn assert_exact_totals(dir: &Path, text: &str) -> usize {
    let got: BTreeMap<String, Vec<u64>> = counts_by_word(&committed_lines(&dir.join("out")));
    let expected = expected_counts(text);
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "the words differ");
    let mut wrong = Vec::new();
    for (word, updates) in &got {
        let mut sorted = updates.clone();
        sorted.sort_unstable();
        let increasing = sorted.windows(2).all(|w| w[0] < w[1]);
        if !increasing || sorted.last() != Some(&expected[word]) {
            wrong.push(format!("{word}: updates {sorted:?}, true count {}", expected[word]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} word(s) not exactly-once, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
    got.values().map(Vec::len).sum()
}

/// WordCount with a pre-aggregated `count`, 100 ms checkpoints, SIGKILLed
/// at seeded random moments (`WEIR_TEST_SEED` replays) and rerun: every
/// word ends at its true count with no update committed twice. Far fewer
/// updates than words show that the partials did the counting.
#[test]
fn pre_aggregated_counts_are_exact_across_kills() {
    let (tmp, text) = with_input(60_000, 21); // 480,000 words
    let dir = tmp.path();
    write(dir, "job.toml", &pre_aggregated(&wordcount_behind("", 40_000, "[checkpoint]\ninterval = \"100ms\"")));
    let newest = || complete_checkpoints(&dir.join("checkpoints/wc")).last().copied().unwrap_or(0);
    let mut rng = Rng::from_env_or_time();
    let mut kills = 0;
    for round in 0..4 {
        let before = newest();
        let mut run = Background::start(dir, &format!("run{round}"), &["run", "job.toml"], &[]);
        wait_until("a new checkpoint", TIMEOUT, || run.exited() || newest() > before);
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        if run.exited() {
            run.finish().expect_code(0);
            break;
        }
        run.kill();
        kills += 1;
    }
    assert!(kills >= 2, "the job finished too fast to be killed more than {kills} time(s)");
    weir(dir, &["run", "job.toml"]).expect_code(0).expect_stderr(&["restoring checkpoint"]);
    let updates = assert_exact_totals(dir, &text);
    let words: u64 = expected_counts(&text).values().sum();
    assert!((updates as u64) < words / 4, "{updates} updates for {words} words: the partials did not count");
}

/// A pre-aggregated job at parallelism 2 stops with a savepoint; it resumes
/// at 3 without pre-aggregation (the savepoint's stateless local instance
/// is dropped without `--allow-non-restored-state`), stops again, and
/// finishes at 1 with it: every count is exact.
#[test]
fn pre_aggregation_switches_on_and_off_and_rescales_through_savepoints() {
    let (tmp, text) = with_input(30_000, 34);
    let dir = tmp.path();
    let job = |p: u32, rate: u32| {
        wordcount_behind("", rate, "[checkpoint]\ninterval = \"100ms\"")
            .replace("name = \"wc\"", "name = \"sp\"")
            .replacen("partition = \"key\"\nparallelism = 2", &format!("partition = \"key\"\nparallelism = {p}"), 1)
    };
    write(dir, "p2.toml", &pre_aggregated(&job(2, 8_000)));
    write(dir, "p3.toml", &job(3, 8_000));
    write(dir, "p1.toml", &pre_aggregated(&job(1, 1_000_000)));
    let newest = || complete_checkpoints(&dir.join("checkpoints/sp")).last().copied().unwrap_or(0);
    let (mut run, addr) = start_with_api(dir, "p2", "p2.toml", &[]);
    wait_until("two checkpoints", TIMEOUT, || run.exited() || newest() >= 2);
    let first = stop_with_savepoint(dir, &addr, run);
    let manifest = std::fs::read_to_string(Path::new(&first).join("_manifest.json")).unwrap();
    assert!(manifest.contains("count.local"), "the savepoint lists the local instance: {manifest}");
    let before = newest();
    let (mut run, addr) = start_with_api(dir, "p3", "p3.toml", &["--from-savepoint", &first]);
    wait_until("new checkpoints at parallelism 3", TIMEOUT, || run.exited() || newest() >= before + 2);
    let second = stop_with_savepoint(dir, &addr, run);
    weir(dir, &["run", "p1.toml", "--from-savepoint", &second]).expect_code(0);
    assert_exact_totals(dir, &text);
}

/// `pre_aggregate` where it cannot work is refused before anything runs
/// (exit 2, naming the table and what to do), and an operator that does not
/// implement `Combine` fails its start saying so.
#[test]
fn pre_aggregation_is_refused_where_it_cannot_work() {
    let (tmp, _) = with_input(10, 1);
    let dir = tmp.path();
    let base = wordcount_behind("", 1_000_000, "");
    write(dir, "forward.toml", &pre_aggregated(&base).replace("partition = \"key\"\n", ""));
    weir(dir, &["run", "forward.toml"])
        .expect_code(2)
        .expect_stderr(&["[operators.count] pre_aggregate = true needs a `partition = \"key\"` input"]);
    write(
        dir,
        "reserved.toml",
        &base
            .replace("builtin = \"count\"\n", "builtin = \"count\"\nconfig = { \"weir.pre_aggregate\" = \"local\" }\n"),
    );
    weir(dir, &["run", "reserved.toml"])
        .expect_code(2)
        .expect_stderr(&["config key `weir.pre_aggregate`", "Weir's own"]);
    let suffix = base.replace("[operators.count]", "[operators.\"count.local\"]");
    write(dir, "suffix.toml", &suffix.replace("input = \"count\"", "input = \"count.local\""));
    weir(dir, &["run", "suffix.toml"]).expect_code(2).expect_stderr(&["count.local", "are Weir's own", "rename it"]);
    let dedup = pre_aggregated(&base).replace("builtin = \"count\"", "builtin = \"dedup\"");
    write(dir, "dedup.toml", &dedup);
    let run = weir(dir, &["run", "dedup.toml"]);
    assert_ne!(run.code, Some(0), "a dedup cannot be pre-aggregated:\n{}", run.stderr);
    run.expect_stderr(&["cannot be pre-aggregated", "weir_sdk::Combine", "remove `pre_aggregate`"]);
}

/// Switching pre-aggregation on through a savepoint leaves a restore point
/// the local instance fits: a run killed before its first checkpoint is
/// rerun plainly (from that restore point, not from scratch) and every count
/// is exact.
#[test]
fn a_run_killed_right_after_switching_pre_aggregation_on_resumes_exactly() {
    let (tmp, text) = with_input(30_000, 35);
    let dir = tmp.path();
    let job = |checkpoint: &str| {
        wordcount_behind("", 8_000, &format!("[checkpoint]\ninterval = \"{checkpoint}\""))
            .replace("name = \"wc\"", "name = \"sp\"")
    };
    write(dir, "off.toml", &job("100ms"));
    // No checkpoint of its own before the kill: only the restore point.
    write(dir, "on.toml", &pre_aggregated(&job("1h")));
    let newest = || complete_checkpoints(&dir.join("checkpoints/sp")).last().copied().unwrap_or(0);
    let (mut run, addr) = start_with_api(dir, "off", "off.toml", &[]);
    wait_until("two checkpoints", TIMEOUT, || run.exited() || newest() >= 2);
    let savepoint = stop_with_savepoint(dir, &addr, run);
    let restore_point = newest() + 1;
    let mut run = Background::start(dir, "on", &["run", "on.toml", "--from-savepoint", &savepoint], &[]);
    wait_until("the restore point", TIMEOUT, || run.exited() || newest() >= restore_point);
    assert!(newest() >= restore_point, "resuming with pre-aggregation switched on wrote no restore point");
    assert!(!run.exited(), "the job ended before it could be killed");
    run.kill();
    weir(dir, &["run", "on.toml"]).expect_code(0).expect_stderr(&["restoring checkpoint"]);
    assert_exact_totals(dir, &text);
}
