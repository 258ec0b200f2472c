//! `weir run`: load a job file, plan it, load its modules, run it to the
//! end, showing progress — and, with checkpointing, restore from the job's
//! latest complete checkpoint and fail over in-process as `[restart]` allows.
//! The one-call entry point for the CLI and embedders.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::checkpoint::coordinator::CheckpointStats;
use crate::checkpoint::restart;
use crate::checkpoint::restore::{self, Restored};
use crate::checkpoint::storage::Storage;
use crate::dataflow::{self, CheckpointSetup, RunSummary};
use crate::job::{self, BuiltinDirs, JobPlan, Override};
use crate::wasm::{OperatorModule, WasmEngine};
use crate::{Error, progress};

/// How to run a job.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--set` overrides, applied in order.
    pub overrides: Vec<Override>,
    /// Show live progress on stderr (drawn only on a terminal).
    pub progress: bool,
    /// Ignore existing checkpoints: start from the beginning of the input.
    pub fresh: bool,
}

/// Reads and plans the job file at `path`.
///
/// # Errors
/// [`Error::InvalidJob`] naming the file and what is wrong.
pub fn plan_job(path: &Path, overrides: &[Override]) -> Result<JobPlan, Error> {
    let spec = job::load(path, overrides)?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("job");
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    job::plan(&spec, name, base, &BuiltinDirs::from_env()).map_err(|e| match e {
        Error::InvalidJob(msg) => Error::InvalidJob(format!("job file {}: {msg}", path.display())),
        other => other,
    })
}

/// Opens the checkpoint store named by `plan`'s `[checkpoint] store`, if
/// checkpointing is configured.
///
/// # Errors
/// [`Error::InvalidJob`] for a bad URL, [`Error::Storage`] if it cannot be set up.
pub fn open_storage(plan: &JobPlan) -> Result<Option<Arc<Storage>>, Error> {
    let Some(spec) = &plan.checkpoint else { return Ok(None) };
    Ok(Some(Arc::new(Storage::open(&spec.store, &plan.base_dir, &plan.name)?)))
}

/// Runs the job file at `path` until its bounded sources are drained,
/// restarting from the latest complete checkpoint after failures.
///
/// # Errors
/// Invalid job or modules, a guest failure (naming the operator), I/O, a
/// checkpoint that cannot be restored, or [`Error::GaveUp`] after the
/// restarts `[restart]` allows.
pub fn run_job(path: &Path, options: &RunOptions) -> Result<RunSummary, Error> {
    let plan = plan_job(path, &options.overrides)?;
    let engine = WasmEngine::new(WasmEngine::default_cache_dir())?;
    let modules = dataflow::load_modules(&plan, &engine)?;
    for m in modules.iter().flatten() {
        let d = m.descriptor();
        tracing::info!(
            "operator `{}`: {} {} (state v{}) from {}",
            m.operator,
            d.name,
            d.version,
            d.state_version,
            m.path().display()
        );
    }
    let storage = open_storage(&plan)?;
    let stats = Arc::new(CheckpointStats::default());
    // Checkpoints older than `since` belong to a run this one replaced (`--fresh`).
    let mut since = 0;
    if let (Some(storage), true) = (&storage, options.fresh) {
        since = storage.list()?.last().map_or(1, |l| l.id + 1);
        tracing::info!("starting fresh (--fresh): ignoring checkpoints before {since} in {}", storage.url());
    }
    let mut attempt = 0;
    loop {
        let result = run_attempt(&plan, &modules, storage.as_ref(), since, &stats, attempt, options.progress);
        let cause = match result {
            Ok(summary) => return Ok(summary),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => e,
        };
        attempt += 1;
        let Some(delay) = restart::delay_before(&plan.restart, attempt) else {
            if attempt == 1 {
                return Err(cause);
            }
            return Err(Error::GaveUp { restarts: attempt - 1, cause: Box::new(cause) });
        };
        tracing::warn!(
            "job `{}` failed: {cause}; restarting in {} (restart {attempt} of {}, [restart] strategy {})",
            plan.name,
            humantime::format_duration(delay),
            plan.restart.attempts,
            plan.restart.strategy
        );
        std::thread::sleep(delay);
    }
}

/// One attempt: restore (if there is a checkpoint), start, wait.
fn run_attempt(
    plan: &JobPlan,
    modules: &[Option<OperatorModule>],
    storage: Option<&Arc<Storage>>,
    since: u64,
    stats: &Arc<CheckpointStats>,
    attempt: u32,
    show_progress: bool,
) -> Result<RunSummary, Error> {
    let found = storage.map(|s| restore::find_latest(s, plan, since)).transpose()?;
    let restored: Option<&Restored> = found.as_ref().and_then(|f| f.restored.as_ref());
    if let Some(r) = restored {
        let skipped = found.as_ref().map_or(0, |f| f.skipped.len());
        tracing::info!(
            "restoring checkpoint {} of job `{}` from {}{}",
            r.id(),
            plan.name,
            storage.map_or("", |s| s.url()),
            if skipped > 0 { format!(" (skipped {skipped} newer, unusable)") } else { String::new() }
        );
        if r.manifest.finished && attempt == 0 {
            tracing::warn!(
                "checkpoint {} is the job's final one: it already processed all its input, so only \
                 uncommitted output is finished now; run with --fresh to process the input again",
                r.id()
            );
        }
    }
    let setup = storage.zip(found.as_ref()).map(|(storage, found)| CheckpointSetup {
        storage: storage.clone(),
        restored,
        next_id: found.next_id.max(stats.last_triggered.load(Ordering::Relaxed) + 1),
        stats: stats.clone(),
    });
    let job = dataflow::start(plan, modules, setup, attempt)?;
    if show_progress {
        let display = progress::Display::new(&plan.name, job.stats(), plan.checkpoint.is_some().then(|| stats.clone()));
        while !job.wait_timeout(Duration::from_millis(250)) {
            display.refresh();
        }
        display.clear();
    }
    let mut summary = job.wait()?;
    summary.restored_from = restored.map(Restored::id);
    summary.checkpoints = plan.checkpoint.is_some().then(|| stats.clone());
    Ok(summary)
}
