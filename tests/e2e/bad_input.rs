//! Bad job files and bad `.wasm` are rejected before anything runs, with a
//! message naming the file/table/operator, and exit code 2.

use crate::{pipeline, run_job, wasm, write};

fn reject(job_text: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a b c\n");
    let job = write(dir.path(), "job.toml", job_text);
    let run = run_job(dir.path(), &job, &[]);
    run.expect_code(2).expect_stderr(needles);
    let out = dir.path().join("out");
    if out.exists() {
        assert!(weir_tests::committed_lines(&out).is_empty(), "a rejected job must not produce output");
    }
}

fn tokenize_job() -> String {
    pipeline("in.txt", "[operators.t]\nbuiltin = \"tokenize\"\ninput = \"lines\"", "t")
}

/// A TOML syntax error reports file, line and column.
#[test]
fn syntax_error_shows_line_and_column() {
    let text = tokenize_job().replace("input = \"lines\"", "input = lines\"");
    let line = text.lines().position(|l| l == "input = lines\"").unwrap() + 1;
    reject(&text, &["job.toml", &format!("line {line}"), "column"]);
}

/// A misspelt key is an error, not silently ignored.
#[test]
fn unknown_key_is_rejected() {
    reject(
        &tokenize_job().replace("input = \"lines\"", "input = \"lines\"\nparalelism = 2"),
        &["unknown field", "paralelism", "line"],
    );
}

/// An input that names nothing is reported with the known ids.
#[test]
fn missing_input_is_rejected() {
    reject(
        &tokenize_job().replace("input = \"lines\"", "input = \"lnies\""),
        &["[operators.t] input `lnies` does not exist", "lines"],
    );
}

/// A cycle between operators is rejected and named.
#[test]
fn cycle_is_rejected() {
    let ops =
        "[operators.a]\nbuiltin = \"map\"\ninput = [\"lines\", \"b\"]\n[operators.b]\nbuiltin = \"map\"\ninput = \"a\"";
    reject(&pipeline("in.txt", ops, "b"), &["cycle", "operators.a", "operators.b"]);
}

/// A `.wasm` path that does not exist is reported with the operator.
#[test]
fn missing_wasm_is_rejected() {
    let ops = "[operators.t]\nwasm = \"nowhere/op.wasm\"\ninput = \"lines\"";
    reject(&pipeline("in.txt", ops, "t"), &["[operators.t] wasm", "no such file"]);
}

/// Files that are not components are rejected with what they are instead.
#[test]
fn invalid_wasm_files_are_rejected() {
    for (bytes, needle) in [
        (&b"definitely not wasm"[..], "is not a WebAssembly file"),
        (&b"\0asm\x01\0\0\0"[..], "core WebAssembly module, not a component"),
        (&b"\0asm\x0d\0\x01\0\xff\xff"[..], "failed to compile"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("op.wasm"), bytes).unwrap();
        write(dir.path(), "in.txt", "a\n");
        let ops = "[operators.bad]\nwasm = \"op.wasm\"\ninput = \"lines\"";
        let job = write(dir.path(), "job.toml", &pipeline("in.txt", ops, "bad"));
        run_job(dir.path(), &job, &[]).expect_code(2).expect_stderr(&["operator `bad`", needle]);
    }
}

/// A valid component that is not a Weir operator is rejected as such.
#[test]
fn component_without_the_weir_world_is_rejected() {
    let ops = format!("[operators.cmd]\nwasm = \"{}\"\ninput = \"lines\"", wasm("not_weir"));
    reject(&pipeline("in.txt", &ops, "cmd"), &["operator `cmd`", "is not a Weir operator", "weir_sdk::export!"]);
}

/// An operator that rejects its config fails before any record, naming it.
#[test]
fn invalid_operator_config_is_rejected() {
    let ops = "[operators.f]\nbuiltin = \"filter\"\ninput = \"lines\"\nconfig = { contains = \"a\", regex = \"b\" }";
    reject(&pipeline("in.txt", ops, "f"), &["operator `f`", "init", "exactly one of `contains` or `regex`"]);
}

/// A malformed `--set` is a usage error.
#[test]
fn malformed_override_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.txt", "a\n");
    let job = write(dir.path(), "job.toml", &tokenize_job());
    run_job(dir.path(), &job, &["--set", "no-equals-sign"]).expect_code(2).expect_stderr(&["KEY=VALUE"]);
    run_job(dir.path(), &job, &["--set", "operators.t.input.deeper=1"]).expect_code(2).expect_stderr(&["not a table"]);
}

/// A missing job file is reported by name.
#[test]
fn missing_job_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    run_job(dir.path(), "nope.toml", &[]).expect_code(2).expect_stderr(&["cannot read job file nope.toml"]);
}

/// Checkpoint settings that cannot work are rejected before anything runs.
#[test]
fn bad_checkpoint_settings_are_rejected() {
    // Issue 11 #4: values that aborted or hung the host are refused, naming the key.
    reject(&tokenize_job().replace("[sources", "[job]\nbatch_size = 1000000000\n[sources"), &["[job] batch_size"]);
    reject(&format!("{}\n[limits]\nmemory = \"1PB\"", tokenize_job()), &["[limits] memory", "4GiB"]);
    let with = |table: &str| format!("{}\n{table}", tokenize_job());
    reject(&with("[checkpoint]\ninterval = \"0s\""), &["[checkpoint] interval", "must be between"]);
    reject(
        &with("[checkpoint]\ninterval = \"1s\"\nstore = \"ftp://x\""),
        &["store `ftp://x` is not supported", "s3://"],
    );
    reject(&with("[checkpoint]\ninterval = \"soon\""), &["interval", "line"]);
    reject(&with("[restart]\nstrategy = \"sometimes\""), &["unknown variant `sometimes`", "fixed-delay"]);
}

/// Issue 16 #4: a record the operator cannot decode (here text that is not
/// UTF-8, for an operator reading `&str`) is named by a short preview, so
/// it can be found in the input.
#[test]
fn an_undecodable_record_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), b"fine\nbad \xff byte here\n").unwrap();
    let ops = format!("[operators.probe]\nwasm = \"{}\"\ninput = \"lines\"", wasm("probe"));
    let job = write(dir.path(), "job.toml", &pipeline("in.txt", &ops, "probe"));
    let run = run_job(dir.path(), &job, &[]);
    assert_ne!(run.code, Some(0));
    run.expect_stderr(&["operator `probe`", "not UTF-8", "in the record \"bad \u{FFFD} byte here\""]);
}
