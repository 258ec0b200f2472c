//! Operator chaining: nodes fused into one task keep every guarantee of
//! separate tasks — per-node checkpoint state, failover from a trap inside
//! the chain, SIGKILL and resume — and produce the same output as the
//! unchained job. The job's source reads one file as byte ranges, so its
//! range positions go through the same failover and kill.

use std::collections::BTreeMap;
use std::path::Path;

use weir_tests::{assert_exact, committed_lines, complete_checkpoints, counts_by_word, expected_counts, wait_until};

use crate::{Background, TIMEOUT, wasm, weir, with_input, write};

/// lines ×2 (byte ranges of one file) → tokenize ×2 → (key) boom ×2 → count ×2 → keep ×2 → file `out/` ×2.
/// `boom → count → keep → out` is forward all the way: one chain, headed by
/// a guest (`panic_at`, passing records through with their keys) that
/// panics at its `at`-th record in the first attempt of each run, with
/// keyed state (`count`) in its middle.
fn chained_job(rate: u32, at: u32) -> String {
    format!(
        r#"
[job]
name = "chained"

[sources.lines]
kind = "file"
path = "in.txt"
rate = {rate}
parallelism = 2

[operators.tokenize]
builtin = "tokenize"
input = "lines"
parallelism = 2

[operators.boom]
wasm = "{boom}"
input = "tokenize"
partition = "key"
parallelism = 2
config = {{ at = {at}, attempts = 1 }}

[operators.count]
builtin = "count"
input = "boom"
parallelism = 2

[operators.keep]
builtin = "filter"
input = "count"
parallelism = 2
config = {{ contains = '"key":"word', invert = true }}

[sinks.out]
kind = "file"
path = "out"
input = "keep"
parallelism = 2

[checkpoint]
interval = "100ms"

[restart]
delay = "10ms"
"#,
        boom = wasm("panic_at")
    )
}

/// What `keep` lets through: the counts of words not starting with "word".
fn expected_kept(text: &str) -> BTreeMap<String, u64> {
    expected_counts(text).into_iter().filter(|(w, _)| !w.starts_with("word")).collect()
}

fn sorted_output(dir: &Path) -> Vec<String> {
    let mut lines = committed_lines(dir);
    lines.sort();
    lines
}

#[test]
fn a_trap_and_a_kill_inside_a_chain_stay_exactly_once() {
    let (tmp, text) = with_input(60_000, 21);
    let dir = tmp.path();
    write(dir, "job.toml", &chained_job(30_000, 20_000));
    let plan = weir(dir, &["validate", "job.toml"]);
    plan.expect_code(0);
    assert!(plan.stdout.contains("lines | tokenize | boom -> count -> keep -> out"), "not chained:\n{}", plan.stdout);

    // First run: `boom` panics mid-chain, the job fails over in-process; then SIGKILL.
    let mut run = Background::start(dir, "first", &["run", "job.toml"], &[]);
    let newest = || complete_checkpoints(&dir.join("checkpoints/chained")).last().copied().unwrap_or(0);
    let log = || std::fs::read_to_string(dir.join("first.stderr")).unwrap_or_default();
    wait_until("the failover", TIMEOUT, || log().contains("recovered: records flowing again") || run.exited());
    let before = newest();
    wait_until("a checkpoint after the failover", TIMEOUT, || newest() > before || run.exited());
    let first = if run.exited() { run.finish() } else { run.kill() };
    first.expect_stderr(&["operator `boom`", "boom at record 20000", "restoring checkpoint"]);

    // Second run: resumes from the last checkpoint (and traps once more), to the end.
    let second = weir(dir, &["run", "job.toml"]);
    second.expect_code(0);
    assert!(weir_tests::hidden_files(&dir.join("out")).is_empty(), "in-progress files left behind");
    assert_exact(&counts_by_word(&committed_lines(&dir.join("out"))), &expected_kept(&text));

    // The same job without chaining produces the same records.
    let unchained =
        weir(dir, &["run", "job.toml", "--fresh", "--set", "job.chaining=false", "--set", "sinks.out.path=out2"]);
    unchained.expect_code(0);
    assert_eq!(sorted_output(&dir.join("out2")), sorted_output(&dir.join("out")));
}
