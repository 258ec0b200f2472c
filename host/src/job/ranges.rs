//! The range of every number, duration and name in a job file, checked
//! before anything is planned or allocated: a value outside its range is
//! refused (exit 2) with the key and the range, never left to abort the
//! host (a 64 GB batch buffer, 32,768 threads) or to hang it (`rate = inf`).
//!
//! The ranges are documented in the README ("Limits of job values"); they
//! are wide enough for any real job and narrow enough that the host's
//! arithmetic and allocations cannot overflow.

use std::time::Duration;

use super::spec::{JobSpec, SourceSpec};
use crate::Error;

/// `[job] batch_size`.
pub const BATCH_SIZE: (usize, usize) = (1, 65_536);
/// Subtasks of the whole job (one thread each).
pub const MAX_SUBTASKS: u32 = 4_096;
/// Source `rate` (records or lines per second).
pub const RATE: (f64, f64) = (0.001, 1e12);
/// Generator `words_per_line`.
pub const WORDS_PER_LINE: (u32, u32) = (1, 10_000);
/// `[limits] memory` (a guest is 32-bit Wasm: 4 GiB is all it can address).
pub const MEMORY: (u64, u64) = (1 << 20, 4 << 30);
/// `[limits] max_record`.
pub const MAX_RECORD: (u64, u64) = (1 << 10, 1 << 30);
/// `[limits] call_timeout` (the epoch tick is 10 ms).
pub const CALL_TIMEOUT: (Duration, Duration) = (Duration::from_millis(10), DAY);
/// `[checkpoint] interval`, `timeout`.
pub const CHECKPOINT_TIME: (Duration, Duration) = (Duration::from_millis(1), WEEK);
/// `[checkpoint] min_pause`, `[restart] delay`, `max_delay`.
pub const PAUSE: (Duration, Duration) = (Duration::ZERO, DAY);
/// Kafka `timeout` (waits for brokers, flushes, commits).
pub const KAFKA_TIMEOUT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));
/// Kafka `partition_discovery` (0 turns it off).
pub const DISCOVERY: (Duration, Duration) = (Duration::ZERO, DAY);
/// `[checkpoint] max_concurrent`.
pub const MAX_CONCURRENT: (u32, u32) = (1, 100);
/// `[checkpoint] retain`.
pub const RETAIN: (u32, u32) = (1, 10_000);
/// Bytes of a job name or node id.
pub const NAME_BYTES: usize = 128;

const DAY: Duration = Duration::from_secs(24 * 3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// Checks every value of `spec`, whose job is called `name`.
///
/// # Errors
/// [`Error::InvalidJob`] naming the first key out of range, and the range.
pub fn check(spec: &JobSpec, name: &str) -> Result<(), Error> {
    check_name("[job] name", name, false)?;
    if let Some(b) = spec.job.batch_size {
        within("[job] batch_size", b, BATCH_SIZE)?;
    }
    let mut subtasks = 0u64;
    for (id, source) in &spec.sources {
        check_name(&format!("[sources.{id}]"), id, true)?;
        let (rate, parallelism) = match source {
            SourceSpec::File { rate, parallelism, .. } => (*rate, *parallelism),
            SourceSpec::Generator(g) => {
                if let Some(w) = g.words_per_line {
                    within(&format!("[sources.{id}] words_per_line"), w, WORDS_PER_LINE)?;
                }
                (g.rate, g.parallelism)
            }
            SourceSpec::Kafka(k) => {
                if let Some(t) = k.timeout {
                    within_time(&format!("[sources.{id}] timeout"), t, KAFKA_TIMEOUT)?;
                }
                if let Some(d) = k.partition_discovery {
                    within_time(&format!("[sources.{id}] partition_discovery"), d, DISCOVERY)?;
                }
                (k.rate, k.parallelism)
            }
        };
        if let Some(rate) = rate {
            // NaN fails every comparison, so `within` refuses it too.
            within(&format!("[sources.{id}] rate"), rate, RATE)?;
        }
        subtasks += u64::from(parallelism.unwrap_or(1));
    }
    for (id, op) in &spec.operators {
        check_name(&format!("[operators.{id}]"), id, true)?;
        subtasks += u64::from(op.parallelism.unwrap_or(1));
    }
    for (id, sink) in &spec.sinks {
        check_name(&format!("[sinks.{id}]"), id, true)?;
        if let Some(t) = sink.timeout {
            within_time(&format!("[sinks.{id}] timeout"), t, KAFKA_TIMEOUT)?;
        }
        subtasks += u64::from(sink.parallelism.unwrap_or(1));
    }
    if subtasks > u64::from(MAX_SUBTASKS) {
        return Err(Error::InvalidJob(format!(
            "the job has {subtasks} subtasks in all (the sum of every parallelism), more than {MAX_SUBTASKS}: each is a \
             thread; lower some parallelism"
        )));
    }
    if !(MEMORY.0..=MEMORY.1).contains(&spec.limits.memory) {
        return Err(Error::InvalidJob(format!(
            "[limits] memory = {} bytes: must be between \"1MiB\" and \"4GiB\" (a guest is 32-bit Wasm)",
            spec.limits.memory
        )));
    }
    within_time("[limits] call_timeout", spec.limits.call_timeout, CALL_TIMEOUT)?;
    within("[limits] max_record (bytes)", spec.limits.max_record, MAX_RECORD)?;
    if let Some(c) = &spec.checkpoint {
        within_time("[checkpoint] interval", c.interval, CHECKPOINT_TIME)?;
        within_time("[checkpoint] timeout", c.timeout, CHECKPOINT_TIME)?;
        within_time("[checkpoint] min_pause", c.min_pause, PAUSE)?;
        within("[checkpoint] max_concurrent", c.max_concurrent, MAX_CONCURRENT)?;
        within("[checkpoint] retain", c.retain, RETAIN)?;
    }
    if let Some(r) = &spec.restart {
        within_time("[restart] delay", r.delay, PAUSE)?;
        within_time("[restart] max_delay", r.max_delay, PAUSE)?;
    }
    Ok(())
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(key: &str, value: T, (low, high): (T, T)) -> Result<(), Error> {
    if value >= low && value <= high {
        return Ok(());
    }
    Err(Error::InvalidJob(format!("{key} = {value}: must be between {low} and {high}")))
}

fn within_time(key: &str, value: Duration, (low, high): (Duration, Duration)) -> Result<(), Error> {
    if value >= low && value <= high {
        return Ok(());
    }
    let show = |d: Duration| humantime::format_duration(d).to_string();
    Err(Error::InvalidJob(format!(
        "{key} = \"{}\": must be between \"{}\" and \"{}\"",
        show(value),
        if low.is_zero() { "0s".into() } else { show(low) },
        show(high)
    )))
}

/// Names end up in paths, logs and manifests: non-empty, short, no control
/// characters, and (for the job name, a directory in the store) no path
/// separators.
fn check_name(key: &str, name: &str, is_id: bool) -> Result<(), Error> {
    let what = if is_id { "id" } else { "name" };
    let problem = if name.is_empty() {
        Some("is empty".to_owned())
    } else if name.len() > NAME_BYTES {
        Some(format!("is {} bytes long, more than {NAME_BYTES}", name.len()))
    } else if name.chars().any(char::is_control) {
        Some("holds a control character (a newline, NUL, an escape…)".to_owned())
    } else if !is_id && (name.contains(['/', '\\']) || name == "." || name == "..") {
        Some("is not usable as a directory name (it holds `/` or `\\`, or is `.` or `..`)".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::InvalidJob(format!("{key}: the {what} {:?} {problem}", truncate(name)))),
        None => Ok(()),
    }
}

/// At most 40 characters of `name`, for messages.
fn truncate(name: &str) -> String {
    match name.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::load::parse;

    fn refused(toml: &str) -> String {
        let spec = parse(toml, &[]).expect("parses");
        let name = spec.job.name.clone().unwrap_or_else(|| "job".into());
        match check(&spec, &name) {
            Err(Error::InvalidJob(msg)) => msg,
            other => panic!("{toml}\nwas not refused: {other:?}"),
        }
    }

    const BASE: &str = "[sources.s]\nkind = \"file\"\npath = \"x\"\n[sinks.o]\nkind = \"stdout\"\ninput = \"s\"\n";

    /// Issue 11 #4: each value that crashed, hung or was silently accepted
    /// is refused naming its key.
    #[test]
    fn hostile_values_are_refused_naming_the_key() {
        let cases = [
            ("[job]\nbatch_size = 1000000000\n", "[job] batch_size"),
            ("[job]\nname = \"\"\n", "[job] name"),
            ("[job]\nname = \"a/b\"\n", "[job] name"),
            ("[job]\nname = \"a\\u0000b\"\n", "control character"),
            ("[limits]\nmemory = \"0B\"\n", "[limits] memory"),
            ("[limits]\nmemory = \"1PB\"\n", "[limits] memory"),
            ("[limits]\ncall_timeout = \"1ns\"\n", "[limits] call_timeout"),
            ("[checkpoint]\ninterval = \"1ns\"\n", "[checkpoint] interval"),
            ("[checkpoint]\ninterval = \"1s\"\ntimeout = \"500000years\"\n", "[checkpoint] timeout"),
        ];
        for (extra, key) in cases {
            let msg = refused(&format!("{extra}{BASE}"));
            assert!(msg.contains(key), "{extra}: {msg}");
        }
        for rate in ["inf", "nan", "1e-30", "-1"] {
            let toml = BASE.replace("path = \"x\"", &format!("path = \"x\"\nrate = {rate}"));
            assert!(refused(&toml).contains("[sources.s] rate"), "rate {rate}");
        }
        let toml = BASE.replace("path = \"x\"", "path = \"x\"\nparallelism = 32768");
        assert!(refused(&toml).contains("subtasks"));
        let toml = "[sources.g]\nkind = \"generator\"\nwords_per_line = 4294967295\n[sinks.o]\nkind = \"stdout\"\ninput = \"g\"\n";
        assert!(refused(toml).contains("words_per_line"));
        let toml = BASE.replace("[sinks.o]", "[sinks.\"o\\nforged log line\"]");
        assert!(refused(&toml).contains("control character"));
    }

    #[test]
    fn ordinary_values_pass() {
        let spec =
            parse(&format!("[job]\nbatch_size = 1024\n[checkpoint]\ninterval = \"100ms\"\n{BASE}"), &[]).unwrap();
        check(&spec, "word count").unwrap();
    }
}
