//! The `weir` command line: parse arguments, set up logging, call the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use weir_host::job::Override;
use weir_host::run::{RunOptions, run_job};

/// Weir: a stream processor whose operators are WebAssembly components.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file until its bounded sources are drained.
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Override a job-file value: `--set sources.lines.path=/tmp/in.txt` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// No progress, no summary; errors only.
        #[arg(long, short)]
        quiet: bool,
        /// Ignore the job's existing checkpoints and start from the beginning
        /// of the input (later failures restore this run's checkpoints only).
        #[arg(long)]
        fresh: bool,
    },
    /// Inspect a job's checkpoints.
    Checkpoints {
        #[command(subcommand)]
        what: CheckpointsCommand,
    },
    /// Check a job file and its operators without running it.
    Validate {
        /// The job file (TOML).
        job: PathBuf,
        /// As for `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Create something new.
    New {
        #[command(subcommand)]
        what: NewCommand,
    },
    /// Compile an operator crate to a .wasm component and print its path.
    Build {
        /// The operator crate's directory.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Build without optimizations (faster to compile, slower to run).
        #[arg(long)]
        debug: bool,
    },
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// List checkpoints: id, status, time, duration, size.
    List {
        /// A job file (its `[checkpoint] store`), or a store URL
        /// (`file://DIR`, `s3://bucket/prefix`) with --job.
        target: String,
        /// The job name, when TARGET is a URL.
        #[arg(long)]
        job: Option<String>,
        /// As for `run`, when TARGET is a job file.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
}

#[derive(Subcommand)]
enum NewCommand {
    /// Scaffold an operator crate that builds with `weir build`.
    Operator {
        /// Crate name, e.g. `my-filter`.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of weir-sdk (default: $WEIR_SDK_PATH, or this checkout's guest-sdk/).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Run { quiet: true, .. });
    let default_filter = if quiet { "error" } else { "weir_host=info,warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| default_filter.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let invalid_input = e.downcast_ref::<weir_host::Error>().is_some_and(weir_host::Error::is_invalid_input);
            ExitCode::from(if invalid_input { 2 } else { 1 })
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { job, overrides, quiet, fresh } => {
            let progress = !quiet;
            let summary = run_job(&job, &RunOptions { overrides, progress, fresh })?;
            if !quiet {
                eprint!("{}", weir_host::progress::summary(&summary));
            }
        }
        Command::Validate { job, overrides } => {
            let plan = weir_host::run::plan_job(&job, &overrides)?;
            let engine = weir_host::wasm::WasmEngine::new(weir_host::wasm::WasmEngine::default_cache_dir())?;
            weir_host::dataflow::load_modules(&plan, &engine)?;
            println!("{}: ok", job.display());
            for node in &plan.nodes {
                let inputs: Vec<String> =
                    node.inputs.iter().map(|e| format!("{} ({:?})", plan.nodes[e.from].id, e.partition)).collect();
                println!(
                    "  {} ×{} <- {}",
                    node.id,
                    node.parallelism,
                    if inputs.is_empty() { "-".into() } else { inputs.join(", ") }
                );
            }
        }
        Command::Checkpoints { what: CheckpointsCommand::List { target, job, overrides } } => {
            let storage = if target.contains("://") {
                let job = job.context("a store URL needs the job name: add --job NAME")?;
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                Arc::new(weir_host::checkpoint::storage::Storage::open(&target, &cwd, &job)?)
            } else {
                let plan = weir_host::run::plan_job(std::path::Path::new(&target), &overrides)?;
                weir_host::run::open_storage(&plan)?
                    .with_context(|| format!("{target} has no [checkpoint] section, so it has no checkpoints"))?
            };
            let rows = weir_host::checkpoint::listing::rows(&storage)?;
            if rows.is_empty() {
                eprintln!("no checkpoints in {}", storage.url());
            } else {
                print!("{}", weir_host::checkpoint::listing::table(&rows));
            }
        }
        Command::New { what: NewCommand::Operator { name, dir, sdk } } => {
            let sdk = sdk.or_else(weir_host::tools::default_sdk_path).context(
                "cannot find weir-sdk: pass --sdk PATH (the guest-sdk/ directory of a Weir checkout) or set WEIR_SDK_PATH",
            )?;
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let dir = weir_host::tools::new_operator(&name, &dir, &sdk)?;
            println!("created operator crate {}; build it with: weir build {}", dir.display(), dir.display());
        }
        Command::Build { path, debug } => {
            for wasm in weir_host::tools::build_operator(&path, !debug)? {
                println!("{}", wasm.display());
            }
        }
    }
    Ok(())
}
