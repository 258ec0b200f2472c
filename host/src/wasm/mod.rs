//! WebAssembly: the one place that knows about wasmtime. It owns the
//! [`engine::WasmEngine`] (compilation, the epoch ticker), [`cache`] (the
//! on-disk cache of compiled components and its trust model), [`module::OperatorModule`] (a validated,
//! pre-linked component), [`instance::GuestInstance`] (one sandboxed store per
//! subtask) and [`limits`] (memory and time limits). The dataflow never sees a
//! wasmtime type.

pub mod cache;
pub mod engine;
pub mod instance;
pub mod limits;
pub mod module;
pub mod output;
pub mod text;

/// Host bindings generated from the WIT world in `guest-sdk/wit/`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "operator",
        path: "../guest-sdk/wit",
    });
}

pub use engine::WasmEngine;
pub use instance::GuestInstance;
pub use limits::Limits;
pub use module::{Descriptor, OperatorModule};
