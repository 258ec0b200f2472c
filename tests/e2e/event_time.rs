//! Event time, as far as it goes (issue 13, item 1): keys and timestamps
//! read from the records at the source, seen by a real guest downstream.

use weir_tests::committed_lines;

use crate::{pipeline, run_job, wasm, write};

const CLICKS: &str = r#"{"user":"ann","ts":"2026-11-25T10:00:00Z","page":"/a"}
{"user":"bob","ts":"2026-11-25T10:00:01.5Z","page":"/b"}
{"user":"ann","ts":"2026-11-25T10:00:02Z","page":"/c"}
"#;

/// The job `clicks.jsonl` → `stamp` (emits `key|timestamp|value`) → `out/`,
/// with `extra` lines in the source table.
fn stamped(extra: &str) -> String {
    let ops = format!("[operators.stamp]\nwasm = \"{}\"\ninput = \"lines\"", wasm("stamp"));
    pipeline("clicks.jsonl", &ops, "stamp")
        .replace("path = \"clicks.jsonl\"", &format!("path = \"clicks.jsonl\"\n{extra}"))
}

#[test]
fn keys_and_timestamps_come_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clicks.jsonl", CLICKS);
    let job = stamped("key = { json = \"user\" }\ntimestamp = { json = \"ts\", format = \"rfc3339\" }");
    let job = write(dir.path(), "job.toml", &job);
    run_job(dir.path(), &job, &[]).expect_code(0);
    let mut got: Vec<String> = committed_lines(&dir.path().join("out"))
        .iter()
        .map(|l| l.split('|').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    got.sort();
    assert_eq!(got, ["ann|1795600800000", "ann|1795600802000", "bob|1795600801500"]);
}

/// Keyed by a JSON field at the source, a stream can be counted per key
/// with no operator of its own to set the key.
#[test]
fn a_key_from_the_data_feeds_a_keyed_count() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clicks.jsonl", CLICKS);
    let ops = "[operators.count]\nbuiltin = \"count\"\ninput = \"lines\"\npartition = \"key\"\nparallelism = 2";
    let job = pipeline("clicks.jsonl", ops, "count")
        .replace("path = \"clicks.jsonl\"", "path = \"clicks.jsonl\"\nkey = { json = \"user\" }");
    let job = write(dir.path(), "job.toml", &job);
    run_job(dir.path(), &job, &[]).expect_code(0);
    let counts = weir_tests::counts_by_word(&committed_lines(&dir.path().join("out")));
    assert_eq!(counts.get("ann"), Some(&vec![1, 2]));
    assert_eq!(counts.get("bob"), Some(&vec![1]));
}

/// A record without a readable timestamp fails the job naming it (exit 2),
/// or, with `on_bad_record = "skip"`, is dropped and counted.
#[test]
fn unreadable_timestamps_fail_or_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clicks.jsonl", &format!("{CLICKS}{{\"user\":\"cy\",\"ts\":\"yesterday\"}}\n"));
    let ts = "timestamp = { json = \"ts\", format = \"rfc3339\" }";
    let job = write(dir.path(), "job.toml", &stamped(ts));
    run_job(dir.path(), &job, &[]).expect_code(2).expect_stderr(&[
        "source `lines`",
        "no rfc3339 timestamp at JSON field `ts`",
        "yesterday",
        "on_bad_record = \"skip\"",
    ]);
    let job = write(dir.path(), "skip.toml", &stamped(&format!("{ts}\non_bad_record = \"skip\"")));
    let run = crate::weir(dir.path(), &["run", &job, "--no-api"]);
    run.expect_code(0).expect_stderr(&["skipped 1 record(s)"]);
    assert_eq!(committed_lines(&dir.path().join("out")).len(), 3);
}

/// With `on_bad_record = "side-output"`, a record without a readable
/// timestamp goes on, unchanged, to the source's side output `errors`,
/// which a second sink reads as `input = "lines.errors"`.
#[test]
fn unreadable_timestamps_can_go_to_a_side_output() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"{"user":"cy","ts":"yesterday"}"#;
    write(dir.path(), "clicks.jsonl", &format!("{CLICKS}{bad}\n"));
    let ts = "timestamp = { json = \"ts\", format = \"rfc3339\" }\non_bad_record = \"side-output\"";
    let job =
        format!("{}\n[sinks.errors]\nkind = \"file\"\npath = \"errors\"\ninput = \"lines.errors\"\n", stamped(ts));
    let job = write(dir.path(), "job.toml", &job);
    let run = crate::weir(dir.path(), &["run", &job, "--no-api"]);
    run.expect_code(0).expect_stderr(&["sent 1 record(s)", "side output `errors`"]);
    assert_eq!(committed_lines(&dir.path().join("out")).len(), 3);
    assert_eq!(committed_lines(&dir.path().join("errors")), [bad]);
}
