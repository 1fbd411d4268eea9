//! [`FilterChain`]: the filters of one chain, each compiled once and instantiated once per
//! worker (a slot per worker, behind a mutex that is uncontended in practice), and what happens
//! when an instance fails: a log line, the failure metric, a fresh configured instance.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use wasmtime::{InstancePre, Module};

use crate::callbacks::{Bodies, Callbacks};
use crate::error::ChainError;
use crate::instance::{Failure, Instance, StartError};
use crate::state::{HostState, PluginInfo, StreamData};
use crate::stream::Stream;
use crate::types::{CalloutHandler, FailurePolicy, FilterSpec, Limits, StreamInfo};

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

/// Sets the worker index of the current thread (call it from the runtime's `on_thread_start`).
/// Threads that never call it get indexes round-robin on first use.
pub fn set_worker_index(index: usize) {
    WORKER.with(|worker| worker.set(Some(index)));
}

fn worker_index(workers: usize) -> usize {
    let index = WORKER.with(|worker| match worker.get() {
        Some(index) => index,
        None => {
            let index = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
            worker.set(Some(index));
            index
        }
    });
    index % workers.max(1)
}

/// One worker's instance of a filter; the generation changes whenever it is replaced, so that
/// streams holding contexts of the old instance notice.
pub(crate) struct Slot {
    pub instance: Option<Instance>,
    pub generation: u64,
    /// When a failed replacement may be tried again.
    pub retry_at: Option<std::time::Instant>,
    /// Fired when a callback acted on a paused stream of this instance that it made effective
    /// (the entry is in the instance's `remote`), or when the instance was replaced.
    pub wake: Arc<tokio::sync::Notify>,
    /// The data of streams that were paused in an instance that failed: (its generation, the
    /// context, the data), until each stream takes its own back.
    pub orphans: Vec<(u64, u32, Box<StreamData>)>,
}

impl Slot {
    /// Takes back the data a stream parked while paused in context `context` of the instance
    /// of `generation` (see [`HostState::parked`]).
    pub fn unpark(&mut self, generation: u64, context: u32) -> Option<Box<StreamData>> {
        if generation == self.generation
            && let Some(instance) = self.instance.as_mut()
        {
            return instance.store.data_mut().unpark(context);
        }
        let at = self
            .orphans
            .iter()
            .position(|(g, c, _)| *g == generation && *c == context)?;
        Some(self.orphans.swap_remove(at).2)
    }
}

/// How long a slot whose replacement instance did not start waits before trying again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// One filter of the chain.
pub(crate) struct Filter {
    pub plugin: Arc<PluginInfo>,
    pub policy: FailurePolicy,
    pub limits: Limits,
    /// The stream callbacks its module exports (the others are not called).
    pub callbacks: Callbacks,
    pre: InstancePre<HostState>,
    pub slots: Vec<Mutex<Slot>>,
    handler: Arc<dyn CalloutHandler>,
    registry: prometheus::Registry,
}

impl Filter {
    pub fn lock(&self, worker: usize) -> MutexGuard<'_, Slot> {
        self.slots[worker % self.slots.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self) -> Result<Instance, StartError> {
        Instance::start(
            &self.pre,
            self.plugin.clone(),
            &self.limits,
            self.handler.clone(),
            self.registry.clone(),
        )
    }

    /// Records a failure of the slot's instance and replaces it by a fresh configured one.
    pub fn fail(&self, slot: &mut Slot, failure: &Failure) {
        log::error!(
            target: "keel_wasm",
            "filter {}: {failure}; policy {:?}; replacing the instance",
            self.plugin.name,
            self.policy
        );
        crate::metrics::count_failure(&self.plugin.name, failure.kind());
        if let Some(mut instance) = slot.instance.take() {
            let generation = slot.generation;
            let parked = std::mem::take(&mut instance.store.data_mut().parked);
            slot.orphans.extend(
                parked
                    .into_iter()
                    .map(|(context, data)| (generation, context, data)),
            );
        }
        slot.generation += 1;
        // Streams paused in the failed instance learn it now, not at their pause timeout.
        slot.wake.notify_waiters();
        self.revive(slot);
    }

    /// Starts a fresh instance in an empty slot (at most once per [`RETRY_AFTER`]).
    pub fn revive(&self, slot: &mut Slot) {
        if slot.instance.is_some()
            || slot
                .retry_at
                .is_some_and(|at| std::time::Instant::now() < at)
        {
            return;
        }
        match self.fresh() {
            Ok(instance) => {
                slot.instance = Some(instance);
                slot.retry_at = None;
            }
            Err(error) => {
                log::error!(
                    target: "keel_wasm",
                    "filter {}: the replacement instance did not start: {error:?}",
                    self.plugin.name
                );
                slot.retry_at = Some(std::time::Instant::now() + RETRY_AFTER);
            }
        }
    }
}

pub(crate) struct ChainInner {
    pub filters: Vec<Filter>,
    /// Some filter exports `on_log`: streams keep a copy of the request head and of the
    /// response headers for it.
    pub keep_heads: bool,
    pub workers: usize,
    pub ticker: std::sync::OnceLock<crate::ticker::Ticker>,
}

impl Drop for ChainInner {
    /// The last stream of a replaced (or stopped) chain is gone: every instance's root context
    /// gets `on_done` and `on_delete` (a filter flushes what it batched); a root that answers
    /// "not done yet" is waited for in the background (`crate::drain`). An instance that failed
    /// was dropped without them, as Envoy drops a failed VM.
    fn drop(&mut self) {
        for filter in &self.filters {
            let name = &filter.plugin.name;
            for slot in &filter.slots {
                let taken = slot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .instance
                    .take();
                let Some(mut instance) = taken else {
                    continue;
                };
                let deleted = match instance.root_done() {
                    Ok(true) => instance.root_delete(),
                    Ok(false) => {
                        crate::drain::drain(name.clone(), instance);
                        Ok(())
                    }
                    Err(failure) => Err(failure),
                };
                if let Err(failure) = deleted {
                    log::warn!(target: "keel_wasm", "filter {name}: root on_done/on_delete failed: {failure}");
                }
            }
        }
    }
}

/// The proxy-wasm filters of keel, ready to open streams. Cheap to share (`Send + Sync`).
pub struct FilterChain {
    inner: Arc<ChainInner>,
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .inner
            .filters
            .iter()
            .map(|f| f.plugin.name.as_str())
            .collect();
        f.debug_struct("FilterChain")
            .field("filters", &names)
            .field("workers", &self.inner.workers)
            .finish()
    }
}

fn module_error(filter: &str, reason: impl Into<String>) -> ChainError {
    ChainError::Module {
        filter: filter.to_owned(),
        reason: reason.into(),
    }
}

impl FilterChain {
    /// Compiles each module once, instantiates each filter `workers` times and starts every
    /// instance (`on_vm_start`, `on_configure`). Filters run in the order given on requests and
    /// in reverse on responses, as Envoy's.
    pub fn new(
        specs: Vec<FilterSpec>,
        workers: usize,
        registry: &prometheus::Registry,
        callouts: Arc<dyn CalloutHandler>,
    ) -> Result<FilterChain, ChainError> {
        let runtime = crate::engine::runtime().map_err(ChainError::Engine)?;
        crate::metrics::register_runtime(registry);
        let workers = workers.max(1);
        let mut modules: HashMap<PathBuf, Module> = HashMap::new();
        let mut filters = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name.clone();
            if spec.limits.memory_bytes < 64 << 10 {
                return Err(ChainError::Spec {
                    filter: name,
                    reason: "limits.memory_bytes is below one wasm page (64 KiB)".into(),
                });
            }
            let module = match modules.get(&spec.wasm) {
                Some(module) => module.clone(),
                None => {
                    let bytes = std::fs::read(&spec.wasm).map_err(|source| ChainError::Read {
                        filter: name.clone(),
                        path: spec.wasm.clone(),
                        source,
                    })?;
                    let module = crate::engine::compile(&runtime.engine, &bytes)
                        .map_err(|e| module_error(&name, format!("{e:#}")))?;
                    modules.insert(spec.wasm.clone(), module.clone());
                    module
                }
            };
            check_abi(&name, &module)?;
            let pre = runtime
                .linker
                .instantiate_pre(&module)
                .map_err(|e| module_error(&name, format!("{e:#}")))?;
            let plugin = Arc::new(PluginInfo {
                name: spec.name.clone(),
                root_id: spec.root_id.clone(),
                vm_id: spec.vm_id.clone(),
                plugin_config: Bytes::from(spec.plugin_config.clone()),
                vm_config: Bytes::from(spec.vm_config.clone()),
                env: spec.env.clone(),
            });
            let mut filter = Filter {
                plugin,
                policy: spec.failure_policy,
                limits: spec.limits,
                callbacks: Callbacks::of(&module),
                pre,
                slots: Vec::with_capacity(workers),
                handler: callouts.clone(),
                registry: registry.clone(),
            };
            for _ in 0..workers {
                let instance = filter.fresh().map_err(|error| match error {
                    StartError::Module(reason) => module_error(&name, reason),
                    StartError::Start(reason) => ChainError::Start {
                        filter: name.clone(),
                        reason,
                    },
                    StartError::Configure(message) => ChainError::Configure {
                        filter: name.clone(),
                        message,
                    },
                })?;
                filter.slots.push(Mutex::new(Slot {
                    instance: Some(instance),
                    generation: 0,
                    retry_at: None,
                    wake: Arc::default(),
                    orphans: Vec::new(),
                }));
            }
            filters.push(filter);
        }
        let keep_heads = filters.iter().any(|f| f.callbacks.log());
        let inner = Arc::new(ChainInner {
            filters,
            keep_heads,
            workers,
            ticker: std::sync::OnceLock::new(),
        });
        if !inner.filters.is_empty()
            && let Some(ticker) = crate::ticker::Ticker::start(Arc::downgrade(&inner))
        {
            let _ = inner.ticker.set(ticker);
        }
        Ok(FilterChain { inner })
    }

    /// Opens a stream: a stream context in each filter's instance of the current worker.
    pub fn stream(&self, info: StreamInfo) -> Stream {
        Stream::open(self.inner.clone(), worker_index(self.inner.workers), info)
    }

    /// Whether the chain has no filters (keel can then skip it entirely).
    pub fn is_empty(&self) -> bool {
        self.inner.filters.is_empty()
    }

    /// Which bodies go through the chain: those some filter has a callback for, or may read
    /// the size of later (see [`Bodies`]).
    pub fn bodies(&self) -> Bodies {
        self.inner
            .filters
            .iter()
            .fold(Bodies::default(), |all, f| all.or(f.callbacks.bodies()))
    }

    /// The filters' names, in request order.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .filters
            .iter()
            .map(|f| f.plugin.name.clone())
            .collect()
    }

    /// The linear memory of each filter's instance on worker 0, in bytes (for reports).
    pub fn memory_per_instance(&self) -> Vec<(String, usize)> {
        self.inner
            .filters
            .iter()
            .map(|filter| {
                let slot = filter.lock(0);
                (
                    filter.plugin.name.clone(),
                    slot.instance.as_ref().map_or(0, Instance::memory_bytes),
                )
            })
            .collect()
    }
}

/// Envoy accepts only modules that export `proxy_abi_version_0_1_0`, `_0_2_0` or `_0_2_1`, and
/// links the 0.1.0-only functions into 0.1.0 modules only and the 0.2 ones into 0.2 modules
/// only (cpp-host `wasm.cc`): keel refuses what Envoy would.
fn check_abi(filter: &str, module: &Module) -> Result<(), ChainError> {
    const ONLY_0_1: [&str; 4] = [
        "proxy_get_configuration",
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
    ];
    const ONLY_0_2: [&str; 3] = [
        "proxy_continue_stream",
        "proxy_close_stream",
        "proxy_get_log_level",
    ];
    let has = |name: &str| module.exports().any(|export| export.name() == name);
    let (v01, v02) = (
        has("proxy_abi_version_0_1_0"),
        has("proxy_abi_version_0_2_0") || has("proxy_abi_version_0_2_1"),
    );
    if !v01 && !v02 {
        return Err(module_error(
            filter,
            "not a proxy-wasm module: no proxy_abi_version_0_1_0/0_2_0/0_2_1 export",
        ));
    }
    let foreign: &[&str] = if v02 { &ONLY_0_1 } else { &ONLY_0_2 };
    if let Some(import) = module
        .imports()
        .find(|i| i.module() == "env" && foreign.contains(&i.name()))
    {
        return Err(module_error(
            filter,
            format!(
                "imports env.{}, which Envoy does not link into a module of this ABI version",
                import.name()
            ),
        ));
    }
    Ok(())
}
