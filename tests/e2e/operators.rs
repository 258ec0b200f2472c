//! The built-in operators, configured from the job file, and a custom
//! operator scaffolded with `weir new operator` and built with `weir build`.

use weir_tests::committed_lines;

use crate::{pipeline, run_job, weir, write};

fn run_ops(input: &str, ops: &str, last: &str, extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", input);
    let job = write(dir.path(), "job.toml", &pipeline("in.txt", ops, last));
    run_job(dir.path(), &job, extra).expect_code(0);
    let mut lines = committed_lines(&dir.path().join("out"));
    lines.sort();
    lines
}

const ANIMALS: &str = "cat sat\ndog ran\ncatalog\nbird flew\nCAT\n";

/// Issue 11 #8: a line that is not UTF-8 fails `tokenize` with a message
/// that finds it: where the bad byte is, and how the line starts.
#[test]
fn tokenize_says_which_line_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), b"fine line\nab\xff\xfe bad bytes\n").unwrap();
    let ops = "[operators.t]\nbuiltin = \"tokenize\"\ninput = \"lines\"";
    let job = write(dir.path(), "job.toml", &pipeline("in.txt", ops, "t"));
    run_job(dir.path(), &job, &[]).expect_code(1).expect_stderr(&[
        "operator `t`",
        "not UTF-8 text (bad byte at 2 of 14)",
        "ab\\xff\\xfe bad bytes",
    ]);
}

/// `filter` keeps records containing a string, matching a regex, or (inverted) neither.
#[test]
fn filter_by_contains_regex_and_invert() {
    let contains = "[operators.f]\nbuiltin = \"filter\"\ninput = \"lines\"\nconfig = { contains = \"cat\" }";
    assert_eq!(run_ops(ANIMALS, contains, "f", &[]), ["cat sat", "catalog"]);
    let regex = "[operators.f]\nbuiltin = \"filter\"\ninput = \"lines\"\nconfig = { regex = \"^(?i)cat$|ran$\" }";
    assert_eq!(run_ops(ANIMALS, regex, "f", &[]), ["CAT", "dog ran"]);
    let invert = "[operators.f]\nbuiltin = \"filter\"\ninput = \"lines\"\nconfig = { contains = \"a\", invert = true }";
    assert_eq!(run_ops(ANIMALS, invert, "f", &[]), ["CAT", "bird flew"]);
}

/// `map` transforms values; chained after `filter` with parallelism.
#[test]
fn map_uppercase_after_filter_in_parallel() {
    let ops = "[operators.f]\nbuiltin = \"filter\"\ninput = \"lines\"\nparallelism = 2\nconfig = { contains = \"a\" }\n\
               [operators.up]\nbuiltin = \"map\"\ninput = \"f\"\nparallelism = 3\nconfig = { transform = \"uppercase\" }";
    assert_eq!(run_ops(ANIMALS, ops, "up", &[]), ["CAT SAT", "CATALOG", "DOG RAN"]);
}

/// `map` with `json-field` extracts a field, dropping records without it.
#[test]
fn map_json_field() {
    let input = "{\"user\":\"ann\",\"n\":1}\n{\"user\":\"bob\"}\n{\"n\":{\"deep\":true}}\n";
    let ops =
        "[operators.m]\nbuiltin = \"map\"\ninput = \"lines\"\nconfig = { transform = \"json-field\", field = \"n\" }";
    assert_eq!(run_ops(input, ops, "m", &[]), ["1", "{\"deep\":true}"]);
}

/// `dedup` behind a keyed edge forwards each distinct value once, at any parallelism.
#[test]
fn dedup_by_value_with_key_partitioning() {
    let input: String = (0..3000).map(|i| format!("v{}\n", i % 250)).collect();
    let ops = "[operators.d]\nbuiltin = \"dedup\"\ninput = \"lines\"\npartition = \"key\"\nparallelism = 3";
    let got = run_ops(&input, ops, "d", &[]);
    let mut expected: Vec<String> = (0..250).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// `broadcast` sends every record to every subtask.
#[test]
fn broadcast_reaches_every_subtask() {
    let ops = "[operators.up]\nbuiltin = \"map\"\ninput = \"lines\"\npartition = \"broadcast\"\nparallelism = 3\nconfig = { transform = \"trim\" }";
    let got = run_ops(" x \n y\n", ops, "up", &[]);
    assert_eq!(got, ["x", "x", "x", "y", "y", "y"]);
}

/// `weir new operator` scaffolds a crate, `weir build` compiles it, and a job runs it.
#[test]
fn custom_operator_scaffolded_built_and_run() {
    let dir = tempfile::tempdir().unwrap();
    weir(dir.path(), &["new", "operator", "shout"]).expect_code(0);
    let src = dir.path().join("shout/src/lib.rs");
    let code = std::fs::read_to_string(&src).unwrap();
    std::fs::write(
        &src,
        code.replace(
            "format!(\"{}{}\", self.prefix, rec.value)",
            "format!(\"{}{}!\", self.prefix, rec.value.to_uppercase())",
        ),
    )
    .unwrap();
    let mut build = std::process::Command::new(weir_tests::weir_bin());
    build
        .current_dir(dir.path())
        .args(["build", "shout"])
        .env_remove("CARGO_TARGET_DIR")
        .env("WEIR_BUILD_DIR", weir_tests::target_dir().join("e2e-shared-build"));
    let built = weir_tests::run_with_timeout(build, std::time::Duration::from_secs(600));
    built.expect_code(0);
    let wasm = built.stdout.lines().last().expect("weir build prints the .wasm path").trim().to_owned();
    assert!(wasm.ends_with("shout.wasm"), "{wasm}");
    write(dir.path(), "in.txt", "hello\nworld\n");
    let ops = format!("[operators.shout]\nwasm = \"{wasm}\"\ninput = \"lines\"\nconfig = {{ prefix = \"> \" }}");
    let job = write(dir.path(), "job.toml", &pipeline("in.txt", &ops, "shout"));
    run_job(dir.path(), &job, &["--set", "operators.shout.config.prefix=>> "]).expect_code(0);
    let mut got = committed_lines(&dir.path().join("out"));
    got.sort();
    assert_eq!(got, [">> HELLO!", ">> WORLD!"]);
}

/// Issue 16 #3: operator crates share one target directory, so building a
/// second operator compiles only that operator, not weir-sdk and its
/// dependencies again; each `.wasm` still lands in its own crate's `target/`.
#[test]
fn a_second_operator_reuses_the_first_ones_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let shared = weir_tests::target_dir().join("e2e-shared-build");
    let build = |name: &str| {
        weir(dir.path(), &["new", "operator", name]).expect_code(0);
        let mut cmd = std::process::Command::new(weir_tests::weir_bin());
        cmd.current_dir(dir.path()).args(["build", name]).env_remove("CARGO_TARGET_DIR").env("WEIR_BUILD_DIR", &shared);
        let started = std::time::Instant::now();
        let built = weir_tests::run_with_timeout(cmd, std::time::Duration::from_secs(600));
        eprintln!("weir build {name}: {:.1?}", started.elapsed());
        built.expect_code(0);
        built
    };
    build("first-op");
    let second = build("second-op");
    let wasm = second.stdout.lines().last().expect("weir build prints the .wasm path").trim().to_owned();
    let own = dir.path().join("second-op/target/wasm32-wasip2/release/second_op.wasm");
    assert_eq!(std::path::Path::new(&wasm), own, "{}", second.stdout);
    assert!(own.is_file());
    let compiled: Vec<&str> = second.stderr.lines().filter(|l| l.trim_start().starts_with("Compiling")).collect();
    assert!(
        compiled.iter().all(|l| l.contains("second-op")),
        "the second operator compiled more than itself: {compiled:?}"
    );
}
