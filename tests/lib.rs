//! Helpers shared by the end-to-end tests: finding the real `weir` binary
//! and the real guest `.wasm` files, writing job files, running jobs with a
//! timeout, and reading sink output.
//!
//! Nothing here stubs a part under test: every job runs the `weir` binary
//! as a user would.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `weir` binary of this build (`target/<profile>/weir`).
pub fn weir_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-HASH → target/<profile>/weir
    let bin =
        exe.parent().and_then(Path::parent).expect("deps dir").join(format!("weir{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} not found: run the tests with `cargo test` from the workspace root", bin.display());
    bin
}

/// A guest `.wasm` built by `tests/build.rs`, e.g. `guest("panic_at")`.
pub fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("WEIR_GUESTS_DIR")).join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} missing; tests/build.rs should have built it", path.display());
    path
}

/// The shared cargo target directory.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("WEIR_TARGET_DIR"))
}

/// A finished `weir` process.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl Run {
    /// Panics with the full output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless stderr contains every one of `needles`.
    #[track_caller]
    pub fn expect_stderr(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}\n--- stderr\n{}", self.stderr);
        }
        self
    }
}

/// Runs `weir ARGS` in `dir`, killing it after `timeout`.
pub fn weir(dir: &Path, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(weir_bin());
    cmd.current_dir(dir).args(args);
    run_with_timeout(cmd, timeout)
}

/// Runs `cmd` to completion or kills it after `timeout` (then panics).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawning the command");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}\n--- stderr\n{}", err_reader.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Output of `Command::output`, as a [`Run`].
pub fn run_output(out: Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Every line of the committed part files in `dir` (hidden files excluded).
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).unwrap_or(".").starts_with('.'))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f).expect("reading part file").lines().map(String::from).collect::<Vec<_>>()
        })
        .collect()
}

/// Names of the hidden (in-progress) files in `dir`.
pub fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses WordCount output lines (`{"key":..,"count":..}`) into, per word,
/// the counts in the order they appear.
pub fn counts_by_word(lines: &[String]) -> BTreeMap<String, Vec<u64>> {
    let mut by_word: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad output line {line:?}: {e}"));
        let word = v["key"].as_str().unwrap_or_else(|| panic!("no key in {line}")).to_owned();
        by_word.entry(word).or_default().push(v["count"].as_u64().unwrap_or_else(|| panic!("no count in {line}")));
    }
    by_word
}

/// Word counts computed independently of Weir, the way `tokenize` defines a
/// word: maximal runs of alphanumerics and `'`, lowercased.
pub fn expected_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()) {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}
