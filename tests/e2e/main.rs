//! End-to-end tests: the real `weir` binary running real `.wasm` operators
//! (built by `tests/build.rs`). One binary, one module per area; shared
//! helpers live in `weir_tests` (tests/lib.rs).

mod bad_input;
mod chaining;
mod cli;
mod display;
mod event_time;
mod faults;
mod kafka;
mod observability;
mod operators;
mod pre_aggregate;
mod recovery;
mod sandbox;
mod savepoints;
mod windows;
mod wordcount;

use std::path::Path;
use std::time::Duration;

/// Generous hang guard for a job that should take well under a second.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.to_string_lossy().into_owned()
}

/// Runs `weir run JOB --quiet ARGS…` in `dir` with a shared compile cache.
pub fn run_job(dir: &Path, job: &str, extra: &[&str]) -> weir_tests::Run {
    let mut args = vec!["run", job, "--quiet"];
    args.extend_from_slice(extra);
    weir(dir, &args)
}

/// Runs `weir ARGS…` in `dir` with the tests' shared compile cache.
pub fn weir(dir: &Path, args: &[&str]) -> weir_tests::Run {
    weir_env(dir, args, &[])
}

/// As [`weir`], with extra environment variables.
pub fn weir_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> weir_tests::Run {
    let mut cmd = std::process::Command::new(weir_tests::weir_bin());
    cmd.current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .env("WEIR_CACHE_DIR", weir_tests::target_dir().join("e2e-compile-cache"));
    weir_tests::run_with_timeout(cmd, TIMEOUT)
}

/// A `weir` process running in the background, its output going to files.
pub struct Background {
    /// The process.
    pub child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Drop for Background {
    /// A test that fails while `weir` runs must not leave it running.
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Background {
    /// Starts `weir ARGS…` in `dir`; stdout/stderr go to `dir/<name>.stdout|.stderr`.
    pub fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let mut cmd = std::process::Command::new(weir_tests::weir_bin());
        cmd.current_dir(dir)
            .args(args)
            .envs(env.iter().copied())
            .env("WEIR_CACHE_DIR", weir_tests::target_dir().join("e2e-compile-cache"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("creating stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("creating stderr file"));
        Self { child: cmd.spawn().expect("starting weir"), stdout, stderr }
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("polling weir").is_some()
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(mut self) -> weir_tests::Run {
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for exit (at most [`TIMEOUT`]) and collects the output.
    pub fn finish(mut self) -> weir_tests::Run {
        weir_tests::wait_until("weir to exit", TIMEOUT, || self.exited());
        let status = self.child.wait().expect("reaping weir");
        weir_tests::Run {
            code: status.code(),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }
}

/// A temporary directory holding `in.txt` = [`weir_tests::text`]`(lines, seed)`; returns it and the text.
pub fn with_input(lines: usize, seed: u64) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = weir_tests::text(lines, seed);
    write(dir.path(), "in.txt", &text);
    (dir, text)
}

/// The committed output of `dir/out` is exactly-once for `text` (each word's
/// updates are 1…N), and nothing in-progress is left behind.
#[track_caller]
pub fn assert_output_exact(dir: &Path, text: &str) {
    let out = dir.join("out");
    let hidden = weir_tests::hidden_files(&out);
    assert!(hidden.is_empty(), "in-progress files left behind: {hidden:?}");
    weir_tests::assert_exact(
        &weir_tests::counts_by_word(&weir_tests::committed_lines(&out)),
        &weir_tests::expected_counts(text),
    );
}

/// A job: one file source → the given operator tables → a file sink `out/`.
pub fn pipeline(input: &str, operators: &str, last: &str) -> String {
    format!(
        r#"
[sources.lines]
kind = "file"
path = "{input}"

{operators}

[sinks.out]
kind = "file"
path = "out"
input = "{last}"
"#
    )
}

/// The wasm path of a guest, TOML-quoted-safe.
pub fn wasm(name: &str) -> String {
    weir_tests::guest(name).to_string_lossy().replace('\\', "/")
}
