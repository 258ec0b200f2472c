//! The shared wasmtime [`Engine`]: its configuration, the linker every guest
//! is instantiated with, the epoch ticker behind per-call deadlines, and the
//! on-disk cache of compiled components.
//!
//! **Compile cache.** Compiled components are kept in [`super::cache`],
//! keyed by the `.wasm`'s SHA-256 and an engine hash that covers the
//! wasmtime version and every codegen setting (so an upgrade never loads
//! stale code); its module docs hold the trust model.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings;
use super::cache::{Cache, Key};
use super::instance::StoreData;
use super::limits::EPOCH_TICK;

/// The engine and everything shared by all guests of a process.
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    cache: Option<Cache>,
    _ticker: EpochTicker,
}

impl WasmEngine {
    /// Creates the engine. `cache_dir` holds compiled components; `None`
    /// compiles every time.
    ///
    /// # Errors
    /// When wasmtime rejects its configuration (a bug) or the linker cannot be built.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, crate::Error> {
        let internal = |e: wasmtime::Error| crate::Error::Internal(format!("wasm engine: {e:#}"));
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        #[cfg(feature = "profiling")]
        match std::env::var("WEIR_PROFILE").as_deref() {
            // `perf report` names guest functions (/tmp/perf-PID.map).
            Ok("perfmap") => _ = config.profiler(wasmtime::ProfilingStrategy::PerfMap),
            // `perf record -k 1`, then `perf inject --jit`: perf annotates guest code.
            Ok("jitdump") => _ = config.profiler(wasmtime::ProfilingStrategy::JitDump),
            _ => {}
        }
        let engine = Engine::new(&config).map_err(internal)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(internal)?;
        forbid_sleep(&mut linker).map_err(internal)?;
        bindings::Operator::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s).map_err(internal)?;
        let ticker = EpochTicker::start(engine.clone());
        let cache = cache_dir.as_deref().and_then(Cache::open);
        Ok(Self { engine, linker, cache, _ticker: ticker })
    }

    /// The default cache directory: `$WEIR_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return Some(dir.into());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("weir").join("components"))
    }

    /// Compiles `wasm` (a component's bytes), or loads it from the cache.
    pub(crate) fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        let Some(cache) = &self.cache else {
            return Component::new(&self.engine, wasm);
        };
        let key = self.cache_key(wasm);
        if let Some(component) = cache.load(&self.engine, &key) {
            return Ok(component);
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Err(e) = cache.store(&key, &component) {
            tracing::warn!("could not write a compile cache entry: {e:#}");
        }
        Ok(component)
    }

    fn cache_key(&self, wasm: &[u8]) -> Key {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        Key { wasm: Sha256::digest(wasm).into(), engine: engine_hash.finish() }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a guest that tries to sleep is told (the call traps with it).
pub const NO_SLEEP: &str = "operators may not sleep or wait on a clock (std::thread::sleep, a timer): \
     a blocked host call cannot be interrupted by call_timeout or cancellation, and waiting makes replay \
     after a failure depend on time; keep `process` non-blocking";

/// Replaces WASI's clock subscriptions — the only way a guest can block in
/// the host, as it has no files, sockets or stdin — with a trap. Epoch
/// interruption bounds time spent in Wasm code, not in host calls, so a
/// guest sleeping in `poll` escaped `call_timeout` and `weir cancel`.
/// Reading the clocks (`now`) stays allowed.
fn forbid_sleep(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut clocks = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clocks.func_wrap("subscribe-duration", |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
        Err(wasmtime::Error::msg(NO_SLEEP))
    })?;
    clocks.func_wrap("subscribe-instant", |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
        Err(wasmtime::Error::msg(NO_SLEEP))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
