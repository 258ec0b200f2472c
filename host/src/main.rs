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
        #[arg(long, conflicts_with = "from_savepoint")]
        fresh: bool,
        /// Start from a savepoint directory (or URL): state is matched to
        /// operators by id; operators may have new .wasm and parallelism.
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<String>,
        /// With --from-savepoint: drop saved state of nodes the job no longer has.
        #[arg(long, requires = "from_savepoint")]
        allow_non_restored_state: bool,
        /// Serve the control API here [default: 127.0.0.1:8081, skipped if taken; port 0 picks a free port].
        #[arg(long, value_name = "ADDR", conflicts_with = "no_api")]
        api: Option<std::net::SocketAddr>,
        /// Do not serve the control API.
        #[arg(long)]
        no_api: bool,
        /// Take the job over from a run that may still be alive (on another
        /// host, say): that run is fenced — it stops without writing,
        /// committing or deleting anything more.
        #[arg(long)]
        takeover: bool,
        /// When the run ends, however it ends once the job file is accepted,
        /// write a one-file HTML report of it here: the job graph,
        /// throughput and checkpoints, and why it failed if it did.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        #[command(flatten)]
        token: Token,
    },
    /// Show a running job's status (through its control API).
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Take a savepoint of a running job; prints its directory.
    Savepoint {
        /// Directory (or URL) to create the savepoint in [default: the job's `[checkpoint] savepoints`].
        #[arg(long, value_name = "DIR")]
        target: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a running job with a final savepoint; prints its directory.
    Stop {
        /// Take a savepoint first (required: to stop without one, use `weir cancel`).
        #[arg(long, required = true)]
        savepoint: bool,
        /// Directory (or URL) to create the savepoint in [default: the job's `[checkpoint] savepoints`].
        #[arg(long, value_name = "DIR")]
        target: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a running job: no savepoint; uncommitted output is discarded.
    Cancel {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a savepoint's or checkpoint's manifest in human form.
    Inspect {
        /// The savepoint or checkpoint directory (or URL).
        path: String,
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
        /// Also connect to external systems (Kafka brokers) and check that
        /// the topics exist.
        #[arg(long)]
        connect: bool,
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

/// The control API token.
#[derive(clap::Args)]
struct Token {
    /// Token the control API requires (`Authorization: Bearer TOKEN`); needed to bind off loopback.
    #[arg(long = "api-token", env = "WEIR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Where a running job's control API is.
#[derive(clap::Args)]
struct ApiArgs {
    /// The job's control API address.
    #[arg(long, value_name = "ADDR", default_value = weir_host::api::DEFAULT_ADDR)]
    api: String,
    #[command(flatten)]
    token: Token,
}

impl ApiArgs {
    fn client(self) -> anyhow::Result<weir_host::api::Client> {
        Ok(weir_host::api::Client::new(&self.api, self.token.token)?)
    }
}

/// `target` made absolute against this directory (the job may run elsewhere).
fn absolute_target(target: Option<String>) -> anyhow::Result<Option<String>> {
    Ok(match target {
        Some(t) if !t.contains("://") => Some(std::path::absolute(&t)?.display().to_string()),
        other => other,
    })
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
        .with_writer(weir_host::progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            let error = e.downcast_ref::<weir_host::Error>();
            if matches!(error, Some(weir_host::Error::Cancelled)) {
                return ExitCode::from(3);
            }
            ExitCode::from(if error.is_some_and(weir_host::Error::is_invalid_input) { 2 } else { 1 })
        }
    }
}

/// The error and its causes, each said once: storage errors repeat their
/// source in their own message, and a chain would say it again.
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            job,
            overrides,
            quiet,
            fresh,
            from_savepoint,
            allow_non_restored_state,
            api,
            no_api,
            takeover,
            token,
            report,
        } => {
            let api = (!no_api).then(|| weir_host::run::ApiOptions {
                addr: api.unwrap_or_else(|| weir_host::api::DEFAULT_ADDR.parse().expect("a valid address")),
                token: token.token,
                optional: api.is_none(),
            });
            let options = RunOptions {
                overrides,
                progress: !quiet,
                fresh,
                from_savepoint,
                allow_non_restored_state,
                api,
                takeover,
                handle_signals: true,
                report,
            };
            let summary = run_job(&job, &options)?;
            if !quiet {
                eprint!("{}", weir_host::progress::summary(&summary));
            }
            if let Some(savepoint) = &summary.stopped_with {
                println!("{}", savepoint.path);
            }
        }
        Command::Status { api, json } => {
            let status = api.client()?.get("/v1/job")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", weir_host::progress::status(&status));
            }
        }
        Command::Savepoint { target, api } => {
            let body = serde_json::json!({ "target": absolute_target(target)? });
            let done = api.client()?.post("/v1/savepoints", &body)?;
            println!("{}", done["path"].as_str().unwrap_or_default());
        }
        Command::Stop { savepoint: _, target, api } => {
            let body = serde_json::json!({ "target": absolute_target(target)? });
            let done = api.client()?.post("/v1/stop", &body)?;
            println!("{}", done["path"].as_str().unwrap_or_default());
        }
        Command::Cancel { api } => {
            api.client()?.post("/v1/cancel", &serde_json::json!({}))?;
            eprintln!("cancelling");
        }
        Command::Inspect { path } => {
            let storage = weir_host::run::open_savepoint(&path, "")?;
            let manifest = storage.read_manifest_in(&storage.root_dir())?;
            print!("{}", weir_host::checkpoint::listing::inspect(&manifest, &path, &storage));
        }
        Command::Validate { job, overrides, connect } => {
            let plan = weir_host::run::plan_job(&job, &overrides)?;
            let engine = weir_host::wasm::WasmEngine::new(weir_host::wasm::WasmEngine::default_cache_dir())?;
            weir_host::dataflow::load_modules(&plan, &engine)?;
            println!("{}: ok", job.display());
            for node in &plan.nodes {
                let inputs: Vec<String> = node
                    .inputs
                    .iter()
                    .map(|e| match &e.output {
                        Some(output) => format!("{}.{output} ({:?})", plan.nodes[e.from].id, e.partition),
                        None => format!("{} ({:?})", plan.nodes[e.from].id, e.partition),
                    })
                    .collect();
                println!(
                    "  {} ×{} <- {}",
                    node.id,
                    node.parallelism,
                    if inputs.is_empty() { "-".into() } else { inputs.join(", ") }
                );
            }
            let tasks: Vec<String> = plan
                .chains()
                .iter()
                .map(|c| c.iter().map(|&n| plan.nodes[n].id.as_str()).collect::<Vec<_>>().join(" -> "))
                .collect();
            println!("  tasks: {}", tasks.join(" | "));
            println!("    (`|` separates tasks, each a thread per subtask; `->` joins nodes chained into one task)");
            if connect {
                use weir_host::connectors::kafka;
                for node in &plan.nodes {
                    let reached = match &node.kind {
                        weir_host::job::NodeKind::KafkaSource(cfg) => kafka::check_source(cfg)?,
                        weir_host::job::NodeKind::KafkaSink(cfg) => kafka::check_sink(cfg)?,
                        _ => continue,
                    };
                    println!("  {}: connected to {reached}", node.id);
                }
            }
        }
        Command::Checkpoints { what: CheckpointsCommand::List { target, job, overrides } } => {
            let storage = if target.contains("://") {
                let job = job.context("a store URL needs the job name: add --job NAME")?;
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                Arc::new(weir_host::checkpoint::storage::Storage::open(&target, &cwd, &job)?)
            } else {
                let plan = weir_host::run::plan_job(std::path::Path::new(&target), &overrides)?;
                if plan.checkpoint.is_none() {
                    anyhow::bail!("{target} has no [checkpoint] section, so it has no checkpoints");
                }
                weir_host::run::checkpoint_store(&plan)?.1
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
