//! Loading an operator's `.wasm`: checking it is a component, compiling (or
//! loading from cache), linking against the host's imports, checking it
//! implements the Weir world, and asking it for its descriptor. Every failure
//! is an [`Error::InvalidModule`] that names the operator and says what to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bindings::OperatorPre;
use super::engine::WasmEngine;
use super::instance::{GuestInstance, StoreData};
use super::limits::Limits;
use crate::Error;

/// What an operator says about itself (the WIT `descriptor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Crate name, e.g. `weir-op-count`.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// State layout version.
    pub state_version: u32,
    /// weir-sdk version it was built with.
    pub sdk_version: String,
}

/// A validated operator component, ready to instantiate many times.
/// Cheap to clone; lives as long as the job.
#[derive(Clone)]
pub struct OperatorModule {
    pub(crate) operator: Arc<str>,
    pub(crate) pre: OperatorPre<StoreData>,
    pub(crate) limits: Limits,
    path: PathBuf,
    descriptor: Descriptor,
}

impl std::fmt::Debug for OperatorModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorModule").field("operator", &self.operator).field("path", &self.path).finish()
    }
}

const WASM_MAGIC: &[u8] = b"\0asm";

/// The version of the `weir:operator` package this host implements.
pub const WORLD_VERSION: &str = "0.2.0";

/// `weir:operator@X` when `component` was built against another version
/// of Weir's own interfaces (a guest built with an older SDK): read from
/// its imports, which name the package with its version.
fn older_world(component: &wasmtime::component::Component, engine: &wasmtime::Engine) -> Option<String> {
    let ty = component.component_type();
    let versions: Vec<String> = ty
        .imports(engine)
        .filter_map(|(name, _)| {
            name.strip_prefix("weir:operator/").and_then(|n| n.split_once('@')).map(|(_, v)| v.to_owned())
        })
        .collect();
    versions.into_iter().find(|v| v != WORLD_VERSION).map(|v| format!("weir:operator@{v}"))
}

impl OperatorModule {
    /// Loads `path` as operator `operator`.
    ///
    /// # Errors
    /// [`Error::InvalidModule`] when the file is unreadable, not WebAssembly,
    /// a core module rather than a component, imports what Weir does not
    /// provide, lacks the Weir exports, or fails to describe itself.
    pub fn load(engine: &WasmEngine, operator: &str, path: &Path, limits: Limits) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidModule { operator: operator.into(), path: path.into(), reason };
        let wasm = std::fs::read(path).map_err(|e| invalid(format!("cannot be read: {e}")))?;
        if !wasm.starts_with(WASM_MAGIC) || wasm.len() < 8 {
            return Err(invalid(
                "is not a WebAssembly file; point the job at the .wasm that `weir build` printed".into(),
            ));
        }
        if wasm[6..8] != [1, 0] {
            return Err(invalid(
                "is a core WebAssembly module, not a component; build it for wasm32-wasip2 (`weir build`)".into(),
            ));
        }
        let component = engine.compile(&wasm).map_err(|e| invalid(format!("failed to compile: {e:#}")))?;
        if let Some(old) = older_world(&component, &engine.engine) {
            return Err(invalid(format!(
                "was built against {old}, another version of Weir's operator interface than this host's \
                 (weir:operator@{WORLD_VERSION}: an older weir-sdk); rebuild it with this release's weir-sdk \
                 (`weir build` in its crate)"
            )));
        }
        let pre = engine.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!("needs imports Weir does not provide (guests get WASI without files or network, and weir:operator/host): {e:#}"))
        })?;
        let pre = OperatorPre::new(pre).map_err(|e| {
            invalid(format!(
                "is not a Weir operator: it does not export the weir:operator world ({e:#}); implement weir_sdk::Operator and use weir_sdk::export!; one built with an older weir-sdk needs a rebuild (`weir build`)"
            ))
        })?;
        let mut module = Self {
            operator: operator.into(),
            pre,
            limits,
            path: path.into(),
            descriptor: Descriptor {
                name: String::new(),
                version: String::new(),
                state_version: 0,
                sdk_version: String::new(),
            },
        };
        module.descriptor =
            module.instantiate(0)?.describe().map_err(|e| invalid(format!("failed to describe itself: {e}")))?;
        Ok(module)
    }

    /// A fresh, sandboxed instance for `subtask`.
    ///
    /// # Errors
    /// When instantiation traps (e.g. the guest's start-up code fails).
    pub fn instantiate(&self, subtask: u32) -> Result<GuestInstance, Error> {
        GuestInstance::new(self, subtask, None)
    }

    /// As [`instantiate`](Self::instantiate), adding the bytes of linear
    /// memory the instance takes (and grows to) to `memory_gauge`.
    ///
    /// # Errors
    /// When instantiation traps.
    pub fn instantiate_metered(
        &self,
        subtask: u32,
        memory_gauge: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<GuestInstance, Error> {
        GuestInstance::new(self, subtask, Some(memory_gauge))
    }

    /// The operator's self-description.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The `.wasm` file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
