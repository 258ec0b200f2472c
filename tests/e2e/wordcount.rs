//! WordCount, the main example: exact counts, any parallelism.

use std::path::Path;

use weir_tests::{assert_exact, committed_lines, counts_by_word, expected_counts, hidden_files, text};

use crate::{run_job, write};

fn example_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wordcount")
}

/// Runs the example's job file on `input` with overrides; returns per-word count sequences.
fn wordcount(dir: &Path, input: &str, overrides: &[&str]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let job = example_dir().join("job.toml");
    let out = dir.join("out");
    let mut args = vec![
        "--set".to_string(),
        format!("sources.lines.path={input}"),
        "--set".into(),
        format!("sinks.out.path={}", out.display()),
    ];
    for o in overrides {
        args.push("--set".into());
        args.push((*o).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_job(dir, job.to_str().unwrap(), &args).expect_code(0);
    assert!(hidden_files(&out).is_empty(), "in-progress files left behind: {:?}", hidden_files(&out));
    counts_by_word(&committed_lines(&out))
}

/// The shipped example's output equals counts computed independently of Weir.
#[test]
fn example_output_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = example_dir().join("input.txt");
    let got = wordcount(dir.path(), input.to_str().unwrap(), &[]);
    assert_exact(&got, &expected_counts(&std::fs::read_to_string(&input).unwrap()));
}

/// Parallelism 1 and 4 give the same, exact counts on a larger input.
#[test]
fn parallelism_one_and_four_agree_and_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let text = text(5000, 42);
    let input = write(dir.path(), "in.txt", &text);
    let expected = expected_counts(&text);
    let one = tempfile::tempdir().unwrap();
    let serial = wordcount(one.path(), &input, &["operators.tokenize.parallelism=1", "operators.count.parallelism=1"]);
    let four = tempfile::tempdir().unwrap();
    let parallel = wordcount(
        four.path(),
        &input,
        &["operators.tokenize.parallelism=4", "operators.count.parallelism=4", "sinks.out.parallelism=2"],
    );
    assert_exact(&serial, &expected);
    assert_exact(&parallel, &expected);
}

/// A directory of input files is read in full; small batches change nothing.
#[test]
fn directory_input_and_tiny_batches() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let mut all = String::new();
    for i in 0..3 {
        let t = text(300, i);
        write(&inputs, &format!("part{i}.txt"), &t);
        all.push_str(&t);
    }
    let got = wordcount(dir.path(), inputs.to_str().unwrap(), &["job.batch_size=7"]);
    assert_exact(&got, &expected_counts(&all));
}
