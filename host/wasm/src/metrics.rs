//! Metrics: the runtime's own (`keel_wasm_failures_total{filter,kind}`) and the ones filters
//! define with `proxy_define_metric`, all in the `prometheus::Registry` keel exports.
//!
//! Collectors are process-wide (one per name) and registered into each chain's registry, so
//! every worker's instance of a filter adds to the same series.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The name of the failure counter.
pub(crate) const FAILURES: &str = "keel_wasm_failures_total";

static FAILURES_VEC: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            FAILURES,
            "proxy-wasm filter failures (trap, deadline, memory, proc_exit, ...)",
        ),
        &["filter", "kind"],
    )
    .ok()
});

/// Registers the runtime's own metrics in `registry` (a second registration is harmless).
pub(crate) fn register_runtime(registry: &Registry) {
    if let Some(vec) = FAILURES_VEC.as_ref() {
        let _ = registry.register(Box::new(vec.clone()));
    }
}

/// Counts one failure of `filter`.
pub(crate) fn count_failure(filter: &str, kind: &str) {
    if let Some(vec) = FAILURES_VEC.as_ref() {
        vec.with_label_values(&[filter, kind]).inc();
    }
}

/// A metric a filter defined.
#[derive(Clone)]
pub(crate) enum CustomMetric {
    Counter(IntCounter),
    Gauge(IntGauge),
    Histogram(Histogram),
}

struct Defined {
    ids: HashMap<(i32, String), u32>,
    metrics: Vec<CustomMetric>,
}

static DEFINED: LazyLock<Mutex<Defined>> = LazyLock::new(|| {
    Mutex::new(Defined {
        ids: HashMap::new(),
        metrics: Vec::new(),
    })
});

/// The prometheus name of a filter metric: `keel_wasmcustom_` + the name with every character
/// prometheus does not allow replaced by `_` (Envoy prefixes them `wasmcustom.`).
pub(crate) fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 16);
    out.push_str("keel_wasmcustom_");
    for ch in name.chars() {
        out.push(if ch.is_ascii_alphanumeric() || ch == '_' || ch == ':' {
            ch
        } else {
            '_'
        });
    }
    out
}

/// Defines (or finds) a filter metric and registers it in `registry`; `None` for a bad type or
/// a name prometheus refuses.
pub(crate) fn define(kind: i32, name: &str, registry: &Registry) -> Option<(u32, CustomMetric)> {
    let mut defined = DEFINED.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (kind, name.to_owned());
    if let Some(&id) = defined.ids.get(&key) {
        let metric = defined.metrics.get(id as usize)?.clone();
        register(&metric, registry);
        return Some((id, metric));
    }
    let full = sanitize(name);
    let help = format!("proxy-wasm filter metric {name}");
    let metric = match kind {
        crate::abi::metric::COUNTER => CustomMetric::Counter(IntCounter::new(full, help).ok()?),
        crate::abi::metric::GAUGE => CustomMetric::Gauge(IntGauge::new(full, help).ok()?),
        crate::abi::metric::HISTOGRAM => {
            CustomMetric::Histogram(Histogram::with_opts(HistogramOpts::new(full, help)).ok()?)
        }
        _ => return None,
    };
    if !register(&metric, registry) {
        return None;
    }
    let id = u32::try_from(defined.metrics.len()).ok()?;
    defined.metrics.push(metric.clone());
    defined.ids.insert(key, id);
    Some((id, metric))
}

/// Registers; true when registered now or already (the same collector), false on a name clash.
fn register(metric: &CustomMetric, registry: &Registry) -> bool {
    let result = match metric {
        CustomMetric::Counter(m) => registry.register(Box::new(m.clone())),
        CustomMetric::Gauge(m) => registry.register(Box::new(m.clone())),
        CustomMetric::Histogram(m) => registry.register(Box::new(m.clone())),
    };
    matches!(result, Ok(()) | Err(prometheus::Error::AlreadyReg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(
            sanitize("sticky.hits-total"),
            "keel_wasmcustom_sticky_hits_total"
        );
        assert_eq!(sanitize("a b/é"), "keel_wasmcustom_a_b__");
    }

    #[test]
    fn one_collector_per_name_across_registries() {
        let one = Registry::new();
        let two = Registry::new();
        let (a, _) = define(0, "test.shared_counter", &one).unwrap();
        let (b, metric) = define(0, "test.shared_counter", &two).unwrap();
        assert_eq!(a, b);
        if let CustomMetric::Counter(counter) = metric {
            counter.inc();
        }
        assert!(
            two.gather()
                .iter()
                .any(|f| f.name() == "keel_wasmcustom_test_shared_counter")
        );
        assert!(define(9, "bad.type", &one).is_none());
    }
}
