//! Processing time: the one clock that timers, source idleness and
//! `now()` in guests read, so tests can set it.
//!
//! By default it is the system clock. With `WEIR_CLOCK_FILE=PATH` it is the
//! number of milliseconds written in that file (re-read at most once per
//! [`Clock::now_ms`] call, which the task loops make per batch or per tick,
//! never per record): a test writes the file to move time forward. A
//! file clock that stands still also holds back watermarks sent every
//! `interval` (use `interval = "0s"` under such a clock). The
//! checkpoint coordinator keeps its own monotonic timer (`Instant`) — its
//! intervals measure real waiting, not event or processing time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where processing time comes from. Cheap to clone (one per task).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    file: Option<Arc<PathBuf>>,
}

impl Clock {
    /// The clock the environment asks for (`WEIR_CLOCK_FILE`), else the system's.
    pub fn from_env() -> Self {
        Self { file: std::env::var_os("WEIR_CLOCK_FILE").map(|p| Arc::new(PathBuf::from(p))) }
    }

    /// A clock read from `path` (milliseconds since the epoch, as text).
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self { file: Some(Arc::new(path.into())) }
    }

    /// Milliseconds since the Unix epoch. A file clock that cannot be read
    /// (or holds no number) reads as 0: time never goes forward, nothing
    /// fires — a test's mistake shows as a missing result, not a crash.
    pub fn now_ms(&self) -> i64 {
        match &self.file {
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Some(path) => match std::fs::read_to_string(&**path).ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                Some(ms) => ms,
                None => {
                    static WARNED: AtomicBool = AtomicBool::new(false);
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "WEIR_CLOCK_FILE {} holds no number of ms: processing time stands at 0 (no \
                             processing-time timer fires, no input goes idle, watermarks wait for their interval)",
                            path.display()
                        );
                    }
                    0
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_clock_reads_what_the_test_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        let clock = Clock::from_file(&path);
        assert_eq!(clock.now_ms(), 0, "a missing file reads as the epoch");
        std::fs::write(&path, "1700000000123\n").unwrap();
        assert_eq!(clock.now_ms(), 1_700_000_000_123);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::default().now_ms() > 1_577_836_800_000);
    }
}
