//! Misbehaving guests fail their job cleanly — non-zero exit, a message
//! naming the operator and the cause — and never take the host down; and
//! guests cannot reach files, the network or the environment.

use std::path::Path;

use weir_tests::{committed_lines, hidden_files};

use crate::{Background, pipeline, run_job, wasm, write};

fn run_guest(dir: &Path, guest: &str, config: &str, extra: &[&str]) -> weir_tests::Run {
    let input: String = (1..=5000).map(|i| format!("record {i}\n")).collect();
    write(dir, "in.txt", &input);
    let ops = format!(
        "[operators.bad]\nwasm = \"{}\"\ninput = \"lines\"\nparallelism = 2\nconfig = {{ {config} }}",
        wasm(guest)
    );
    let job = write(dir, "job.toml", &pipeline("in.txt", &ops, "bad"));
    run_job(dir, &job, extra)
}

fn assert_no_partial_output(dir: &Path) {
    let out = dir.join("out");
    if out.exists() {
        assert!(committed_lines(&out).is_empty(), "a failed job committed output");
        assert!(hidden_files(&out).is_empty(), "a failed job left in-progress files: {:?}", hidden_files(&out));
    }
}

/// A panicking guest fails the job with its panic message and location.
#[test]
fn panic_fails_the_job_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    run_guest(dir.path(), "panic_at", "at = 3", &[]).expect_code(1).expect_stderr(&[
        "operator `bad`",
        "in `process`",
        "panicked",
        "boom at record 3",
        "src/lib.rs",
    ]);
    assert_no_partial_output(dir.path());
}

/// An operator returning an error fails the job with that error.
#[test]
fn returned_error_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    run_guest(dir.path(), "panic_at", "at = 2, error = true", &[])
        .expect_code(1)
        .expect_stderr(&["operator `bad`", "returned an error: refusing record 2"]);
}

/// A guest that never returns is interrupted at the per-call deadline.
#[test]
fn endless_loop_hits_the_call_deadline() {
    let dir = tempfile::tempdir().unwrap();
    run_guest(dir.path(), "spin", "", &["--set", "limits.call_timeout=300ms"]).expect_code(1).expect_stderr(&[
        "operator `bad`",
        "longer than the 0.3s limit",
        "call_timeout",
    ]);
    assert_no_partial_output(dir.path());
}

/// Issue 11 #1: a guest that sleeps (blocked in a WASI host call, where
/// epoch interruption cannot reach it) does not escape the deadline: sleeping
/// is refused at once, with a message saying why.
#[test]
fn a_sleeping_guest_is_stopped_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = run_guest(dir.path(), "spin", "sleep_ms = 300000", &["--set", "limits.call_timeout=2s"]);
    run.expect_code(1).expect_stderr(&["operator `bad`", "may not sleep"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    assert_no_partial_output(dir.path());
}

/// When one task fails, a guest busy in a long call elsewhere is interrupted
/// at once (not at its 10-minute deadline): the job fails promptly, with the
/// real cause and not the interrupted call as its error.
#[test]
fn a_failure_interrupts_a_guest_stuck_in_another_task() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &(1..=5000).map(|i| format!("record {i}\n")).collect::<String>());
    let ops = format!(
        "[operators.stuck]\nwasm = \"{}\"\ninput = \"lines\"\n\
         [operators.bad]\nwasm = \"{}\"\ninput = \"lines\"\nconfig = {{ at = 4000 }}\n\
         [sinks.both]\nkind = \"discard\"\ninput = [\"stuck\", \"bad\"]",
        wasm("spin"),
        wasm("panic_at")
    );
    let text =
        format!("[limits]\ncall_timeout = \"10m\"\n[sources.lines]\nkind = \"file\"\npath = \"in.txt\"\n{ops}\n");
    write(dir, "job.toml", &text);
    let run = Background::start(dir, "run", &["run", "job.toml"], &[]).finish();
    run.expect_code(1).expect_stderr(&["operator `bad`", "boom at record 4000"]);
    for wrong in ["operator `stuck` (", "interrupted", "longer than"] {
        assert!(!run.stderr.contains(wrong), "the interrupted call was reported:\n{}", run.stderr);
    }
}

/// A guest allocating without bound stops at the memory limit.
#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    run_guest(dir.path(), "hog", "", &["--set", "limits.memory=\"64MiB\""])
        .expect_code(1)
        .expect_stderr(&["operator `bad`", "more than the 64 MiB memory limit"]);
}

/// Guests see no files, no network and no environment.
#[test]
fn guests_cannot_touch_files_network_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "secret.txt", "top secret\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let probes = [
        format!("read:{secret}"),
        "read:/etc/passwd".into(),
        format!("list:{}", dir.path().display()),
        "list:/".into(),
        format!("connect:{}", listener.local_addr().unwrap()),
        "env:HOME".into(),
        "env:PATH".into(),
    ];
    write(dir.path(), "in.txt", &(probes.join("\n") + "\n"));
    let ops = format!("[operators.probe]\nwasm = \"{}\"\ninput = \"lines\"", wasm("probe"));
    let job = write(dir.path(), "job.toml", &pipeline("in.txt", &ops, "probe"));
    run_job(dir.path(), &job, &[]).expect_code(0);
    let mut got = committed_lines(&dir.path().join("out"));
    got.sort();
    let mut expected: Vec<String> = probes.iter().map(|p| format!("{p} -> denied")).collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// Runs `weir ARGS…` in `dir` with its own compile cache `cache` and `umask 000`.
fn weir_with_cache(dir: &Path, cache: &Path, args: &[&str]) -> weir_tests::Run {
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(dir)
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(weir_tests::weir_bin())
        .args(args)
        .env("WEIR_CACHE_DIR", cache);
    weir_tests::run_with_timeout(cmd, crate::TIMEOUT)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o777
}

fn cache_entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    entries
}

/// Issue 11 #2: the compile cache is private whatever the umask; a patched
/// entry is compiled again, never run; a swapped one likewise; a cache
/// others can write is not used at all.
#[test]
fn the_compile_cache_cannot_be_poisoned() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cache) = (tmp.path(), tmp.path().join("cache"));
    write(dir, "in.txt", "a b\nb c\n");
    let ops = "[operators.t]\nbuiltin = \"tokenize\"\ninput = \"lines\"\n\
               [operators.c]\nbuiltin = \"count\"\ninput = \"t\"\npartition = \"key\"";
    write(dir, "job.toml", &pipeline("in.txt", ops, "c"));
    weir_with_cache(dir, &cache, &["validate", "job.toml"]).expect_code(0);
    assert_eq!(mode(&cache), 0o700, "the cache directory is private under umask 000");
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| mode(e) == 0o600), "entries are private under umask 000");

    // Patched machine code: detected, compiled again, the entry rewritten.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let run = weir_with_cache(dir, &cache, &["validate", "job.toml"]);
    run.expect_code(0).expect_stderr(&["ignoring compile cache entry", "checksum"]);
    weir_with_cache(dir, &cache, &["validate", "job.toml"]).expect_code(0);
    assert!(!weir_with_cache(dir, &cache, &["validate", "job.toml"]).stderr.contains("ignoring"));

    // One component's entry under another's name: detected, not run.
    std::fs::copy(&entries[0], &entries[1]).unwrap();
    let run = weir_with_cache(dir, &cache, &["run", "job.toml", "--no-api"]);
    run.expect_code(0).expect_stderr(&["swapped entry"]);
    let mut counts = committed_lines(&dir.join("out"));
    counts.sort();
    assert_eq!(counts.len(), 4, "both operators ran as themselves: {counts:?}");

    // A cache others can write is not used.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = weir_with_cache(dir, &cache, &["validate", "job.toml"]);
    run.expect_code(0).expect_stderr(&["is writable by others", "not using it"]);
}

/// Issue 11 #6: a guest's 1 MiB error full of newlines and ANSI escapes
/// reaches the host's stderr bounded and escaped: it cannot flood the log or
/// forge a line of it.
#[test]
fn hostile_guest_strings_are_bounded_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_guest(dir.path(), "panic_at", "at = 3, error = true, hostile = true", &[]);
    run.expect_code(1).expect_stderr(&["operator `bad`", "refusing record 3", "more bytes cut"]);
    assert!(run.stderr.len() < 64 * 1024, "{} bytes of stderr", run.stderr.len());
    assert!(!run.stderr.contains('\u{1b}'), "an escape sequence reached stderr");
    assert!(!run.stderr.lines().any(|l| l.starts_with(" ERROR forged")), "a forged log line:\n{}", run.stderr);
}

/// Issue 11 #5: an operator that writes a line to stderr for every record
/// does not trap; its lines reach the host log, tagged, and beyond the rate
/// limit are counted instead.
#[test]
fn a_chatty_guest_is_logged_not_trapped() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "in.txt", &(1..=20_000).map(|i| format!("record {i}\n")).collect::<String>());
    let ops = format!(
        "[operators.chatty]\nwasm = \"{}\"\ninput = \"lines\"\nconfig = {{ at = 0, chatty = true }}",
        wasm("panic_at")
    );
    let job = write(dir, "job.toml", &pipeline("in.txt", &ops, "chatty"));
    let run = crate::weir(dir, &["run", &job, "--no-api"]);
    run.expect_code(0).expect_stderr(&["stderr: processing record 1", "not logged"]);
    assert!(
        run.stderr.contains("operator") && run.stderr.contains("chatty"),
        "lines are tagged:\n{}",
        &run.stderr[..2000.min(run.stderr.len())]
    );
    assert_eq!(committed_lines(&dir.join("out")).len(), 20_000);
}

/// Issue 11 #3: a record over `[limits] max_record` fails the job, naming
/// the operator, instead of travelling on; records under it move in batches
/// bounded in bytes, so big records cannot pile up in the host.
#[test]
fn an_oversized_record_fails_the_job_naming_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ["--set", "limits.max_record=\"1MiB\"", "--set", "job.batch_size=4"];
    let run = run_guest(dir.path(), "panic_at", "at = 0, big = 4194304", &limits);
    run.expect_code(1).expect_stderr(&["operator `bad`", "4194304 bytes", "max_record"]);
    assert_no_partial_output(dir.path());
}
