//! The CLI around a run: progress and summary on stderr, `--quiet`,
//! the stdout sink, `weir validate`, and the generator source.

use crate::{run_job, weir, write};

const STDOUT_JOB: &str = r#"
[sources.nums]
kind = "generator"
count = 1000

[operators.keep7]
builtin = "filter"
input = "nums"
parallelism = 2
config = { regex = "7" }

[sinks.print]
kind = "stdout"
input = "keep7"
"#;

fn expected_sevens() -> Vec<String> {
    let mut v: Vec<String> = (0..1000).map(|i| i.to_string()).filter(|s| s.contains('7')).collect();
    v.sort();
    v
}

/// The stdout sink prints every record; the summary goes to stderr, not stdout.
#[test]
fn stdout_sink_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let job = write(dir.path(), "job.toml", STDOUT_JOB);
    let run = weir(dir.path(), &["run", &job]);
    run.expect_code(0).expect_stderr(&["job `job` finished in", "nums", "keep7", "×2", "1,000"]);
    let mut lines: Vec<String> = run.stdout.lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, expected_sevens());
}

/// `--quiet` prints nothing on stderr for a successful job.
#[test]
fn quiet_prints_nothing_but_output() {
    let dir = tempfile::tempdir().unwrap();
    let job = write(dir.path(), "job.toml", STDOUT_JOB);
    let run = run_job(dir.path(), &job, &[]);
    run.expect_code(0);
    assert_eq!(run.stderr, "");
    assert_eq!(run.stdout.lines().count(), expected_sevens().len());
}

/// `--set` overrides apply to numbers and nested tables, and the generator splits across subtasks.
#[test]
fn overrides_change_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let job = write(dir.path(), "job.toml", STDOUT_JOB);
    let run = run_job(
        dir.path(),
        &job,
        &[
            "--set",
            "sources.nums.count=100",
            "--set",
            "sources.nums.parallelism=3",
            "--set",
            "operators.keep7.config.regex=^7",
        ],
    );
    run.expect_code(0);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["7", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79"]);
}

/// `weir validate` checks a job and prints its graph without running it.
#[test]
fn validate_prints_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let job = write(dir.path(), "job.toml", STDOUT_JOB);
    let run = weir(dir.path(), &["validate", &job]);
    run.expect_code(0);
    assert!(run.stdout.contains("keep7 ×2 <- nums (Rebalance)"), "{}", run.stdout);
    assert!(run.stdout.contains("print ×1 <- keep7 (Rebalance)"), "{}", run.stdout);
    // The task line, and what its `|` and `->` mean (issue 16 #7).
    assert!(run.stdout.contains("tasks: nums | keep7 | print"), "{}", run.stdout);
    assert!(run.stdout.contains("`|` separates tasks") && run.stdout.contains("`->` joins nodes chained"));
}
