//! Metrics: the runtime's own (`keel_wasm_failures_total{filter,kind}`) and the ones filters
//! define with `proxy_define_metric`, all in the `prometheus::Registry` keel exports.
//!
//! Collectors are process-wide (one per name) and registered into each chain's registry, so
//! every worker's instance of a filter adds to the same series.

use std::collections::{HashMap, HashSet};
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
    /// Each metric, and whether it is exported (the first to take its exported name).
    metrics: Vec<(CustomMetric, bool)>,
    /// The exported names taken.
    names: HashSet<String>,
}

static DEFINED: LazyLock<Mutex<Defined>> = LazyLock::new(|| {
    Mutex::new(Defined {
        ids: HashMap::new(),
        metrics: Vec::new(),
        names: HashSet::new(),
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
        let (metric, exported) = defined.metrics.get(id as usize)?.clone();
        if exported {
            register(&metric, registry);
        }
        return Some((id, metric));
    }
    let full = sanitize(name);
    let exported = defined.names.insert(full.clone());
    let help = format!("proxy-wasm filter metric {name}");
    let metric = match kind {
        crate::abi::metric::COUNTER => CustomMetric::Counter(IntCounter::new(full, help).ok()?),
        crate::abi::metric::GAUGE => CustomMetric::Gauge(IntGauge::new(full, help).ok()?),
        crate::abi::metric::HISTOGRAM => CustomMetric::Histogram(
            Histogram::with_opts(HistogramOpts::new(full, help).buckets(ENVOY_BUCKETS.to_vec()))
                .ok()?,
        ),
        _ => return None,
    };
    // Envoy answers Ok whatever the name; two names that sanitize alike ("a.b", "a_b", or a
    // counter and a gauge of one name) cannot both be exported here: the second is kept (the
    // filter can use it, `get_metric` reads it) and named in a warning.
    if !exported {
        log::warn!(
            target: "keel_wasm",
            "filter metric {name:?}: its exported name is taken by another filter metric; it is \
             counted but not exported"
        );
    } else if !register(&metric, registry) {
        return None;
    }
    let id = u32::try_from(defined.metrics.len()).ok()?;
    defined.metrics.push((metric.clone(), exported));
    defined.ids.insert(key, id);
    Some((id, metric))
}

/// Envoy's default histogram buckets (`source/common/stats/histogram_impl.cc`
/// `HistogramSettingsImpl::defaultBuckets`): filters record unit-less integers (milliseconds,
/// bytes), which prometheus' default buckets (0.005 to 10) would all put in `+Inf`.
const ENVOY_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

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

    /// Envoy answers Ok for any name: a second metric whose exported name is taken is kept
    /// (unexported) instead of refused.
    #[test]
    fn a_name_taken_by_another_metric_is_kept_unexported() {
        let registry = Registry::new();
        let (a, _) = define(0, "test.clash", &registry).unwrap();
        let (b, gauge) = define(1, "test_clash", &registry).unwrap();
        assert_ne!(a, b);
        if let CustomMetric::Gauge(gauge) = gauge {
            gauge.set(5);
        }
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "keel_wasmcustom_test_clash")
            .unwrap();
        assert_eq!(
            family.get_field_type(),
            prometheus::proto::MetricType::COUNTER
        );
    }

    /// Histograms use Envoy's buckets, so that integer observations (ms, bytes) spread out.
    #[test]
    fn histograms_have_envoys_buckets() {
        let registry = Registry::new();
        let (_, metric) = define(2, "test.latency_ms", &registry).unwrap();
        let CustomMetric::Histogram(histogram) = metric else {
            panic!("not a histogram");
        };
        histogram.observe(42.0);
        let families = registry.gather();
        let buckets = families
            .iter()
            .find(|f| f.name() == "keel_wasmcustom_test_latency_ms")
            .unwrap()
            .get_metric()[0]
            .get_histogram()
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect::<Vec<_>>();
        assert_eq!(buckets.len(), 19);
        assert!(buckets.contains(&(25.0, 0)) && buckets.contains(&(50.0, 1)));
    }
}
