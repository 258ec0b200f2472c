//! `weir run`: load a job file, plan it, load its modules, run it to the
//! end, showing progress — and, with checkpointing, restore from the job's
//! latest complete checkpoint and fail over in-process as `[restart]` allows.
//! The one-call entry point for the CLI and embedders.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::api::{self, JobControl};
use crate::checkpoint::coordinator::{CheckpointStats, SavepointRequest};
use crate::checkpoint::lease::Lease;
use crate::checkpoint::protocol::Facts;
use crate::checkpoint::restart;
use crate::checkpoint::restore::{self, Restored};
use crate::checkpoint::storage::Storage;
use crate::dataflow::{self, CheckpointSetup, RunSummary};
use crate::job::spec::CheckpointSpec;
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
    /// Start from this savepoint (a directory or URL) instead.
    pub from_savepoint: Option<String>,
    /// With `from_savepoint`: drop state of nodes the job no longer has.
    pub allow_non_restored_state: bool,
    /// Serve the control API here (`None`: not at all).
    pub api: Option<ApiOptions>,
    /// Fence a run of the job that may still be alive, instead of refusing to start.
    pub takeover: bool,
    /// Turn SIGTERM/SIGINT into an orderly cancel (the CLI does; embedders may not want it).
    pub handle_signals: bool,
    /// Write a one-file HTML report of the run here when it ends, however it ends.
    pub report: Option<PathBuf>,
}

/// Writes the run report when `weir run` returns, on every path out.
struct ReportOnExit {
    path: PathBuf,
    control: Arc<JobControl>,
}

impl Drop for ReportOnExit {
    fn drop(&mut self) {
        match std::fs::write(&self.path, self.control.report_html()) {
            Ok(()) => tracing::info!("report of the run in {}", self.path.display()),
            Err(e) => tracing::warn!("cannot write the run report {}: {e}", self.path.display()),
        }
    }
}

/// Where and how to serve the control API.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Address to bind (port 0: any free port).
    pub addr: std::net::SocketAddr,
    /// Required on every request when set (and to bind off loopback).
    pub token: Option<String>,
    /// The address was not asked for: if it is taken, run without the API.
    pub optional: bool,
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

/// The checkpoint settings of `plan` and the store they name. A job without
/// `[checkpoint]` gets [`CheckpointSpec::savepoints_only`]: an in-memory
/// store that holds only its final checkpoint (savepoints go elsewhere).
///
/// # Errors
/// [`Error::InvalidJob`] for a bad URL, [`Error::Storage`] if it cannot be set up.
pub fn checkpoint_store(plan: &JobPlan) -> Result<(CheckpointSpec, Arc<Storage>), Error> {
    let spec = plan.checkpoint.clone().unwrap_or_else(CheckpointSpec::savepoints_only);
    let storage = Arc::new(Storage::open(&spec.store, &plan.base_dir, &plan.name)?);
    Ok((spec, storage))
}

/// Whether a store URL names a store only this process can see (no lease needed).
fn is_process_local(url: &str) -> bool {
    url.trim_start_matches("faulty+").starts_with("memory:")
}

/// Opens a savepoint (or retained checkpoint) directory given as a path or URL.
///
/// # Errors
/// As [`Storage::open`].
pub fn open_savepoint(location: &str, job: &str) -> Result<Storage, Error> {
    let url = if location.contains("://") {
        location.to_owned()
    } else {
        let path = std::path::absolute(location).map_err(|e| Error::io(format!("savepoint path {location}"), e))?;
        if !path.is_dir() {
            return Err(Error::InvalidJob(format!("savepoint {location}: no such directory")));
        }
        format!("file://{}", path.display())
    };
    Storage::open(&url, Path::new("."), job)
}

/// Runs the job file at `path` until its bounded sources are drained (or it
/// is stopped with a savepoint), restarting from the latest complete
/// checkpoint after failures.
///
/// # Errors
/// Invalid job or modules, a guest failure (naming the operator), I/O, a
/// checkpoint or savepoint that cannot be restored, [`Error::Cancelled`], or
/// [`Error::GaveUp`] after the restarts `[restart]` allows.
pub fn run_job(path: &Path, options: &RunOptions) -> Result<RunSummary, Error> {
    let started = Instant::now();
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
    let (spec, storage) = checkpoint_store(&plan)?;
    // One owner at a time: taken before anything (a sink's restore) touches output.
    let lease =
        if is_process_local(&spec.store) { None } else { Some(Lease::acquire(storage.clone(), options.takeover)?) };
    let savepoint = match &options.from_savepoint {
        Some(location) => {
            let store = open_savepoint(location, &plan.name)?;
            let restored = restore::from_savepoint(&store, &plan, &modules, options.allow_non_restored_state)?;
            tracing::info!("starting from {} {} at {location}", restored.manifest.kind, restored.id());
            Some(restored)
        }
        None => None,
    };
    let stats = Arc::new(CheckpointStats::default());
    let (requests_tx, requests) = crossbeam_channel::unbounded();
    let control = Arc::new(JobControl::new(&plan, stats.clone(), requests_tx, spec.savepoints.clone(), spec.timeout));
    if options.handle_signals {
        crate::signals::watch(control.clone());
    }
    let _report = options.report.clone().map(|path| ReportOnExit { path, control: control.clone() });
    // Held until `weir run` returns: the per-run API token's file.
    let _token_file = match &options.api {
        Some(api) => match api::serve(api.addr, api.token.clone(), control.clone()) {
            Ok((bound, token, file)) => {
                tracing::info!("control API on http://{bound}");
                // The token rides in the fragment, which a browser never sends to a server.
                tracing::info!("dashboard on http://{bound}/#token={token}");
                file
            }
            Err(Error::Io { context, source }) if api.optional => {
                tracing::warn!("{context}: {source}; running without the control API (choose a port with --api)");
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    // Checkpoints older than `since` belong to a run this one replaced
    // (`--fresh`, `--from-savepoint`).
    let mut since = 0;
    if options.fresh || savepoint.is_some() {
        since = storage.list_job()?.next_id();
        if plan.checkpoint.is_some() {
            tracing::info!("starting fresh: ignoring checkpoints before {since} in {}", storage.url());
        }
    }
    if let (Some(restored), Some(_)) = (&savepoint, &plan.checkpoint) {
        let id = since.max(restored.id().saturating_add(1));
        let infos = dataflow::node_infos(&plan, &modules);
        restore::write_restore_point(&storage, lease.as_deref(), &plan, &infos, restored, id)?;
    }
    let attempt_ctx = Attempt {
        plan: &plan,
        modules: &modules,
        storage: &storage,
        lease: lease.as_ref(),
        spec: &spec,
        since,
        savepoint: savepoint.as_ref(),
        stats: &stats,
        requests: &requests,
        control: &control,
        show_progress: options.progress,
    };
    let mut attempt = 0;
    // Restarts after failures; `attempt` also counts resumes after a failed stop.
    let mut restarts = 0;
    // Recovery is timed from here: process start, then each failure.
    let mut since = started;
    loop {
        control.attempt.store(attempt, Ordering::Relaxed);
        control.set_state(if attempt == 0 { "running" } else { "restarting" });
        let cause = match attempt_ctx.run(attempt, since) {
            Ok(summary) => {
                control.set_state(if summary.stopped_with.is_some() { "stopped" } else { "finished" });
                return Ok(summary);
            }
            Err((Error::StopFailed(why), failed_at)) => {
                // The client was told; the job is not at fault and goes on.
                tracing::warn!("{why}; the job goes on from its latest checkpoint");
                since = failed_at;
                attempt += 1;
                continue;
            }
            Err((e, _)) if !e.is_retryable() => {
                control.set_state(if matches!(e, Error::Cancelled) { "cancelled" } else { "failed" });
                control.failed(&e.to_string());
                return Err(e);
            }
            Err((e, failed_at)) => {
                since = failed_at;
                e
            }
        };
        attempt += 1;
        restarts += 1;
        let Some(delay) = restart::delay_before(&plan.restart, restarts) else {
            control.set_state("failed");
            control.failed(&cause.to_string());
            if restarts == 1 {
                return Err(cause);
            }
            return Err(Error::GaveUp { restarts: restarts - 1, cause: Box::new(cause) });
        };
        control.set_state("restarting");
        control.failed(&cause.to_string());
        tracing::warn!(
            "job `{}` failed: {cause}; restarting in {} (restart {restarts} of {}, [restart] strategy {})",
            plan.name,
            humantime::format_duration(delay),
            plan.restart.attempts,
            plan.restart.strategy
        );
        std::thread::sleep(delay);
    }
}

/// Everything one attempt needs.
struct Attempt<'a> {
    plan: &'a JobPlan,
    modules: &'a [Option<OperatorModule>],
    storage: &'a Arc<Storage>,
    lease: Option<&'a Arc<Lease>>,
    spec: &'a CheckpointSpec,
    since: u64,
    savepoint: Option<&'a Restored>,
    stats: &'a Arc<CheckpointStats>,
    requests: &'a crossbeam_channel::Receiver<SavepointRequest>,
    control: &'a Arc<JobControl>,
    show_progress: bool,
}

impl Attempt<'_> {
    /// What the protocol starts from: ids continue after everything the
    /// store, this process and the savepoint started from have used.
    fn facts(&self, found: &restore::Found) -> Facts {
        let listed = &found.listing.checkpoints;
        let next_id = found
            .listing
            .next_id()
            .max(self.stats.last_triggered.load(Ordering::Relaxed).saturating_add(1))
            .max(self.savepoint.map_or(0, |s| s.id().saturating_add(1)));
        // A checkpoint skipped as damaged is not one of the `retain` kept;
        // it goes once this run has a complete checkpoint of its own.
        let damaged = |id: u64| found.skipped.iter().any(|(s, _)| *s == id);
        Facts {
            next_id,
            complete: listed.iter().filter(|l| l.has_manifest && !damaged(l.id)).map(|l| l.id).collect(),
            leftovers: listed.iter().filter(|l| !l.has_manifest || damaged(l.id)).map(|l| l.id).collect(),
            restored_final: found.restored.as_ref().filter(|r| r.manifest.finished).map(Restored::id),
        }
    }

    /// Restore (the newest checkpoint, else the savepoint, if any), start,
    /// wait. Logs how long after `since` (process start, or the failure that
    /// caused this attempt) records flowed again. A failure comes with when
    /// it happened.
    fn run(&self, attempt: u32, since: Instant) -> Result<RunSummary, (Error, Instant)> {
        let mut failed_at = None;
        self.run_inner(attempt, since, &mut failed_at).map_err(|e| (e, failed_at.unwrap_or_else(Instant::now)))
    }

    fn run_inner(&self, attempt: u32, since: Instant, failed_at: &mut Option<Instant>) -> Result<RunSummary, Error> {
        let (plan, storage) = (self.plan, self.storage);
        let found = restore::find_latest(storage, plan, self.since)?;
        let restored: Option<&Restored> = found.restored.as_ref().or(self.savepoint);
        if let Some(r) = found.restored.as_ref() {
            let skipped = found.skipped.len();
            tracing::info!(
                "restoring checkpoint {} of job `{}` from {}{}",
                r.id(),
                plan.name,
                storage.url(),
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
        let setup = CheckpointSetup {
            spec: self.spec.clone(),
            periodic: plan.checkpoint.is_some(),
            requests: self.requests.clone(),
            storage: storage.clone(),
            restored,
            facts: self.facts(&found),
            lease: self.lease.cloned(),
            stats: self.stats.clone(),
        };
        let job = dataflow::start(plan, self.modules, setup, attempt)?;
        self.control.attach(job.stats());
        let display = self.show_progress.then(|| {
            progress::Display::new(&plan.name, job.stats(), plan.checkpoint.is_some().then(|| self.stats.clone()))
        });
        let mut flowing = false;
        // Logs once when records first reach an operator or sink (recovery timing).
        let report_flowing = |job: &dataflow::RunningJob, flowing: &mut bool| {
            if *flowing {
                return;
            }
            // Only once every subtask is open (restored): a restore that fails
            // must not be preceded by "resumed".
            if job.stats().iter().any(|s| s.metrics.opened() < s.parallelism) {
                return;
            }
            let Some(first) = job.stats().iter().filter_map(|s| s.metrics.first_input()).min() else { return };
            *flowing = true;
            let after = first.saturating_duration_since(since).as_millis();
            match (attempt, restored) {
                (0, None) => tracing::debug!("records flowing {after} ms after start"),
                (0, Some(r)) => {
                    tracing::info!("resumed from checkpoint {}: records flowing {after} ms after start", r.id())
                }
                (_, _) => tracing::info!("recovered: records flowing again {after} ms after the failure"),
            }
        };
        loop {
            report_flowing(&job, &mut flowing);
            if job.wait_timeout(Duration::from_millis(if flowing { 250 } else { 5 })) {
                report_flowing(&job, &mut flowing);
                break;
            }
            if let Some(display) = &display {
                display.refresh();
            }
            self.control.sample();
            if self.control.cancel.swap(false, Ordering::Relaxed) {
                tracing::warn!("cancelling job `{}` on request", plan.name);
                job.fail(Error::Cancelled);
            }
        }
        if let Some(display) = &display {
            display.clear();
        }
        *failed_at = job.failed_at();
        let mut summary = job.wait()?;
        summary.restored_from = restored.map(Restored::id);
        summary.checkpoints = plan.checkpoint.is_some().then(|| self.stats.clone());
        Ok(summary)
    }
}
