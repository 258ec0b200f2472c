//! Test guest: burns CPU where the host does not expect it.
//!
//! - Without config: never returns from its first `process` call.
//! - With `snapshot_ms = N`: passes records through, but every `snapshot`
//!   busy-waits N ms — in the first `attempts` attempts of the job only
//!   (default: every attempt) — so checkpoints can be made to time out.
//! - With `sleep_ms = N`: sleeps N ms in its first `process` call (the
//!   host must not let it: a blocked host call escapes the deadline).
//! - With `work_us = N`: passes records through, busy for N µs on each —
//!   a slow operator, to make backpressure.

use std::time::{Duration, Instant};

use weir_sdk::{Context, Emitter, Operator, Record, Result, StateWriter};

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    snapshot_ms: Option<u64>,
    attempts: Option<u32>,
    sleep_ms: Option<u64>,
    work_us: Option<u64>,
}

#[derive(Default)]
struct Spin {
    /// `None`: spin forever in `process`.
    snapshot_delay: Option<Duration>,
    sleep: Option<Duration>,
    work: Option<Duration>,
}

fn burn(x: u64) -> u64 {
    core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1))
}

impl Operator for Spin {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config: Config = ctx.config()?;
        self.sleep = config.sleep_ms.map(Duration::from_millis);
        self.work = config.work_us.map(Duration::from_micros);
        self.snapshot_delay = config.snapshot_ms.map(|ms| {
            let slow = config.attempts.is_none_or(|n| ctx.info().attempt < n);
            Duration::from_millis(if slow { ms } else { 0 })
        });
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        if let Some(sleep) = self.sleep {
            std::thread::sleep(sleep);
            out.emit(rec.value);
            return Ok(());
        }
        if let Some(work) = self.work {
            let started = Instant::now();
            let mut x = rec.value.len() as u64;
            while started.elapsed() < work {
                x = burn(x);
            }
            out.emit(rec.value);
            return Ok(());
        }
        if self.snapshot_delay.is_some() {
            out.emit(rec.value);
            return Ok(());
        }
        let mut x = rec.value.len() as u64;
        loop {
            x = burn(x);
        }
    }

    fn snapshot(&mut self, _state: &mut StateWriter) -> Result<()> {
        let started = Instant::now();
        let mut x = 1;
        while started.elapsed() < self.snapshot_delay.unwrap_or_default() {
            x = burn(x);
        }
        Ok(())
    }
}

weir_sdk::export!(Spin);
