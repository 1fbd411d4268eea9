//! The process-wide wasmtime pieces: one [`Engine`] (Cranelift, epoch interruption), one
//! [`Linker`] with every import, and the thread that advances the epoch so that a callback past
//! its deadline is interrupted.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use wasmtime::{Config, Engine, Linker, Module};

use crate::state::HostState;

/// How often the epoch advances: the granularity of callback deadlines (100 ms by default, so
/// 10 % of it). Each tick wakes a thread on a core the workers use: at 2 ms that was 500
/// wake-ups a second under load for a precision no deadline needs.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine and linker, built on first use.
pub(crate) struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn build() -> Result<Runtime, String> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // `KEEL_WASM_PERFMAP=1` writes /tmp/perf-<pid>.map, so that `perf` names the filters' own
    // functions (build them unstripped to see their names; see README, benchmarks).
    if std::env::var_os("KEEL_WASM_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
    let mut linker = Linker::new(&engine);
    crate::hostcalls::add_to_linker(&mut linker).map_err(|e| format!("{e:#}"))?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("keel-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
    Ok(Runtime { engine, linker })
}

/// The process's runtime.
pub(crate) fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// The number of epoch ticks that make up `deadline` (at least two, so a deadline is never
/// shorter than asked); zero is no deadline, as in Envoy.
pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    if deadline.is_zero() {
        return u64::MAX / 2;
    }
    let ticks = deadline.as_nanos() / EPOCH_TICK.as_nanos();
    u64::try_from(ticks)
        .unwrap_or(u64::MAX / 2)
        .saturating_add(2)
}

/// Compiled modules by content: a module is compiled once per process, however many chains
/// (reloads, tests) load it.
type ModuleCache = HashMap<u64, Vec<(Arc<[u8]>, Module)>>;
static MODULES: LazyLock<Mutex<ModuleCache>> = LazyLock::new(Mutex::default);

/// The compiled module for these bytes (compiled now if no chain compiled them before).
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Module> {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let key = hasher.finish();
    let cached = {
        let modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        modules.get(&key).and_then(|list| {
            list.iter()
                .find(|(b, _)| **b == *bytes)
                .map(|(_, m)| m.clone())
        })
    };
    if let Some(module) = cached {
        return Ok(module);
    }
    let module = Module::new(engine, bytes)?;
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    modules
        .entry(key)
        .or_default()
        .push((Arc::from(bytes), module.clone()));
    Ok(module)
}

/// Every import keel's linker provides, as (module, name) — for checks against Envoy's list.
pub fn provided_imports() -> Vec<(String, String)> {
    let Ok(runtime) = runtime() else {
        return Vec::new();
    };
    let plugin = Arc::new(crate::state::PluginInfo {
        name: String::new(),
        root_id: String::new(),
        vm_id: String::new(),
        plugin_config: bytes::Bytes::new(),
        vm_config: bytes::Bytes::new(),
        env: Vec::new(),
    });
    let state = HostState::new(
        plugin,
        0,
        Arc::new(crate::types::NoCallouts),
        prometheus::Registry::new(),
    );
    let mut store = wasmtime::Store::new(&runtime.engine, state);
    let mut names: Vec<(String, String)> = runtime
        .linker
        .iter(&mut store)
        .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
        .collect();
    names.sort();
    names
}
