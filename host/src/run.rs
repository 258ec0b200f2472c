//! `weir run`: load a job file, plan it, load its modules, run it to the
//! end, showing progress. The one-call entry point for the CLI and embedders.

use std::path::Path;
use std::time::Duration;

use crate::dataflow::{self, RunSummary};
use crate::job::{self, BuiltinDirs, JobPlan, Override};
use crate::wasm::WasmEngine;
use crate::{Error, progress};

/// How to run a job.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--set` overrides, applied in order.
    pub overrides: Vec<Override>,
    /// Show live progress on stderr (drawn only on a terminal).
    pub progress: bool,
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

/// Runs the job file at `path` until its bounded sources are drained.
///
/// # Errors
/// Invalid job or modules, a guest failure (naming the operator), or I/O.
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
    let job = dataflow::start(&plan, &modules)?;
    if options.progress {
        let display = progress::Display::new(&plan.name, job.stats());
        while !job.wait_timeout(Duration::from_millis(250)) {
            display.refresh();
        }
        display.clear();
    }
    job.wait()
}
