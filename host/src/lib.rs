//! # weir-host: run dataflows of WebAssembly stream operators
//!
//! The library behind the `weir` binary. A job file names sources, Wasm
//! operators and sinks; Weir plans it, loads each operator's component,
//! starts one thread per parallel subtask, and moves records between them in
//! framed batches over bounded channels.
//!
//! ```no_run
//! use weir_host::run::{RunOptions, run_job};
//!
//! let summary = run_job("examples/wordcount/job.toml".as_ref(), &RunOptions::default())?;
//! println!("{}", weir_host::progress::summary(&summary));
//! # Ok::<(), weir_host::Error>(())
//! ```
//!
//! ## Core concepts
//! - [`job::JobPlan`] — a validated job: nodes in topological order, edges
//!   with their partitioning. Pure data, built once per run.
//! - [`wasm::WasmEngine`] — the wasmtime engine, linker and compile cache;
//!   one per process. Compiling a guest costs ~1 s, loading it from the
//!   cache ~1 ms.
//! - [`wasm::OperatorModule`] — a validated, pre-linked operator component;
//!   instantiating it costs tens of µs.
//! - [`wasm::GuestInstance`] — one sandboxed store per subtask, with a memory
//!   limit and a per-call deadline; lives for one run of the job.
//! - [`dataflow::RunningJob`] — the task threads of a job; the first failure
//!   stops them all and becomes the job's error.
//! - [`connectors`] — file and generator sources, file and stdout sinks.
//! - [`Error`] — what went wrong and whose fault it is (job file, module,
//!   guest, I/O).
#![warn(missing_docs)]

pub mod api;
pub mod checkpoint;
pub mod clock;
pub mod connectors;
pub mod dataflow;
mod error;
pub mod fuzzing;
pub mod job;
#[cfg(test)]
mod no_panic;
pub mod progress;
pub mod run;
pub mod signals;
pub mod tools;
pub mod wasm;

pub use error::{Error, GuestError, GuestFailure};
