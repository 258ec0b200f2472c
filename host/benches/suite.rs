//! Weir's benchmark suite: `cargo bench -p weir-host --bench suite [-- W1 W3 …]`.
//!
//! Generates its own deterministic input, runs each workload through the real
//! `weir` binary (release build, components precompiled in a private cache)
//! or, for the Wasm boundary, through the host library, and prints a table.
//! Every figure stands next to a baseline measured in the same run: native
//! Rust doing the same work in-process (single-threaded, except W9's). Scale the inputs with
//! `WEIR_BENCH_SCALE` (default 1.0: 10 million words) for a quick look.
//!
//! Nothing here asserts a speed: it measures and reports.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "suite/event_time.rs"]
mod event_time;
#[path = "suite/kafka.rs"]
mod kafka;

use weir_host::wasm::instance::InstanceInfo;
use weir_host::wasm::{Limits, OperatorModule, WasmEngine};

/// Every throughput figure is the best of this many runs: on a small, shared
/// machine the best run is the one least disturbed, and runs take ~1 s.
const RUNS: usize = 5;

/// One line of the results table.
struct Row {
    workload: String,
    metric: String,
    weir: String,
    baseline: String,
    ratio: String,
}

struct Bench {
    dir: PathBuf,
    weir: PathBuf,
    guests: PathBuf,
    cache: PathBuf,
    rows: Vec<Row>,
}

/// A finished `weir run`: wall time, peak RSS and stderr.
struct Measured {
    wall: Duration,
    max_rss_mb: f64,
    stderr: String,
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| a.starts_with('W')).collect();
    let wants = |w: &str| filter.is_empty() || filter.iter().any(|f| f == w);
    let scale: f64 = std::env::var("WEIR_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = target.join("bench-work");
    std::fs::create_dir_all(&dir).expect("bench work dir");
    let mut b = Bench {
        weir: PathBuf::from(env!("CARGO_BIN_EXE_weir")),
        guests: target.join("wasm32-wasip2/release"),
        cache: dir.join("compile-cache"),
        dir,
        rows: Vec::new(),
    };
    assert!(
        b.guests.join("count.wasm").is_file(),
        "run the README's setup command first (it builds the .wasm operators)"
    );
    let words = (10_000_000.0 * scale) as u64;
    let input = b.dir.join(format!("words-{words}.txt"));
    if !input.is_file() {
        eprintln!("generating {words} words into {}", input.display());
        generate_words(&input, words, 100_000, 8);
    }
    if wants("W1") || wants("W2") {
        b.wordcount(&input, words, wants("W1"), wants("W2"));
    }
    if wants("W3") {
        b.stateless(&input, words / 8);
    }
    if wants("W4") {
        b.recovery(scale);
    }
    if wants("W5") {
        b.boundary();
    }
    if wants("W6") {
        kafka::run(&mut b, &input, scale);
    }
    if wants("W7") {
        event_time::run(&mut b, &input, words);
    }
    if wants("W8") {
        b.distributions(&input, words);
    }
    if wants("W9") {
        b.scaling(&input, words);
    }
    let table = b.table();
    println!("\n{table}");
    let out = b.dir.join("results.md");
    std::fs::write(&out, &table).expect("writing results");
    eprintln!("(also written to {})", out.display());
}

/// `lines` of `per_line` words `w<rank>`, rank log-uniform over `vocabulary` (Zipf-like, s = 1).
fn generate_words(path: &Path, words: u64, vocabulary: u64, per_line: u64) {
    generate(path, words, per_line, |u| (vocabulary as f64).powf(u) as u64 - 1);
}

/// As [`generate_words`], with every rank equally likely.
fn generate_uniform_words(path: &Path, words: u64, vocabulary: u64, per_line: u64) {
    generate(path, words, per_line, |u| ((u * vocabulary as f64) as u64).min(vocabulary - 1));
}

/// `words` words `w<rank(u)>` for `u` uniform in [0, 1) (seeded xorshift), `per_line` a line.
fn generate(path: &Path, words: u64, per_line: u64, rank: impl Fn(f64) -> u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("creating input"));
    let mut x: u64 = 0x1234_5678;
    for i in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        write!(out, "w{}", rank(u)).unwrap();
        out.write_all(if (i + 1) % per_line == 0 { b"\n" } else { b" " }).unwrap();
    }
    out.flush().unwrap();
}

/// Native WordCount, written to be fast: read, split, lowercase into a
/// reused buffer, count in a hash map (hashbrown + foldhash, one probe per
/// word, a key allocated only when new). Returns (time, distinct words).
fn native_wordcount(input: &Path) -> (Duration, usize) {
    let started = Instant::now();
    let mut counts: hashbrown::HashMap<Box<[u8]>, u64> = hashbrown::HashMap::default();
    let mut reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(input).unwrap());
    let (mut line, mut lower) = (Vec::new(), Vec::new());
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        for word in line.split(|c| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
            lower.clear();
            lower.extend(word.iter().map(u8::to_ascii_lowercase));
            *counts.entry_ref(lower.as_slice()).or_default() += 1;
        }
        line.clear();
    }
    (started.elapsed(), counts.len())
}

/// The fastest honest native WordCount (issue 15's reference): 1 MiB
/// reads, words split on ASCII whitespace with no lowercasing (the input
/// is already lower case), counted in an FxHash map, a key allocated only
/// when new. Returns (time, distinct words).
fn native_wordcount_fast(input: &Path) -> (Duration, usize) {
    let started = Instant::now();
    let len = std::fs::metadata(input).unwrap().len();
    let counts = count_words(input, 0..len);
    (started.elapsed(), counts.len())
}

/// A native word count's table.
type WordCounts = hashbrown::HashMap<Box<[u8]>, u64, rustc_hash::FxBuildHasher>;

/// [`native_wordcount_fast`]'s loop over the bytes `range` of `input` (cut
/// at line ends), read 1 MiB at a time.
fn count_words(input: &Path, range: std::ops::Range<u64>) -> WordCounts {
    use std::io::{Read, Seek, SeekFrom};
    let mut counts = WordCounts::default();
    let mut file = std::fs::File::open(input).unwrap();
    file.seek(SeekFrom::Start(range.start)).unwrap();
    let mut left = range.end - range.start;
    let mut buf = vec![0u8; 1 << 20];
    // Bytes of a word cut by the end of the previous read.
    let mut carry: Vec<u8> = Vec::new();
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).unwrap();
        if n == 0 {
            break;
        }
        left -= n as u64;
        let chunk = &buf[..n];
        // Up to the last separator: whole words; the rest carries over.
        let end = chunk.iter().rposition(u8::is_ascii_whitespace).map_or(0, |i| i + 1);
        let (whole, rest) = chunk.split_at(end);
        let mut start = 0;
        if !carry.is_empty() {
            // The first word of this read finishes the carried one.
            let first = whole.iter().position(u8::is_ascii_whitespace).unwrap_or(whole.len());
            carry.extend_from_slice(&whole[..first]);
            if first < whole.len() {
                *counts.entry_ref(carry.as_slice()).or_default() += 1;
                carry.clear();
            }
            start = first;
        }
        for word in whole[start..].split(u8::is_ascii_whitespace).filter(|w| !w.is_empty()) {
            *counts.entry_ref(word).or_default() += 1;
        }
        carry.extend_from_slice(rest);
    }
    if !carry.is_empty() {
        *counts.entry_ref(carry.as_slice()).or_default() += 1;
    }
    counts
}

/// Native stateless: uppercase every line, keep those containing "W1".
fn native_stateless(input: &Path) -> (Duration, usize) {
    let started = Instant::now();
    let mut reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(input).unwrap());
    let (mut line, mut kept) = (Vec::new(), 0);
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        let upper = line.to_ascii_uppercase();
        if upper.windows(2).any(|w| w == b"W1") {
            kept += 1;
        }
        line.clear();
    }
    (started.elapsed(), kept)
}

/// The fastest of `n` runs of `f`, which returns (time, result).
fn best_of<T>(n: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    (0..n).map(|_| f()).min_by_key(|(t, _)| *t).expect("at least one run")
}

/// `count` settings of the W1 variants: only final counts, pre-aggregation.
const FINAL: &str = "config = { emit = \"final\" }";
const PRE_AGGREGATE: &str = "pre_aggregate = true";

/// WordCount over `input`: lines → tokenize ×p → keyed count ×p (plus the
/// `count` table lines `count`) → sink ×p (`sink`: its table lines), plus
/// `checkpoint` (a `[checkpoint]` table or "").
fn wordcount_job(input: &Path, p: u32, count: &str, sink: &str, checkpoint: &str) -> String {
    format!(
        "[job]\nname = \"bench\"\n[sources.lines]\nkind = \"file\"\npath = \"{}\"\n\
         [operators.tokenize]\nbuiltin = \"tokenize\"\ninput = \"lines\"\nparallelism = {p}\n\
         [operators.count]\nbuiltin = \"count\"\ninput = \"tokenize\"\npartition = \"key\"\nparallelism = {p}\n{count}\n\
         [sinks.out]\ninput = \"count\"\nparallelism = {p}\n{sink}\n{checkpoint}\n",
        input.display()
    )
}

/// Native WordCount on `threads` threads, as a native program would use
/// them: each runs [`count_words`] over a contiguous share of the file (cut
/// at line ends), then the maps are merged. Returns (time, distinct words).
fn native_wordcount_threads(input: &Path, threads: usize) -> (Duration, usize) {
    use std::io::{Read, Seek, SeekFrom};
    let started = Instant::now();
    let len = std::fs::metadata(input).unwrap().len();
    let mut file = std::fs::File::open(input).unwrap();
    let mut cuts = vec![0];
    for t in 1..threads as u64 {
        // The first line end at or after the even cut.
        let at = (len * t / threads as u64).max(*cuts.last().unwrap());
        file.seek(SeekFrom::Start(at)).unwrap();
        let mut window = [0u8; 4096];
        let n = file.read(&mut window).unwrap();
        cuts.push(window[..n].iter().position(|&b| b == b'\n').map_or(len, |i| at + i as u64 + 1).min(len));
    }
    cuts.push(len);
    let maps: Vec<WordCounts> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts.windows(2).map(|w| scope.spawn(move || count_words(input, w[0]..w[1]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = maps.into_iter();
    let mut merged = all.next().unwrap_or_default();
    for map in all {
        for (word, n) in map {
            *merged.entry(word).or_default() += n;
        }
    }
    (started.elapsed(), merged.len())
}

/// The `count` node's records in, in all and per subtask, from a run report.
fn count_records_in(report: &Path) -> (u64, Vec<u64>) {
    let html = std::fs::read_to_string(report).expect("reading the run report");
    let at = html.find("WEIR_REPORT = ").expect("report data") + "WEIR_REPORT = ".len();
    let data: serde_json::Value =
        serde_json::Deserializer::from_str(&html[at..]).into_iter().next().expect("report data").expect("report JSON");
    let count = data["job"]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == "count"))
        .expect("the count node")
        .clone();
    let subtasks = count["subtasks"]
        .as_array()
        .map(|s| s.iter().filter_map(|t| t["records_in"].as_u64()).collect())
        .unwrap_or_default();
    (count["records_in"].as_u64().expect("the count node's records_in"), subtasks)
}

/// The largest of `counts` over their median (the load of the busiest
/// subtask against a typical one).
fn max_over_median(counts: &[u64]) -> f64 {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] as f64 } else { (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0 };
    sorted.last().map_or(0.0, |&max| max as f64 / median.max(1.0))
}

fn per_sec(n: u64, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn human(rate: f64) -> String {
    if rate >= 1e6 { format!("{:.2} M/s", rate / 1e6) } else { format!("{:.0} k/s", rate / 1e3) }
}

impl Bench {
    fn row(&mut self, workload: &str, metric: &str, weir: String, baseline: String, ratio: String) {
        eprintln!("{workload:4} {metric:42} weir {weir:>14}  baseline {baseline:>14}  {ratio}");
        self.rows.push(Row { workload: workload.into(), metric: metric.into(), weir, baseline, ratio });
    }

    /// A throughput row: `n` items in `wall` against `baseline` items/s
    /// (shown as `baseline_label`, or the rate alone when empty).
    fn rate_row(&mut self, workload: &str, metric: &str, n: u64, wall: Duration, baseline: f64, baseline_label: &str) {
        let rate = per_sec(n, wall);
        let shown =
            if baseline_label.is_empty() { human(baseline) } else { format!("{} ({baseline_label})", human(baseline)) };
        self.row(workload, metric, human(rate), shown, format!("{:.2}×", rate / baseline));
    }

    fn table(&self) -> String {
        let mut t =
            String::from("| workload | metric | weir | baseline (native, same run) | ratio |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(t, "| {} | {} | {} | {} | {} |", r.workload, r.metric, r.weir, r.baseline, r.ratio);
        }
        t
    }

    /// Runs `weir run job --quiet --no-api` to completion; wall time and peak RSS.
    fn run(&self, job: &Path, extra: &[&str]) -> Measured {
        let mut cmd = Command::new(&self.weir);
        cmd.arg("run").arg(job).args(["--quiet", "--no-api"]).args(extra);
        self.measure(cmd)
    }

    /// The fastest of [`RUNS`] [`Self::run`]s (as the native baselines).
    fn run_best(&self, job: &Path) -> Measured {
        (0..RUNS).map(|_| self.run(job, &[])).min_by_key(|m| m.wall).expect("runs")
    }

    /// As [`Self::run`], logging at info (recovery timings) instead of quiet.
    fn run_logged(&self, job: &Path, extra: &[&str]) -> Measured {
        let mut cmd = Command::new(&self.weir);
        cmd.arg("run").arg(job).args(["--no-api"]).args(extra);
        self.measure(cmd)
    }

    #[expect(clippy::zombie_processes, reason = "the child is reaped by wait4, which also gives its peak RSS")]
    fn measure(&self, mut cmd: Command) -> Measured {
        cmd.env("WEIR_CACHE_DIR", &self.cache).stdout(Stdio::null()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("starting weir");
        let mut stderr = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        let (status, max_rss_mb) = wait_with_rusage(child.id());
        let wall = started.elapsed();
        let stderr = reader.join().unwrap_or_default();
        assert!(status == 0, "weir failed ({status}):\n{stderr}");
        Measured { wall, max_rss_mb, stderr }
    }

    fn job(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("writing job");
        path
    }

    fn warm(&self, job: &Path) {
        // Compile the components once so every measured run loads them from the cache.
        self.run(job, &[]);
    }

    /// Runs `native` and every job of `jobs` (label, path) in turn, RUNS
    /// rounds, so drift on a shared machine hits them alike; the best time
    /// of `native` and the best run of each job.
    fn interleaved(
        &self,
        mut native: impl FnMut() -> Duration,
        jobs: &[(String, String)],
    ) -> (Duration, Vec<Measured>) {
        let mut best_native = Duration::MAX;
        let mut best: Vec<Option<Measured>> = jobs.iter().map(|_| None).collect();
        for _ in 0..RUNS {
            best_native = best_native.min(native());
            for ((_, job), best) in jobs.iter().zip(&mut best) {
                let m = self.run(Path::new(job), &[]);
                if best.as_ref().is_none_or(|b| m.wall < b.wall) {
                    *best = Some(m);
                }
            }
        }
        (best_native, best.into_iter().map(|b| b.expect("runs")).collect())
    }

    /// W8: WordCount with final counts at parallelism 2 over three key
    /// distributions of the same number of words (Zipf over 100 k words,
    /// uniform over 100 k, Zipf over 6 k: fewer, hotter keys), with and
    /// without pre-aggregation, each against the fastest native WordCount
    /// on the same input; and how many records crossed the keyed exchange.
    fn distributions(&mut self, zipf: &Path, words: u64) {
        let uniform = self.dir.join(format!("uniform-{words}.txt"));
        if !uniform.is_file() {
            generate_uniform_words(&uniform, words, 100_000, 8);
        }
        let small = self.dir.join(format!("zipf6k-{words}.txt"));
        if !small.is_file() {
            generate_words(&small, words, 6_000, 8);
        }
        for (name, input) in [("Zipf 100 k", zipf), ("uniform 100 k", uniform.as_path()), ("Zipf 6 k", &small)] {
            let tag = name.replace(' ', "");
            let jobs: Vec<(String, String)> = [("", ""), (PRE_AGGREGATE, ", pre-aggregated")]
                .iter()
                .map(|(pre, label)| {
                    let count = format!("{FINAL}\n{pre}");
                    let job = self.job(
                        &format!("w8-{tag}{label}.toml"),
                        &wordcount_job(input, 2, &count, "kind = \"discard\"", ""),
                    );
                    (format!("W1-final p2{label}"), job.to_string_lossy().into_owned())
                })
                .collect();
            self.warm(Path::new(&jobs[0].1));
            let (native, best) = self.interleaved(|| native_wordcount_fast(input).0, &jobs);
            let native_rate = per_sec(words, native);
            for ((label, job), m) in jobs.iter().zip(&best) {
                self.rate_row("W8", &format!("{name}: {label}, words/s"), words, m.wall, native_rate, "");
                let report = self.dir.join("w8-report.html");
                self.run(Path::new(job), &["--report", report.to_str().expect("UTF-8 path")]);
                let (crossed, _) = count_records_in(&report);
                self.row(
                    "W8",
                    &format!("{name}: {label}, records into count"),
                    format!("{crossed}"),
                    format!("{words} (words)"),
                    format!("{:.3}×", crossed as f64 / words as f64),
                );
            }
            // Key skew: how the records into `count` spread over 8 subtasks
            // (a function of the keys and the routing, not of the cores).
            for (pre, label) in [("", ""), (PRE_AGGREGATE, ", pre-aggregated")] {
                let count = format!("{FINAL}\n{pre}");
                let job = self.job(
                    &format!("w8-{tag}-p8{label}.toml"),
                    &wordcount_job(input, 8, &count, "kind = \"discard\"", ""),
                );
                let report = self.dir.join("w8-report.html");
                self.run(&job, &["--report", report.to_str().expect("UTF-8 path")]);
                let (_, subtasks) = count_records_in(&report);
                self.row(
                    "W8",
                    &format!("{name}: p8{label}, busiest count subtask's records / median"),
                    format!("{:.2}×", max_over_median(&subtasks)),
                    "1.5× (issue 15's bound on busy time)".into(),
                    format!("{} … {}", subtasks.iter().min().unwrap_or(&0), subtasks.iter().max().unwrap_or(&0)),
                );
            }
        }
    }

    /// W9: WordCount with final counts at parallelism p = 1, 2, 4, 8, 16 up
    /// to the machine's cores, against native WordCount on p threads.
    fn scaling(&mut self, input: &Path, words: u64) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        for p in [1usize, 2, 4, 8, 16].into_iter().filter(|&p| p <= cores.max(2)) {
            let job = self.job(
                &format!("w9-p{p}.toml"),
                &wordcount_job(input, p as u32, FINAL, "kind = \"discard\"", "")
                    .replace("kind = \"file\"\n", &format!("kind = \"file\"\nparallelism = {p}\n")),
            );
            self.warm(&job);
            let jobs = [(format!("p{p}"), job.to_string_lossy().into_owned())];
            let (native, best) = self.interleaved(|| native_wordcount_threads(input, p).0, &jobs);
            let label = format!("native, {p} threads");
            let metric = format!("W1-final p{p} ({cores} cores), words/s");
            self.rate_row("W9", &metric, words, best[0].wall, per_sec(words, native), &label);
        }
    }

    /// W1 (and W2): WordCount end to end.
    fn wordcount(&mut self, input: &Path, words: u64, w1: bool, w2: bool) {
        let (native, distinct) = best_of(RUNS, || native_wordcount(input));
        let native_rate = per_sec(words, native);
        eprintln!("native WordCount: {words} words, {distinct} distinct, {native:.2?}");
        let (fast, fast_distinct) = native_wordcount_fast(input);
        assert_eq!(fast_distinct, distinct, "the two native WordCounts disagree");
        eprintln!("native WordCount, fastest (one run): {fast:.2?}");
        let job_on = |input: &Path, p: u32, sink: &str, checkpoint: &str| wordcount_job(input, p, "", sink, checkpoint);
        let discard = "kind = \"discard\"";
        let j1 = self.job("w1-p1.toml", &job_on(input, 1, discard, ""));
        self.warm(&j1);
        if w1 {
            // Every variant and the fastest native program, interleaved, best of RUNS each.
            let variants: Vec<(String, String)> = [
                (1, "", "WordCount p1 → discard"),
                (2, "", "WordCount p2 → discard"),
                (1, FINAL, "W1-final p1 (count emits final counts only)"),
                (2, FINAL, "W1-final p2"),
                (2, PRE_AGGREGATE, "WordCount p2, pre-aggregated"),
                (2, &format!("{FINAL}\n{PRE_AGGREGATE}"), "W1-final p2, pre-aggregated"),
            ]
            .iter()
            .enumerate()
            .map(|(i, (p, count, label))| {
                let job = self.job(&format!("w1-{i}.toml"), &wordcount_job(input, *p, count, discard, ""));
                (label.to_string(), job.to_string_lossy().into_owned())
            })
            .collect();
            let (fast, best) = self.interleaved(|| native_wordcount_fast(input).0, &variants);
            let fast_rate = per_sec(words, fast);
            for ((label, _), m) in variants.iter().zip(&best) {
                self.rate_row("W1", &format!("{label}, words/s"), words, m.wall, fast_rate, "FxHash, 1 MiB reads");
            }
            for (p, m) in [(1, &best[0]), (2, &best[1])] {
                let rate = per_sec(words, m.wall);
                self.row(
                    "W1",
                    &format!("WordCount p{p} → discard, vs the suite's first native"),
                    human(rate),
                    format!("{} (foldhash, lowercasing)", human(native_rate)),
                    format!("{:.2}×", rate / native_rate),
                );
                self.row(
                    "W1",
                    &format!("WordCount p{p} → discard, peak RSS"),
                    format!("{:.0} MB", m.max_rss_mb),
                    "-".into(),
                    "-".into(),
                );
            }
            let out = self.dir.join("w1-out");
            let _ = std::fs::remove_dir_all(&out);
            let sink = format!("kind = \"file\"\npath = \"{}\"", out.display());
            let j = self.job("w1-file.toml", &job_on(input, 2, &sink, ""));
            let m = self.run_best(&j);
            let rate = per_sec(words, m.wall);
            self.row(
                "W1",
                "WordCount p2 → file sink, words/s",
                human(rate),
                human(native_rate),
                format!("{:.2}×", rate / native_rate),
            );
            let _ = std::fs::remove_dir_all(&out);
        }
        if w2 {
            // W1 p2 is done in about a second: too short for a 1 s interval.
            // W2 reads the input five times (a directory of five links to it),
            // with its own no-checkpoint baseline on that same input.
            let long = self.dir.join(format!("words-{words}-x5"));
            std::fs::create_dir_all(&long).expect("creating the W2 input dir");
            for i in 0..5 {
                let link = long.join(format!("part-{i}.txt"));
                if !link.exists() {
                    std::os::unix::fs::symlink(input, &link).expect("linking the W2 input");
                }
            }
            let words = words * 5;
            // Interleaved rounds (none, 1 s, 100 ms, none, …), best of each:
            // drift on a shared machine then hits all three alike.
            let configs: Vec<(&str, Option<PathBuf>)> =
                vec![("none", None), ("1s", Some(self.dir.join("w2-1s"))), ("100ms", Some(self.dir.join("w2-100ms")))];
            let jobs: Vec<PathBuf> = configs
                .iter()
                .map(|(name, store)| {
                    let checkpoint = store.as_ref().map_or(String::new(), |store| {
                        format!(
                            "[checkpoint]\ninterval = \"{name}\"\nretain = 10000\nstore = \"file://{}\"",
                            store.display()
                        )
                    });
                    self.job(&format!("w2-{name}.toml"), &job_on(&long, 2, discard, &checkpoint))
                })
                .collect();
            let mut best: Vec<Option<(Measured, (String, String))>> = configs.iter().map(|_| None).collect();
            for _ in 0..RUNS {
                for (i, (_, store)) in configs.iter().enumerate() {
                    if let Some(store) = store {
                        let _ = std::fs::remove_dir_all(store);
                    }
                    let m = self.run(&jobs[i], &[]);
                    if best[i].as_ref().is_none_or(|(b, _)| m.wall < b.wall) {
                        let stats = store.as_ref().map_or_else(Default::default, |s| manifest_stats(&s.join("bench")));
                        best[i] = Some((m, stats));
                    }
                }
            }
            let best: Vec<(Measured, (String, String))> = best.into_iter().map(|b| b.expect("runs")).collect();
            let base = per_sec(words, best[0].0.wall);
            self.row(
                "W2",
                &format!("WordCount p2 over {} M words, no checkpoints, words/s", words / 1_000_000),
                human(base),
                human(native_rate),
                format!("{:.2}×", base / native_rate),
            );
            for ((interval, store), (m, stats)) in configs.iter().zip(&best).skip(1) {
                let rate = per_sec(words, m.wall);
                self.row(
                    "W2",
                    &format!("WordCount p2, checkpoint every {interval}, words/s"),
                    human(rate),
                    format!("{} (no checkpoints)", human(base)),
                    format!("{:+.1} %", (rate / base - 1.0) * 100.0),
                );
                self.row(
                    "W2",
                    &format!("checkpoints every {interval}: count, mean/max duration"),
                    stats.0.clone(),
                    "-".into(),
                    "-".into(),
                );
                self.row(
                    "W2",
                    &format!("checkpoints every {interval}: max alignment, mean size"),
                    stats.1.clone(),
                    "-".into(),
                    "-".into(),
                );
                self.row(
                    "W2",
                    &format!("checkpoint every {interval}: peak RSS"),
                    format!("{:.0} MB", m.max_rss_mb),
                    "-".into(),
                    "-".into(),
                );
                if let Some(store) = store {
                    let _ = std::fs::remove_dir_all(store);
                }
            }
        }
    }

    /// W3: lines → map(uppercase) → filter → discard, at parallelism 1 and
    /// 2 (every node: the source reads byte ranges of the one file), and at
    /// 2 without operator chaining, to show what chaining is worth.
    fn stateless(&mut self, input: &Path, lines: u64) {
        let (native, kept) = best_of(RUNS, || native_stateless(input));
        let native_rate = per_sec(lines, native);
        eprintln!("native stateless: {lines} lines, {kept} kept, {native:.2?}");
        for (p, chaining) in [(1, true), (2, true), (2, false)] {
            let job = self.job(
                &format!("w3-p{p}-{chaining}.toml"),
                &format!(
                    "[job]\nname = \"bench3\"\nchaining = {chaining}\n\
                     [sources.lines]\nkind = \"file\"\npath = \"{}\"\nparallelism = {p}\n\
                     [operators.upper]\nbuiltin = \"map\"\ninput = \"lines\"\nparallelism = {p}\n\
                     config = {{ transform = \"uppercase\" }}\n\
                     [operators.keep]\nbuiltin = \"filter\"\ninput = \"upper\"\nparallelism = {p}\n\
                     config = {{ contains = \"W1\" }}\n\
                     [sinks.out]\nkind = \"discard\"\ninput = \"keep\"\nparallelism = {p}\n",
                    input.display()
                ),
            );
            self.warm(&job);
            let m = self.run_best(&job);
            let rate = per_sec(lines, m.wall);
            let chained = if chaining { "" } else { ", unchained" };
            self.row(
                "W3",
                &format!("map(uppercase) → filter → discard p{p}{chained}, lines/s"),
                human(rate),
                human(native_rate),
                format!("{:.2}×", rate / native_rate),
            );
        }
    }

    /// W4: recovery time with ~10 MB and ~200 MB of operator state.
    fn recovery(&mut self, scale: f64) {
        for (label, keys) in [("10 MB", 700_000u64), ("200 MB", 14_000_000u64)] {
            let keys = ((keys as f64) * scale.min(1.0)).max(1000.0) as u64;
            let store = self.dir.join(format!("w4-{keys}"));
            let _ = std::fs::remove_dir_all(&store);
            // `bulk` fills `count` with `keys` distinct keys; `trickle` (1000 lines/s)
            // keeps the job going while checkpoints capture that state, and goes
            // through `boom`, which traps at its `at`-th line in the first attempt.
            let panic_at = self.guests.join("panic_at.wasm");
            let text = |at: u64, trickle: u64| {
                format!(
                    "[job]\nname = \"bench4\"\n[limits]\nmemory = \"4GiB\"\ncall_timeout = \"60s\"\n\
                     [sources.bulk]\nkind = \"generator\"\ncount = {keys}\n\
                     [sources.trickle]\nkind = \"generator\"\ncount = {trickle}\nrate = 1000\n\
                     [operators.boom]\nwasm = \"{}\"\ninput = \"trickle\"\nconfig = {{ at = {at}, attempts = 1 }}\n\
                     [operators.tokenize]\nbuiltin = \"tokenize\"\ninput = [\"bulk\", \"boom\"]\n\
                     [operators.count]\nbuiltin = \"count\"\ninput = \"tokenize\"\npartition = \"key\"\n\
                     [sinks.out]\nkind = \"discard\"\ninput = \"count\"\n\
                     [checkpoint]\ninterval = \"500ms\"\ntimeout = \"10m\"\nstore = \"file://{}\"\n\
                     [restart]\ndelay = \"0ms\"\n",
                    panic_at.display(),
                    store.display()
                )
            };
            // Calibrate: how long the bulk takes, so the trap comes after a checkpoint holds it all.
            let calibrate = self.job(&format!("w4-{keys}-calibrate.toml"), &text(0, 1));
            let bulk = self.run(&calibrate, &["--fresh"]).wall;
            let at = (bulk.as_secs_f64() * 1000.0) as u64 + 2500;
            let job = self.job(&format!("w4-{keys}.toml"), &text(at, at + 2000));
            let m = self.run_logged(&job, &["--fresh"]);
            let recovered = log_ms(&m.stderr, "records flowing again ");
            let size = manifest_sizes(&store.join("bench4")).into_iter().max().unwrap_or(0);
            self.row(
                "W4",
                &format!("trap → records flowing again, {label} state"),
                recovered.map_or("?".into(), |ms| format!("{ms} ms")),
                "-".into(),
                format!("state {:.0} MB", size as f64 / 1e6),
            );
            let no_trap = self.job(&format!("w4-{keys}-kill.toml"), &text(0, at + 2000));
            let resumed = self.resume_after_kill(&no_trap, &store.join("bench4"), size * 9 / 10);
            self.row(
                "W4",
                &format!("`weir run` start → records flowing after SIGKILL, {label}"),
                resumed.map_or("?".into(), |ms| format!("{ms} ms")),
                "-".into(),
                "-".into(),
            );
            let _ = std::fs::remove_dir_all(&store);
        }
    }

    /// Starts `job` fresh, SIGKILLs it once a checkpoint of at least
    /// `min_bytes` exists, reruns it and reads when records flowed again.
    fn resume_after_kill(&self, job: &Path, job_store: &Path, min_bytes: u64) -> Option<u128> {
        let _ = std::fs::remove_dir_all(job_store);
        let mut child = Command::new(&self.weir)
            .arg("run")
            .arg(job)
            .args(["--no-api"])
            .env("WEIR_CACHE_DIR", &self.cache)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let sizes = manifest_sizes(job_store);
            if sizes.iter().any(|&b| b >= min_bytes) {
                break;
            }
            if child.try_wait().ok()?.is_some() || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let mut cmd = Command::new(&self.weir);
        cmd.arg("run").arg(job).args(["--no-api"]);
        let m = self.measure(cmd);
        log_ms(&m.stderr, "records flowing ")
    }

    /// W5: the Wasm boundary, in-process: one `filter` instance that keeps
    /// every record, batch sizes 1, 64, 1024; and instantiation time.
    fn boundary(&mut self) {
        let engine = WasmEngine::new(Some(self.cache.clone())).expect("engine");
        let limits = Limits { memory: 512 << 20, call_timeout: Duration::from_secs(30) };
        let module =
            OperatorModule::load(&engine, "keep", &self.guests.join("filter.wasm"), limits).expect("filter.wasm");
        let info = InstanceInfo { subtask: 0, parallelism: 1, max_parallelism: 128, attempt: 0 };
        let config = r#"{"contains":"w"}"#;
        let total = 2_000_000usize;
        for batch in [1usize, 64, 1024] {
            let mut frames = Vec::new();
            for i in 0..batch {
                weir_sdk::frame::write(&mut frames, None, None, format!("w{i} some words").as_bytes());
            }
            let mut guest = module.instantiate(0).expect("instance");
            guest.init(&info, config, None).expect("init");
            let calls = total / batch;
            let started = Instant::now();
            let mut out_bytes = 0;
            for _ in 0..calls {
                out_bytes += guest.process(&frames).expect("process").len();
            }
            let weir = started.elapsed();
            // Native: the same decode → test → re-encode, no boundary.
            let started = Instant::now();
            let mut native_out = 0;
            for _ in 0..calls {
                let mut out = Vec::with_capacity(frames.len());
                for rec in weir_sdk::frame::read(&frames) {
                    let rec = rec.expect("frame");
                    if rec.value.windows(1).any(|w| w == b"w") {
                        weir_sdk::frame::write(&mut out, rec.key, rec.timestamp, rec.value);
                    }
                }
                native_out += std::hint::black_box(out).len();
            }
            let native = started.elapsed();
            assert_eq!(out_bytes, native_out, "the guest and the native baseline must do the same work");
            let n = (calls * batch) as f64;
            let (w_ns, n_ns) = (weir.as_nanos() as f64 / n, native.as_nanos() as f64 / n);
            self.row(
                "W5",
                &format!("one operator, batch {batch}: ns/record"),
                format!("{w_ns:.0} ns"),
                format!("{n_ns:.0} ns"),
                format!("boundary {:.0} ns/record", w_ns - n_ns),
            );
        }
        let rounds = 2000;
        let started = Instant::now();
        for _ in 0..rounds {
            let guest = module.instantiate(0).expect("instance");
            std::hint::black_box(guest);
        }
        let instantiate = started.elapsed() / rounds;
        let started = Instant::now();
        for _ in 0..rounds {
            let mut guest = module.instantiate(0).expect("instance");
            guest.init(&info, config, None).expect("init");
        }
        let with_init = started.elapsed() / rounds;
        self.row(
            "W5",
            "instantiate from the precompiled component",
            format!("{:.1} µs", instantiate.as_secs_f64() * 1e6),
            "-".into(),
            "-".into(),
        );
        self.row(
            "W5",
            "instantiate + init",
            format!("{:.1} µs", with_init.as_secs_f64() * 1e6),
            "-".into(),
            "-".into(),
        );
        // Start-up: `weir run` of a one-line job, components cached.
        let one = self.dir.join("one-line.txt");
        std::fs::write(&one, "hello world\n").unwrap();
        let job = self.job(
            "startup.toml",
            &format!(
                "[sources.lines]\nkind = \"file\"\npath = \"{}\"\n[operators.t]\nbuiltin = \"tokenize\"\ninput = \"lines\"\n\
                 [sinks.out]\nkind = \"discard\"\ninput = \"t\"\n",
                one.display()
            ),
        );
        self.warm(&job);
        let mut cmd = Command::new(&self.weir);
        cmd.arg("run").arg(&job).args(["--no-api"]).env("WEIR_LOG", "weir_host=debug");
        let m = self.measure(cmd);
        self.row(
            "W5",
            "`weir run` start → first record (cached components)",
            log_ms(&m.stderr, "records flowing ").map_or("?".into(), |ms| format!("{ms} ms")),
            "-".into(),
            format!("whole run {} ms", m.wall.as_millis()),
        );
    }
}

/// The number before " ms" after `marker` in a log.
fn log_ms(log: &str, marker: &str) -> Option<u128> {
    let at = log.find(marker)? + marker.len();
    log[at..].split_whitespace().next()?.parse().ok()
}

/// (count, mean/max duration) and (max alignment, mean size) of the manifests under `job_dir`.
fn manifest_stats(job_dir: &Path) -> (String, String) {
    let manifests = manifests(job_dir);
    let n = manifests.len().max(1) as f64;
    let dur: Vec<u64> = manifests.iter().map(|m| m["duration_ms"].as_u64().unwrap_or(0)).collect();
    let size: u64 = manifests.iter().map(|m| m["total_bytes"].as_u64().unwrap_or(0)).sum();
    let align = manifests
        .iter()
        .flat_map(|m| m["nodes"].as_array().cloned().unwrap_or_default())
        .flat_map(|node| node["subtasks"].as_array().cloned().unwrap_or_default())
        .map(|s| s["alignment_ms"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    (
        format!(
            "{} · {:.0} / {} ms",
            manifests.len(),
            dur.iter().sum::<u64>() as f64 / n,
            dur.iter().max().unwrap_or(&0)
        ),
        format!("{align} ms · {:.1} MB", size as f64 / n / 1e6),
    )
}

fn manifest_sizes(job_dir: &Path) -> Vec<u64> {
    manifests(job_dir).iter().map(|m| m["total_bytes"].as_u64().unwrap_or(0)).collect()
}

fn manifests(job_dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(job_dir) else { return Vec::new() };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path().join("_manifest.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Waits for process `pid`; its exit code and peak RSS in MB (from `wait4`).
fn wait_with_rusage(pid: u32) -> (i32, f64) {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value to be overwritten by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, status and usage are valid for writes.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(r > 0, "wait4 failed");
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, usage.ru_maxrss as f64 / 1024.0)
}
