//! What a person watching `weir run` sees: a live line per node (records in
//! and out, per second) drawn with indicatif on stderr — only on a terminal —
//! and a summary when the job ends.
//!
//! Log lines go through [`LogWriter`]: while a display is shown, each line is
//! written with the display lifted off the screen and drawn again below it,
//! so the terminal holds one display, never stale copies of it.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{HumanBytes, HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::checkpoint::coordinator::CheckpointStats;
use crate::dataflow::{NodeStats, RunSummary};

/// Live progress of a running job.
pub struct Display {
    bars: MultiProgress,
    header: ProgressBar,
    rows: Vec<(NodeStats, ProgressBar)>,
    /// The checkpoint line, if checkpointing.
    checkpoints: Option<(Arc<CheckpointStats>, ProgressBar)>,
    /// Counters at the previous refresh, for rates. Only the display thread
    /// touches it; a Mutex keeps `refresh(&self)` simple.
    last: Mutex<(Instant, Vec<(u64, u64)>)>,
}

impl Display {
    /// Starts drawing for the nodes in `stats` (and a checkpoint line if given).
    pub fn new(job: &str, stats: &[NodeStats], checkpoints: Option<Arc<CheckpointStats>>) -> Self {
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let header = bars.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} job `{prefix}` running {elapsed}").expect("valid template"),
        );
        header.set_prefix(job.to_owned());
        let width = stats.iter().map(|s| s.id.len()).max().unwrap_or(0);
        let rows = stats
            .iter()
            .map(|s| {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {prefix} {msg}").expect("valid template"));
                bar.set_prefix(format!("{:width$} ×{}", s.id, s.parallelism));
                (s.clone(), bar)
            })
            .collect();
        let checkpoints = checkpoints.map(|c| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("  {msg}").expect("valid template"));
            (c, bar)
        });
        let last = Mutex::new((Instant::now(), vec![(0, 0); stats.len()]));
        *shown() = Some(bars.clone());
        Self { bars, header, rows, checkpoints, last }
    }

    /// Redraws with current counters and rates.
    pub fn refresh(&self) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let dt = last.0.elapsed().as_secs_f64().max(1e-3);
        for ((stats, bar), prev) in self.rows.iter().zip(last.1.iter_mut()) {
            let (i, o) = (stats.metrics.records_in(), stats.metrics.records_out());
            let rate = |now: u64, before: u64| HumanCount(((now - before) as f64 / dt) as u64);
            bar.set_message(format!(
                "in {:>12} ({:>9}/s)  out {:>12} ({:>9}/s)",
                HumanCount(i).to_string(),
                rate(i, prev.0).to_string(),
                HumanCount(o).to_string(),
                rate(o, prev.1).to_string()
            ));
            *prev = (i, o);
        }
        last.0 = Instant::now();
        if let Some((stats, bar)) = &self.checkpoints {
            bar.set_message(checkpoint_line(stats));
        }
        self.header.tick();
    }

    /// Removes the live lines.
    pub fn clear(&self) {
        *shown() = None;
        for (_, bar) in &self.rows {
            bar.finish_and_clear();
        }
        if let Some((_, bar)) = &self.checkpoints {
            bar.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.bars.clear();
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        *shown() = None;
    }
}

/// The display on screen now, if any (one per process at a time).
fn shown() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    static SHOWN: Mutex<Option<MultiProgress>> = Mutex::new(None);
    SHOWN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where log lines go (`tracing_subscriber::fmt().with_writer(LogWriter)`):
/// stderr, around the display if one is shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log event, written whole when dropped.
#[derive(Debug)]
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let write = || {
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &self.0);
        };
        let bars = shown().clone();
        match bars {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

/// "checkpoints: 12 complete, last #12: 35 ms, 1.2 MiB, alignment 3 ms".
fn checkpoint_line(stats: &CheckpointStats) -> String {
    let completed = stats.completed.load(Ordering::Relaxed);
    if completed == 0 {
        return "checkpoints: none complete yet".into();
    }
    format!(
        "checkpoints: {completed} complete, last #{}: {} ms, {}, alignment {} ms",
        stats.last_id.load(Ordering::Relaxed),
        stats.last_duration_ms.load(Ordering::Relaxed),
        HumanBytes(stats.last_bytes.load(Ordering::Relaxed)),
        stats.last_alignment_ms.load(Ordering::Relaxed)
    )
}

/// The end-of-job summary, one line per node.
pub fn summary(summary: &RunSummary) -> String {
    let mut out = format!("job `{}` finished in {:.2?}\n", summary.job, summary.elapsed);
    if let Some(id) = summary.restored_from {
        let _ = writeln!(out, "  (resumed from checkpoint {id}; counts are since then)");
    }
    let width = summary.nodes.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in &summary.nodes {
        let _ = writeln!(
            out,
            "  {:width$} ×{:<3} in {:>14}  out {:>14}",
            s.id,
            s.parallelism,
            HumanCount(s.metrics.records_in()).to_string(),
            HumanCount(s.metrics.records_out()).to_string()
        );
    }
    if let Some(stats) = &summary.checkpoints {
        let _ = writeln!(out, "  {}", checkpoint_line(stats));
    }
    out
}

/// `weir status`: the control API's `/v1/job` answer as text.
pub fn status(status: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut out = format!(
        "job `{}`: {} (attempt {}, up {})\n",
        text(&status["job"]),
        text(&status["state"]),
        status["attempt"],
        humantime::format_duration(std::time::Duration::from_secs(status["uptime_ms"].as_u64().unwrap_or(0) / 1000))
    );
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    let width = nodes.iter().map(|n| text(&n["id"]).len()).max().unwrap_or(0);
    for n in &nodes {
        let inputs: Vec<String> = n["inputs"]
            .as_array()
            .map(|a| a.iter().map(|e| format!("{} ({})", text(&e["from"]), text(&e["partition"]))).collect())
            .unwrap_or_default();
        let count = |key: &str| HumanCount(n[key].as_f64().unwrap_or(0.0) as u64).to_string();
        // The busiest subtask's share of the last second, as Flink shows it.
        let percent = |key: &str| (n[key].as_f64().unwrap_or(0.0) / 10.0).round() as u64;
        let _ = writeln!(
            out,
            "  {:width$} {:8} ×{:<3} in {:>12} ({:>9}/s)  out {:>12} ({:>9}/s)  busy {:>3}%  backpressured {:>3}%  <- {}",
            text(&n["id"]),
            text(&n["kind"]),
            n["parallelism"],
            count("records_in"),
            count("in_per_s"),
            count("records_out"),
            count("out_per_s"),
            percent("busy_ms_per_s"),
            percent("backpressured_ms_per_s"),
            if inputs.is_empty() { "-".into() } else { inputs.join(", ") }
        );
    }
    let c = &status["checkpoints"];
    if c["completed"].as_u64().unwrap_or(0) > 0 {
        let _ = writeln!(
            out,
            "  checkpoints: {} complete, last #{}: {} ms, {}, alignment {} ms",
            c["completed"],
            c["last_id"],
            c["last_duration_ms"],
            HumanBytes(c["last_bytes"].as_u64().unwrap_or(0)),
            c["last_alignment_ms"]
        );
    }
    out
}
