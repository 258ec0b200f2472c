//! Rate limiting for sources: how many records may go out now so that a
//! subtask does not exceed its share of a configured rate.

use std::time::{Duration, Instant};

/// Paces one source subtask.
#[derive(Debug)]
pub struct Pacer {
    per_second: Option<f64>,
    started: Instant,
    emitted: u64,
}

impl Pacer {
    /// A pacer for `rate` records/s shared by `parallelism` subtasks (`None`: unlimited).
    pub fn new(rate: Option<f64>, parallelism: u32) -> Self {
        let per_second = rate.filter(|r| *r > 0.0).map(|r| r / f64::from(parallelism.max(1)));
        Self { per_second, started: Instant::now(), emitted: 0 }
    }

    /// How many records may go out now, at most `max`. When none may, it
    /// first waits (at most 50 ms) for the next one to be due — pacing is
    /// this source's job, so it sleeps instead of spinning.
    pub fn allowance(&mut self, max: usize) -> usize {
        let Some(rate) = self.per_second else { return max };
        let due = (self.started.elapsed().as_secs_f64() * rate) as u64 + 1;
        if due <= self.emitted {
            let next_due = Duration::from_secs_f64(self.emitted as f64 / rate);
            std::thread::sleep(next_due.saturating_sub(self.started.elapsed()).min(Duration::from_millis(50)));
            return 0;
        }
        (due - self.emitted).min(max as u64) as usize
    }

    /// Counts `n` records as emitted.
    pub fn emitted(&mut self, n: usize) {
        self.emitted += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_allows_everything() {
        assert_eq!(Pacer::new(None, 1).allowance(500), 500);
    }

    #[test]
    fn limited_never_runs_ahead_of_the_rate() {
        let mut p = Pacer::new(Some(1000.0), 2);
        let started = Instant::now();
        let mut total = 0;
        while total < 100 {
            let n = p.allowance(1000);
            p.emitted(n);
            total += n;
        }
        // 500/s per subtask: 100 records cannot be due before ~0.2 s (minus the first).
        assert!(started.elapsed() >= Duration::from_millis(190), "{:?}", started.elapsed());
    }
}
