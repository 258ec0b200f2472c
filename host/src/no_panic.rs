//! Bounded fuzzing inside `cargo test`: seeded random and mutated inputs
//! for each of the [`crate::fuzzing`] targets, checked never to panic. A
//! failing case prints its seed; `WEIR_FUZZ_SEED=N` replays it,
//! `WEIR_FUZZ_CASES=N` runs more.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::checkpoint::manifest::Manifest;
use crate::checkpoint::state::{self, GuestState, KeyGroupBytes, OperatorState, SinkState, SourcePosition, TaskState};
use crate::fuzzing;
use crate::job::BuiltinDirs;

fn cases() -> u64 {
    std::env::var("WEIR_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3_000)
}

/// Runs `check` on the input each seed makes; panics naming the seed that panicked.
fn for_each_seed(what: &str, make: impl Fn(&mut fastrand::Rng) -> Vec<u8>, check: impl Fn(&[u8])) {
    let seeds: Vec<u64> = match std::env::var("WEIR_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("WEIR_FUZZ_SEED is a number")],
        Err(_) => (0..cases()).collect(),
    };
    for seed in seeds {
        let input = make(&mut fastrand::Rng::with_seed(seed));
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panic!("{what}: seed {seed} panicked on {:?}", String::from_utf8_lossy(&input));
        }
    }
}

/// `base` with a few random edits: bytes flipped, inserted, removed, and
/// hostile tokens spliced in.
fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    const TOKENS: &[&str] = &[
        "1e309",
        "-1",
        "nan",
        "inf",
        "-inf",
        "0",
        "18446744073709551615",
        "9223372036854775807",
        "4294967295",
        "\"\"",
        "\"\\u0000\"",
        "\"\\n\"",
        "[]",
        "{}",
        "\"500000years\"",
        "\"1ns\"",
        "\"1PB\"",
        "\"0B\"",
        "true",
        "\"../..\"",
        "[sources.x]",
        "[[sinks]]",
        "=",
        "\"",
        "\n[job]\n",
    ];
    let mut out = base.to_vec();
    for _ in 0..rng.usize(1..6) {
        let at = rng.usize(0..=out.len());
        match rng.u8(0..4) {
            0 if !out.is_empty() => {
                let i = rng.usize(0..out.len());
                out[i] = rng.u8(..);
            }
            1 => {
                let token = TOKENS[rng.usize(0..TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
            2 if !out.is_empty() => {
                let end = (at + rng.usize(0..20)).min(out.len());
                out.drain(at.min(end)..end);
            }
            _ => out.insert(at, rng.u8(..)),
        }
    }
    out
}

const JOB: &str = r#"
[job]
name = "fuzz"
batch_size = 64

[sources.lines]
kind = "file"
path = "in.txt"
rate = 100

[sources.gen]
kind = "generator"
count = 10
words_per_line = 3

[operators.tokenize]
builtin = "tokenize"
input = ["lines", "gen"]
parallelism = 2

[operators.count]
builtin = "count"
input = "tokenize"
partition = "key"
parallelism = 2

[sinks.out]
kind = "file"
path = "out"
input = "count"

[checkpoint]
interval = "1s"
store = "file://checkpoints"

[restart]
strategy = "exponential-backoff"
attempts = 3

[limits]
memory = "64MiB"
call_timeout = "1s"
"#;

/// Job files and `--set` overrides, mutated, through parsing and planning.
#[test]
fn job_files_never_panic() {
    let builtins = tempfile::tempdir().expect("temp dir");
    for name in ["tokenize", "count"] {
        std::fs::write(builtins.path().join(format!("{name}.wasm")), b"").expect("a stand-in module");
    }
    let dirs = BuiltinDirs(vec![builtins.path().to_path_buf()]);
    const KEYS: &[&str] = &[
        "job.batch_size",
        "job.max_parallelism",
        "job.name",
        "sources.lines.rate",
        "sources.gen.words_per_line",
        "operators.count.parallelism",
        "limits.memory",
        "limits.call_timeout",
        "checkpoint.interval",
        "checkpoint.timeout",
        "checkpoint.retain",
        "restart.delay",
        "sinks.out.path",
        "sources.lines",
        "x.y.z",
    ];
    const VALUES: &[&str] =
        &["0", "-1", "1e309", "nan", "4294967296", "\"\"", "\"1ns\"", "\"9999999years\"", "[1]", "x"];
    // The input is the mutated job, then `--set` lines after a separator.
    let make = |rng: &mut fastrand::Rng| {
        let mut input = mutate(rng, JOB.as_bytes());
        input.extend_from_slice(fuzzing::SET_SEPARATOR.as_bytes());
        for _ in 0..rng.usize(0..3) {
            let (k, v) = (KEYS[rng.usize(0..KEYS.len())], VALUES[rng.usize(0..VALUES.len())]);
            input.extend_from_slice(format!("{k}={v}\n").as_bytes());
        }
        input
    };
    for_each_seed("job file", make, |bytes| fuzzing::job_file(bytes, &dirs));
}

/// Record frames: random bytes and mutated valid batches.
#[test]
fn frames_never_panic() {
    let mut valid = Vec::new();
    weir_sdk::frame::write(&mut valid, Some(b"key"), Some(42), b"value");
    weir_sdk::frame::write(&mut valid, None, None, b"");
    for_each_seed(
        "frame",
        |rng| if rng.bool() { mutate(rng, &valid) } else { (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect() },
        fuzzing::frame,
    );
}

/// State objects: mutated encodings of every kind (length fields included).
#[test]
fn state_objects_never_panic() {
    let states = [
        TaskState::Source(SourcePosition::FileRange { split: 1, offset: 77 }),
        TaskState::Operator(OperatorState {
            finished: false,
            guest: Some(GuestState {
                version: 3,
                operator: vec![serde_bytes::ByteBuf::from(vec![1, 2])],
                keyed: vec![KeyGroupBytes { group: 7, bytes: vec![9; 16] }],
            }),
            watermark: None,
        }),
        TaskState::Sink(SinkState { finished: true, pending: vec!["a".into()], next_part: 4, dir: Some("/o".into()) }),
    ];
    let encoded: Vec<Vec<u8>> = states.iter().map(state::encode).collect();
    let make = |rng: &mut fastrand::Rng| {
        let base = &encoded[rng.usize(0..encoded.len())];
        mutate(rng, base)
    };
    for_each_seed("state object", make, fuzzing::state_object);
}

/// Manifests: mutated JSON.
#[test]
fn manifests_never_panic() {
    let manifest = br#"{"format":1,"job":"j","checkpoint_id":42,"kind":"checkpoint","finished":false,
        "triggered_at_ms":1,"duration_ms":2,"max_parallelism":128,"total_bytes":3,"nodes":[{"id":"count",
        "kind":"operator","parallelism":1,"subtasks":[{"subtask":0,"object":"count/0.state","size":3,
        "checksum":"xxh3-64:0","alignment_ms":0,"sync_ms":0}]}]}"#;
    assert!(Manifest::from_json(manifest).is_ok(), "the seed manifest parses");
    for_each_seed(
        "manifest",
        |rng| mutate(rng, manifest),
        |bytes| {
            let _ = Manifest::from_json(bytes);
            let _ = Manifest::format_of(bytes);
        },
    );
}
