//! W7: windowed WordCount. W1's input with each line prefixed by an
//! epoch-ms timestamp (advancing [`STEP_MS`] per line, moved back by up to
//! [`DISORDER_MS`], seeded), run in one run, interleaved round by round,
//! best of [`RUNS`] each:
//!
//! - (a) W1 as the suite runs it (tokenize → count → discard, p2) on these
//!   lines: `tokenize` makes the timestamp one more word, a new key per line;
//! - (b) the same job with `timestamp` and `watermark` on the source: what
//!   reading event time and sending watermarks costs — and, to split that
//!   cost, with `timestamp` alone;
//! - (c) windowed WordCount: tokenize → filter (drops the timestamp's
//!   token) → `window` (tumbling 10 s, count) on a key edge → discard, p2;
//! - (d) native single-threaded Rust doing (c)'s work in-process;
//!
//! and, for reference, W1 p2 on W1's own input (no timestamps).
//!
//! The disorder is below the watermark's bound, so no word is late and (c)
//! must report exactly what (d) counts; a first run of (c) into a file sink
//! checks that before anything is timed. Rates are W1's words per second
//! (8 per line; the timestamp is not counted).

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Bench, Measured, RUNS, human, per_sec};

/// Event time between consecutive lines: 10 M words (1.25 M lines) span
/// 10,000 s, a thousand 10 s windows.
const STEP_MS: i64 = 8;
/// Each line's timestamp is moved back by up to this much.
const DISORDER_MS: u64 = 200;
/// The watermark's bound: above the disorder, so nothing is late.
const BOUND: &str = "1s";
/// Tumbling window size.
const WINDOW_MS: i64 = 10_000;
/// Event time of the first line (2023-11-14T22:13:20Z).
const START_MS: i64 = 1_700_000_000_000;

/// The jobs W7 runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// W1's tokenize → count.
    W1,
    /// W1, the source reading each line's timestamp.
    W1Timestamp,
    /// W1, the source reading timestamps and sending watermarks.
    W1EventTime,
    /// Event time, tokenize → filter → window.
    Windowed,
}

/// The best run of each job, and of the native baseline.
struct Best {
    w1: Measured,
    a: Measured,
    timestamp_only: Measured,
    b: Measured,
    c: Measured,
    native: Duration,
}

/// Runs W7 on `input` (W1's words, `words` of them).
pub fn run(b: &mut Bench, input: &Path, words: u64) {
    let stamped = b.dir.join(format!("stamped-{words}.txt"));
    if !stamped.is_file() {
        eprintln!("W7: timestamping {} into {}", input.display(), stamped.display());
        stamp(input, &stamped);
    }
    let job = |name: &str, on: &Path, shape: Shape, sink: &str| b.job(name, &job_text(on, shape, sink));
    let discard = "kind = \"discard\"";
    let jobs = [
        job("w7-w1.toml", input, Shape::W1, discard),
        job("w7-a.toml", &stamped, Shape::W1, discard),
        job("w7-timestamp.toml", &stamped, Shape::W1Timestamp, discard),
        job("w7-b.toml", &stamped, Shape::W1EventTime, discard),
        job("w7-c.toml", &stamped, Shape::Windowed, discard),
    ];
    // Peak RSS from the first runs, which also compile the components: a
    // child's peak RSS (wait4) starts at this process's peak, and the native
    // baseline's maps raise that to hundreds of MB.
    let rss = jobs.each_ref().map(|job| b.run(job, &[]).max_rss_mb);
    let (native, expected) = native_windowed(&stamped);
    eprintln!("W7 native: {} (window, word) counts, {native:.2?}", expected.0);
    let out = b.dir.join("w7-out");
    let to_file = format!("kind = \"file\"\npath = \"{}\"", out.display());
    check(b, &job("w7-check.toml", &stamped, Shape::Windowed, &to_file), &out, expected);
    let mut best: [Option<Measured>; 5] = Default::default();
    let mut native = Duration::MAX;
    for _ in 0..RUNS {
        for (i, job) in jobs.iter().enumerate() {
            let m = b.run(job, &[]);
            if best[i].as_ref().is_none_or(|best| m.wall < best.wall) {
                best[i] = Some(m);
            }
        }
        native = native.min(native_windowed(&stamped).0);
    }
    let [w1, a, timestamp_only, with_watermark, c] = best.map(|m| m.expect("runs"));
    report(b, words, &Best { w1, a, timestamp_only, b: with_watermark, c, native }, rss);
}

/// The table rows; `rss` is each job's peak RSS in MB.
fn report(b: &mut Bench, words: u64, best: &Best, rss: [f64; 5]) {
    let rate = |m: &Measured| per_sec(words, m.wall);
    let (w1, a, native) = (rate(&best.w1), rate(&best.a), per_sec(words, best.native));
    b.row("W7", "W1 p2 on W1's input, no timestamps (reference), words/s", human(w1), "-".into(), "-".into());
    b.row(
        "W7",
        "(a) W1 p2 on the timestamped lines → discard, words/s",
        human(a),
        format!("{} (W1)", human(w1)),
        format!("{:.2}× (the timestamp is a 9th word)", a / w1),
    );
    for (label, m) in [("timestamp only", &best.timestamp_only), ("timestamp + watermark (b)", &best.b)] {
        // What event time adds, also as a share of plain W1's time.
        let added = m.wall.as_secs_f64() - best.a.wall.as_secs_f64();
        b.row(
            "W7",
            &format!("(a) + {label}, words/s"),
            human(rate(m)),
            format!("{} (a)", human(a)),
            format!(
                "{:.2}× ({:+.1} %); {:+.0} ms = {:.0} % of W1's time",
                rate(m) / a,
                (rate(m) / a - 1.0) * 100.0,
                added * 1e3,
                added / best.w1.wall.as_secs_f64() * 100.0
            ),
        );
    }
    b.row(
        "W7",
        "(c) windowed WordCount, tumbling 10 s, p2 → discard, words/s",
        human(rate(&best.c)),
        format!("{} (d) native", human(native)),
        format!("(c)/(d) {:.2}×", rate(&best.c) / native),
    );
    b.row(
        "W7",
        "peak RSS, W1 / (a) / (b) / (c)",
        format!("{:.0} / {:.0} / {:.0} / {:.0} MB", rss[0], rss[1], rss[3], rss[4]),
        "-".into(),
        "-".into(),
    );
}

/// The job file of `shape` over `input`, p2, into `sink` (its `kind` and settings).
fn job_text(input: &Path, shape: Shape, sink: &str) -> String {
    let timestamp = "timestamp = { csv = 0, separator = \" \" }\n";
    let source_time = match shape {
        Shape::W1 => String::new(),
        Shape::W1Timestamp => timestamp.to_owned(),
        Shape::W1EventTime | Shape::Windowed => {
            format!("{timestamp}watermark = {{ max_out_of_orderness = \"{BOUND}\" }}\n")
        }
    };
    // (c)'s filter drops the timestamp's token: W1's words all contain a `w`.
    let middle = match shape {
        Shape::W1 | Shape::W1Timestamp | Shape::W1EventTime => {
            "[operators.count]\nbuiltin = \"count\"\ninput = \"tokenize\"\npartition = \"key\"\nparallelism = 2\n"
                .to_owned()
        }
        Shape::Windowed => format!(
            "[operators.words]\nbuiltin = \"filter\"\ninput = \"tokenize\"\nparallelism = 2\n\
             config = {{ contains = \"w\" }}\n\
             [operators.count]\nbuiltin = \"window\"\ninput = \"words\"\npartition = \"key\"\nparallelism = 2\n\
             config = {{ kind = \"tumbling\", size = \"{WINDOW_MS}ms\" }}\n"
        ),
    };
    format!(
        "[job]\nname = \"bench7\"\n[sources.lines]\nkind = \"file\"\npath = \"{}\"\n{source_time}\
         [operators.tokenize]\nbuiltin = \"tokenize\"\ninput = \"lines\"\nparallelism = 2\n{middle}\
         [sinks.out]\ninput = \"count\"\nparallelism = 2\n{sink}\n",
        input.display()
    )
}

/// Writes `input`'s lines to `out`, each prefixed by its event time and a space.
fn stamp(input: &Path, out: &Path) {
    let reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(input).expect("reading the W1 input"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).expect("creating the W7 input"));
    let mut x: u64 = 0x9E37_79B9;
    for (i, line) in reader.lines().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let back = (x % (DISORDER_MS + 1)) as i64;
        let ts = START_MS + i as i64 * STEP_MS - back;
        writeln!(w, "{ts} {}", line.expect("reading the W1 input")).expect("writing the W7 input");
    }
    w.flush().expect("writing the W7 input");
}

/// Native windowed WordCount, written to be fast: parse the timestamp, find
/// the line's window (one probe per line), then count each word of the rest
/// in that window's map (one probe per word, a key allocated only when new).
/// Returns (time, (number of (window, word) counts, their sum)).
fn native_windowed(input: &Path) -> (Duration, (u64, u64)) {
    type Counts = hashbrown::HashMap<Box<[u8]>, u64>;
    let started = Instant::now();
    let mut windows: hashbrown::HashMap<i64, Counts> = hashbrown::HashMap::default();
    let mut reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(input).unwrap());
    let (mut line, mut lower) = (Vec::new(), Vec::new());
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        let space = line.iter().position(|&c| c == b' ').unwrap_or(line.len());
        let ts = line[..space].iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        let counts = windows.entry(ts - ts.rem_euclid(WINDOW_MS)).or_default();
        for word in line[space..].split(|c| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
            lower.clear();
            lower.extend(word.iter().map(u8::to_ascii_lowercase));
            *counts.entry_ref(lower.as_slice()).or_default() += 1;
        }
        line.clear();
    }
    let elapsed = started.elapsed();
    let results = windows.values().map(|c| c.len() as u64).sum();
    let total = windows.values().flat_map(|c| c.values()).sum();
    (elapsed, (results, total))
}

/// Runs (c) into a file sink and checks it reported `expected` (number of
/// window results, sum of their counts): every word counted, none late.
fn check(b: &Bench, job: &Path, out: &Path, expected: (u64, u64)) {
    let _ = std::fs::remove_dir_all(out);
    b.run(job, &[]);
    let (mut results, mut total) = (0u64, 0u64);
    for part in std::fs::read_dir(out).expect("the W7 check's output") {
        let reader = BufReader::new(std::fs::File::open(part.expect("a part file").path()).expect("a part file"));
        for line in reader.lines() {
            let line = line.expect("a window result");
            let value = line.rsplit_once("\"value\":").and_then(|(_, v)| v.trim_end_matches('}').parse::<u64>().ok());
            total += value.unwrap_or_else(|| panic!("not a window result: {line}"));
            results += 1;
        }
    }
    let _ = std::fs::remove_dir_all(out);
    assert_eq!((results, total), expected, "W7: weir's windowed counts differ from the native baseline's");
    eprintln!("W7 check: weir reported the same {results} window counts (of {total} words) as native");
}
