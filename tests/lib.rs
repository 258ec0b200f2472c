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

pub mod kafka;

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

/// Deterministic text with a skewed vocabulary, mixed case and punctuation.
pub fn text(lines: usize, seed: u64) -> String {
    let mut x = seed;
    let mut out = String::new();
    for _ in 0..lines {
        for w in 0..8 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let rank = ((x >> 33) % 1000) * ((x >> 13) % 1000) / 1000;
            let word = if rank.is_multiple_of(7) { format!("Word{rank}") } else { format!("w{rank}") };
            out.push_str(&word);
            out.push_str(if w % 3 == 2 { ", " } else { " " });
        }
        out.push('\n');
    }
    out
}

/// Each word's updates must be exactly 1, 2, …, N where N is its true count:
/// no duplicate, no gap. (Parallel sinks split a word's updates over several
/// part files, so their order across files is not meaningful; sort first.)
#[track_caller]
pub fn assert_exact(got: &BTreeMap<String, Vec<u64>>, expected: &BTreeMap<String, u64>) {
    let missing: Vec<&String> = expected.keys().filter(|w| !got.contains_key(*w)).take(10).collect();
    let extra: Vec<&String> = got.keys().filter(|w| !expected.contains_key(*w)).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "words missing from the output: {missing:?}; unexpected: {extra:?}"
    );
    let wrong = update_errors(got, |word| expected[word]);
    assert!(wrong.is_empty(), "{} word(s) without exactly-once updates, e.g.:\n{}", wrong.len(), wrong.join("\n"));
}

/// Output cut short (a job that failed for good) must still be exactly-once
/// as far as it goes: each word's updates are 1, 2, …, k for some k.
#[track_caller]
pub fn assert_exact_prefix(got: &BTreeMap<String, Vec<u64>>) {
    let wrong = update_errors(got, |word| got[word].len() as u64);
    assert!(
        wrong.is_empty(),
        "{} word(s) with duplicated or missing updates, e.g.:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// For each word whose sorted updates are not `1..=n(word)`: a line saying
/// which counts are duplicated or missing (at most 10 lines).
fn update_errors(got: &BTreeMap<String, Vec<u64>>, n: impl Fn(&str) -> u64) -> Vec<String> {
    let mut errors = Vec::new();
    for (word, updates) in got {
        let n = n(word);
        let mut sorted = updates.clone();
        sorted.sort_unstable();
        if sorted.iter().copied().eq(1..=n) {
            continue;
        }
        let dups: Vec<u64> = sorted.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).take(5).collect();
        let missing: Vec<u64> = (1..=n).filter(|c| sorted.binary_search(c).is_err()).take(5).collect();
        errors.push(format!(
            "  {word:?}: expected 1..={n}, got {} updates; duplicated {dups:?}, missing {missing:?}",
            sorted.len()
        ));
        if errors.len() == 10 {
            break;
        }
    }
    errors
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ids of the complete checkpoints (those with a manifest) in a `file://`
/// store directory for one job, ascending.
pub fn complete_checkpoints(job_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(job_dir) else { return Vec::new() };
    let mut ids: Vec<u64> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_manifest.json").is_file().then_some(id)
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// A small deterministic PRNG (splitmix64) for choosing kill points; tests
/// print the seed so a failure can be replayed with `WEIR_TEST_SEED`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `WEIR_TEST_SEED`, else from the clock.
    pub fn from_env_or_time() -> Self {
        let seed = std::env::var("WEIR_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
        });
        eprintln!("WEIR_TEST_SEED={seed}");
        Self(seed)
    }

    /// Seeded with `seed` (for generated inputs that must not vary).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// A real S3-compatible server (`s3s-fs`, installed by the setup command)
/// on a free loopback port, storing objects under a temporary directory.
/// Killed when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// Objects of bucket `b` live in `root/b/`.
    pub root: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Access key id the server accepts.
    pub const ACCESS_KEY: &'static str = "weir-test-key";
    /// Secret key the server accepts.
    pub const SECRET_KEY: &'static str = "weir-test-secret";

    /// Starts the server with `buckets` created; waits until it accepts connections.
    pub fn start(buckets: &[&str]) -> Self {
        let bin = find_s3s_fs();
        let root = tempfile::tempdir().expect("temp dir for s3s-fs");
        for b in buckets {
            std::fs::create_dir(root.path().join(b)).expect("creating a bucket directory");
        }
        // Ask the OS for a free port, then hand it to the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", Self::ACCESS_KEY, "--secret-key", Self::SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut server = Self { child, root, endpoint: format!("http://127.0.0.1:{port}") };
        wait_until("s3s-fs to accept connections", Duration::from_secs(30), || {
            assert!(server.child.try_wait().expect("polling s3s-fs").is_none(), "s3s-fs exited at start-up");
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    /// The `AWS_*` variables that point object_store (and so `weir`) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3s-fs` on `PATH` or in cargo's bin directory (where the setup command installs it).
fn find_s3s_fs() -> PathBuf {
    find_tool("s3s-fs", "cargo install s3s-fs@0.14.1 --locked --features binary")
}

/// A server binary on `PATH` or in cargo's bin directory, where the
/// README's setup command installs it with `install`.
fn find_tool(name: &str, install: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: the README's setup command installs it ({install})"))
}
