//! The running configuration: the current [`Proxy`] generation behind a lock that is held only
//! to clone an `Arc`, and reload (parse, validate, build; swap only on success).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::callout::LocalStore;
use crate::config::{self, Settings, StoreSettings};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::filter::ChainBuilder;

/// State shared by listeners, the admin listener and the signal handlers.
pub struct Shared {
    current: RwLock<Arc<Proxy>>,
    /// The session store and the settings it was built from: kept across reloads that do not
    /// change them (a memory store's sessions, memcached's pools and node states).
    store: Mutex<Option<(StoreSettings, LocalStore)>>,
    /// Process metrics (one registry for the process).
    pub metrics: Metrics,
    builder: ChainBuilder,
    config_path: Option<PathBuf>,
}

impl Shared {
    /// Builds the first generation.
    pub fn new(
        settings: Settings,
        config_path: Option<PathBuf>,
        metrics: Metrics,
        builder: ChainBuilder,
    ) -> Result<Arc<Self>, String> {
        let store = store_for(None, settings.session_store.as_ref());
        let proxy = Proxy::build(
            settings,
            metrics.clone(),
            &builder,
            store.as_ref().map(|(_, l)| l.clone()),
        )?;
        Ok(Arc::new(Self {
            current: RwLock::new(proxy),
            store: Mutex::new(store),
            metrics,
            builder,
            config_path,
        }))
    }

    /// The session store's counters, when there is a store.
    pub fn store_metrics(&self) -> Option<keel_store::MetricsSnapshot> {
        let held = match self.store.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        held.as_ref().map(|(_, l)| l.store.metrics_snapshot())
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Proxy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the configuration file and swaps it in; on any error the old one stays.
    /// Listener and admin addresses are taken at start only. Members that stay (same route and
    /// URL) keep their health, counters and admin changes.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            return Err("no configuration file to reload (running the embedded default)".into());
        };
        let settings = config::load(path).map_err(|e| e.to_string())?;
        let old = self.current();
        let same_listeners = settings.listeners.len() == old.settings.listeners.len()
            && settings
                .listeners
                .iter()
                .zip(&old.settings.listeners)
                .all(|(a, b)| a.address == b.address && a.tls == b.tls);
        if !same_listeners {
            log::warn!("reload: listener changes take effect only after a restart");
        }
        let mut held = match self.store.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let store = store_for(held.as_ref(), settings.session_store.as_ref());
        let proxy = Proxy::build(
            settings,
            self.metrics.clone(),
            &self.builder,
            store.as_ref().map(|(_, l)| l.clone()),
        )?;
        *held = store;
        drop(held);
        // Health, counters and admin changes survive the reload (see Member::inherit).
        proxy.balancer.inherit(&old.balancer);
        match self.current.write() {
            Ok(mut g) => *g = proxy,
            Err(poisoned) => *poisoned.into_inner() = proxy,
        }
        Ok(())
    }
}

/// The store for `wanted`: the `held` one when its settings are the same, else a new one.
fn store_for(
    held: Option<&(StoreSettings, LocalStore)>,
    wanted: Option<&StoreSettings>,
) -> Option<(StoreSettings, LocalStore)> {
    let wanted = wanted?;
    if let Some(held) = held.filter(|(s, _)| s == wanted) {
        return Some(held.clone());
    }
    if held.is_some() {
        log::warn!("session_store changed: a new store (a memory store starts empty)");
    }
    let local = LocalStore {
        name: wanted.upstream.clone(),
        store: Arc::new(wanted.build()),
    };
    Some((wanted.clone(), local))
}
