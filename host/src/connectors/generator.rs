//! The `generator` source: a deterministic sequence. Record `n` depends only
//! on `n` (and the seed), so every run — and every replay after a failure —
//! produces the same records. With parallelism `p`, subtask `i` produces
//! records `i, i+p, …`; an optional total `rate` is split evenly.

use weir_sdk::frame;

use super::pacer::Pacer;
use super::{Source, SourceStatus};
use crate::Error;
use crate::checkpoint::state::SourcePosition;
use crate::job::spec::{GeneratorFormat, GeneratorSpec};

/// One subtask's share of a generator.
pub struct Generator {
    spec: GeneratorSpec,
    stride: u64,
    /// Next sequence number this subtask emits.
    next: u64,
    pacer: Pacer,
    line: String,
    key: String,
}

impl Generator {
    /// The share of `spec` for `subtask` of `parallelism`.
    pub fn new(spec: &GeneratorSpec, subtask: u32, parallelism: u32) -> Self {
        Self {
            spec: spec.clone(),
            stride: u64::from(parallelism),
            next: u64::from(subtask),
            pacer: Pacer::new(spec.rate, parallelism),
            line: String::new(),
            key: String::new(),
        }
    }

    /// A Zipf-like rank in `0..vocabulary` for draw `j` of record `n`.
    fn rank(&self, n: u64, j: u64) -> u64 {
        let vocabulary = self.spec.vocabulary.unwrap_or(1000).max(1);
        let seed = self.spec.seed.unwrap_or(0);
        let r = splitmix64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j.wrapping_mul(0xD1B5_4A32_D192_ED03));
        // Log-uniform rank: word i is drawn with probability ~1/(i + 1)
        // (Zipf, s = 1); (v + 1)^u is in [1, v + 1), so every rank below v comes up.
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        ((f64::from(vocabulary) + 1.0).powf(u) as u64).clamp(1, u64::from(vocabulary)) - 1
    }

    /// Event time of record `n` for `events`: on a steady clock, moved
    /// back by a seeded amount of up to `disorder_ms`.
    fn event_time(&self, n: u64) -> i64 {
        let start = self.spec.start_ms.unwrap_or(1_700_000_000_000);
        let step = self.spec.step_ms.unwrap_or(1);
        let disorder = self.spec.disorder_ms.unwrap_or(0).max(0);
        let back = if disorder == 0 {
            0
        } else {
            let r = splitmix64(self.spec.seed.unwrap_or(0) ^ n.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5EED);
            i64::try_from(r % (disorder as u64 + 1)).unwrap_or(0)
        };
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        start.saturating_add(n.saturating_mul(step)).saturating_sub(back)
    }

    fn render(&mut self, n: u64) {
        self.line.clear();
        match self.spec.format {
            GeneratorFormat::Sequence => {
                use std::fmt::Write;
                let _ = write!(self.line, "{n}");
            }
            GeneratorFormat::Events => {
                use std::fmt::Write;
                self.key.clear();
                let _ = write!(self.key, "k{}", self.rank(n, 0));
                let _ = write!(self.line, "{{\"key\":\"{}\",\"ts\":{},\"n\":{n}}}", self.key, self.event_time(n));
            }
            GeneratorFormat::Words => {
                for j in 0..self.spec.words_per_line.unwrap_or(8) {
                    let rank = self.rank(n, u64::from(j));
                    if j > 0 {
                        self.line.push(' ');
                    }
                    self.line.push('w');
                    let _ = std::fmt::Write::write_fmt(&mut self.line, format_args!("{rank}"));
                }
            }
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Source for Generator {
    fn next_batch(&mut self, out: &mut Vec<u8>, max_records: usize) -> Result<SourceStatus, Error> {
        let count = self.spec.count.unwrap_or(u64::MAX);
        let allowed = self.pacer.allowance(max_records);
        let mut produced = 0;
        while produced < allowed && self.next < count {
            self.render(self.next);
            if self.spec.format == GeneratorFormat::Events {
                let ts = self.event_time(self.next);
                frame::write(out, Some(self.key.as_bytes()), Some(ts), self.line.as_bytes());
            } else {
                frame::write(out, None, None, self.line.as_bytes());
            }
            self.next += self.stride;
            produced += 1;
        }
        self.pacer.emitted(produced);
        Ok(if self.next >= count { SourceStatus::Exhausted } else { SourceStatus::More })
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Generator { next: self.next }
    }

    fn restore(&mut self, position: SourcePosition) -> Result<(), Error> {
        let SourcePosition::Generator { next } = position else {
            return Err(Error::Corrupt(format!("generator: cannot resume from {position:?}")));
        };
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: GeneratorFormat, count: u64) -> GeneratorSpec {
        GeneratorSpec {
            count: Some(count),
            rate: None,
            format,
            vocabulary: Some(100),
            words_per_line: Some(4),
            seed: Some(7),
            parallelism: None,
            key: None,
            timestamp: None,
            on_bad_record: None,
            watermark: None,
            start_ms: Some(1000),
            step_ms: Some(10),
            disorder_ms: Some(25),
        }
    }

    fn drain(g: &mut Generator) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let status = g.next_batch(&mut buf, 3).unwrap();
            out.extend(frame::read(&buf).map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()));
            if status == SourceStatus::Exhausted {
                return out;
            }
        }
    }

    #[test]
    fn subtasks_split_the_sequence_exactly() {
        let s = spec(GeneratorFormat::Sequence, 10);
        let mut all: Vec<u64> =
            (0..3).flat_map(|i| drain(&mut Generator::new(&s, i, 3))).map(|v| v.parse().unwrap()).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn events_carry_key_and_a_bounded_disorder_of_event_time() {
        let s = spec(GeneratorFormat::Events, 500);
        let mut g = Generator::new(&s, 0, 1);
        let mut buf = Vec::new();
        while g.next_batch(&mut buf, 100).unwrap() == SourceStatus::More {}
        let records: Vec<_> = frame::read(&buf).map(Result::unwrap).collect();
        assert_eq!(records.len(), 500);
        let mut out_of_order = 0;
        for (n, r) in records.iter().enumerate() {
            let ts = r.timestamp.unwrap();
            let on_time = 1000 + 10 * n as i64;
            assert!((on_time - 25..=on_time).contains(&ts), "record {n} at {ts}");
            let value: serde_json::Value = serde_json::from_slice(r.value).unwrap();
            assert_eq!(value["ts"], ts);
            assert_eq!(value["key"].as_str().unwrap().as_bytes(), r.key.unwrap());
            if n > 0 && ts < records[n - 1].timestamp.unwrap() {
                out_of_order += 1;
            }
        }
        assert!(out_of_order > 10, "disorder 25 ms over a 10 ms step reorders some records ({out_of_order})");
    }

    /// Every rank of a small vocabulary comes up (the last one too).
    #[test]
    fn every_key_of_a_small_vocabulary_comes_up() {
        let mut s = spec(GeneratorFormat::Events, 200);
        s.vocabulary = Some(3);
        let mut g = Generator::new(&s, 0, 1);
        let mut buf = Vec::new();
        while g.next_batch(&mut buf, 100).unwrap() == SourceStatus::More {}
        let mut keys: Vec<&[u8]> = frame::read(&buf).map(|r| r.unwrap().key.unwrap()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys, [&b"k0"[..], b"k1", b"k2"]);
    }

    #[test]
    fn words_are_deterministic_and_skewed() {
        let s = spec(GeneratorFormat::Words, 2000);
        let a = drain(&mut Generator::new(&s, 0, 1));
        assert_eq!(a, drain(&mut Generator::new(&s, 0, 1)));
        assert!(a.iter().all(|l| l.split(' ').count() == 4));
        let words: Vec<&str> = a.iter().flat_map(|l| l.split(' ')).collect();
        let common = words.iter().filter(|w| **w == "w0").count();
        let rare = words.iter().filter(|w| **w == "w90").count();
        assert!(common > 5 * rare.max(1), "w0 {common} vs w90 {rare}");
    }
}
