//! keel's Prometheus metrics. One [`prometheus::Registry`] per process, created in
//! [`Metrics::new`] and passed to everything that registers (keel-wasm registers its own
//! metrics into the same registry). Names are constants here; the members' transports (AJP
//! pools) name their own counters, added at scrape time ([`Metrics::render`]).

use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::access_log::SinkMetrics;
use crate::upstream::TransportCounter;

/// Requests answered, by member (`-` for local answers) and status code.
pub const REQUESTS: &str = "keel_requests_total";
/// Failed attempts, by member and kind.
pub const UPSTREAM_FAILURES: &str = "keel_upstream_failures_total";
/// Time to the response head, by member.
pub const UPSTREAM_SECONDS: &str = "keel_upstream_response_seconds";
/// Attempts that went to another member after a failure.
pub const FAILOVERS: &str = "keel_failovers_total";
/// 1 if the member is healthy now.
pub const MEMBER_HEALTHY: &str = "keel_member_healthy";
/// Requests in flight on the member.
pub const MEMBER_IN_FLIGHT: &str = "keel_member_in_flight";
/// Client connections open now.
pub const CLIENT_CONNECTIONS: &str = "keel_client_connections";
/// Idle HTTP/1 client connections parked now (waiting for a head without hyper's state).
pub const CLIENT_CONNECTIONS_PARKED: &str = "keel_client_connections_parked";
/// Access-log lines dropped because the file's writer fell behind.
pub const ACCESS_LOG_DROPPED: &str = "keel_access_log_dropped_total";
/// Access-log writes that failed.
pub const ACCESS_LOG_WRITE_ERRORS: &str = "keel_access_log_write_errors_total";

/// The metrics keel itself records.
#[derive(Clone)]
pub struct Metrics {
    /// The process registry (shared with keel-wasm).
    pub registry: Registry,
    /// [`REQUESTS`].
    pub requests: IntCounterVec,
    /// [`UPSTREAM_FAILURES`].
    pub upstream_failures: IntCounterVec,
    /// [`UPSTREAM_SECONDS`].
    pub upstream_seconds: HistogramVec,
    /// [`FAILOVERS`].
    pub failovers: IntCounterVec,
    /// [`MEMBER_HEALTHY`].
    pub member_healthy: IntGaugeVec,
    /// [`MEMBER_IN_FLIGHT`].
    pub member_in_flight: IntGaugeVec,
    /// [`CLIENT_CONNECTIONS`].
    pub client_connections: IntGauge,
    /// [`CLIENT_CONNECTIONS_PARKED`].
    pub client_connections_parked: IntGauge,
    /// [`ACCESS_LOG_DROPPED`] and [`ACCESS_LOG_WRITE_ERRORS`].
    pub access_log: SinkMetrics,
}

impl Metrics {
    /// Creates the registry and registers keel's metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS, "Requests answered, by member and status."),
            &["member", "code"],
        )?;
        let upstream_failures = IntCounterVec::new(
            Opts::new(
                UPSTREAM_FAILURES,
                "Failed upstream attempts, by member and kind.",
            ),
            &["member", "kind"],
        )?;
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new(UPSTREAM_SECONDS, "Time from attempt to response head."),
            &["member"],
        )?;
        let failovers = IntCounterVec::new(
            Opts::new(
                FAILOVERS,
                "Attempts moved to another member, by the member that failed.",
            ),
            &["member"],
        )?;
        let member_healthy = IntGaugeVec::new(
            Opts::new(MEMBER_HEALTHY, "1 if the member is healthy now."),
            &["member"],
        )?;
        let member_in_flight = IntGaugeVec::new(
            Opts::new(MEMBER_IN_FLIGHT, "Requests in flight on the member."),
            &["member"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_failures.clone()))?;
        registry.register(Box::new(upstream_seconds.clone()))?;
        registry.register(Box::new(failovers.clone()))?;
        registry.register(Box::new(member_healthy.clone()))?;
        registry.register(Box::new(member_in_flight.clone()))?;
        let client_connections = IntGauge::new(CLIENT_CONNECTIONS, "Client connections open now.")?;
        registry.register(Box::new(client_connections.clone()))?;
        let client_connections_parked = IntGauge::new(
            CLIENT_CONNECTIONS_PARKED,
            "Idle HTTP/1 client connections parked now (waiting for their next request head \
             without hyper's buffers).",
        )?;
        registry.register(Box::new(client_connections_parked.clone()))?;
        let access_log = SinkMetrics {
            dropped: IntCounter::new(
                ACCESS_LOG_DROPPED,
                "Access-log lines dropped because the file's writer fell behind.",
            )?,
            write_errors: IntCounter::new(
                ACCESS_LOG_WRITE_ERRORS,
                "Access-log writes that failed.",
            )?,
        };
        registry.register(Box::new(access_log.dropped.clone()))?;
        registry.register(Box::new(access_log.write_errors.clone()))?;
        Ok(Self {
            registry,
            requests,
            upstream_failures,
            upstream_seconds,
            failovers,
            member_healthy,
            member_in_flight,
            client_connections,
            client_connections_parked,
            access_log,
        })
    }

    /// The text exposition of everything in the registry, followed by the members' transport
    /// counters (route, its counters), read now: they belong to the current configuration's
    /// connection pools, so a reload starts them again from zero.
    /// The session store's counters follow, when there is a store.
    pub fn render(
        &self,
        members: &[(&str, Vec<TransportCounter>)],
        store: Option<keel_store::MetricsSnapshot>,
    ) -> String {
        let mut families = self.registry.gather();
        families.extend(transport_families(members));
        families.extend(store.map(store_families).unwrap_or_default());
        encode(&families)
    }
}

fn encode(families: &[MetricFamily]) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(families)
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
}

/// The session store's counters alone, as `keel bridge` serves them on `/metrics`.
pub fn render_store(store: keel_store::MetricsSnapshot) -> String {
    encode(&store_families(store))
}

/// One unlabelled counter family per store counter (`keel_store_*_total`).
fn store_families(s: keel_store::MetricsSnapshot) -> Vec<MetricFamily> {
    [
        (
            "keel_store_loads_total",
            "Session loads (valid keys).",
            s.loads,
        ),
        (
            "keel_store_hits_total",
            "Loads that found the session (primary or backup).",
            s.hits,
        ),
        (
            "keel_store_misses_total",
            "Loads that found nothing (unknown or expired).",
            s.misses,
        ),
        ("keel_store_creates_total", "Sessions created.", s.creates),
        ("keel_store_saves_total", "Saves that wrote.", s.saves),
        (
            "keel_store_cas_conflicts_total",
            "Saves refused: the session changed since it was loaded.",
            s.cas_conflicts,
        ),
        (
            "keel_store_relocations_total",
            "Sessions moved to another memcached node because theirs was down.",
            s.relocations,
        ),
        (
            "keel_store_node_failures_total",
            "memcached operations that failed and marked their node down.",
            s.node_failures,
        ),
        (
            "keel_store_unavailable_total",
            "Store requests answered 503: no memcached node reachable.",
            s.unavailable,
        ),
    ]
    .into_iter()
    .map(|(name, help, value)| {
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(MetricType::COUNTER);
        let mut counter = Counter::default();
        counter.set_value(value as f64);
        let mut metric = Metric::default();
        metric.set_counter(counter);
        family.mut_metric().push(metric);
        family
    })
    .collect()
}

/// One counter family per transport counter name (in the order the members report them), a
/// sample per member labelled `member`.
fn transport_families(members: &[(&str, Vec<TransportCounter>)]) -> Vec<MetricFamily> {
    let mut families: Vec<MetricFamily> = Vec::new();
    for (route, counters) in members {
        for counter in counters {
            let at = match families.iter().position(|f| f.name() == counter.name) {
                Some(at) => at,
                None => {
                    let mut family = MetricFamily::default();
                    family.set_name(counter.name.to_owned());
                    family.set_help(counter.help.to_owned());
                    family.set_field_type(MetricType::COUNTER);
                    families.push(family);
                    families.len() - 1
                }
            };
            let mut label = LabelPair::default();
            label.set_name("member".to_owned());
            label.set_value((*route).to_owned());
            let mut value = Counter::default();
            value.set_value(counter.value as f64);
            let mut metric = Metric::from_label(vec![label]);
            metric.set_counter(value);
            families[at].mut_metric().push(metric);
        }
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_counters_are_one_family_per_name_a_sample_per_member() {
        let metrics = Metrics::new().unwrap();
        let c = |name, value| TransportCounter {
            name,
            help: "Help.",
            value,
        };
        let text = metrics.render(
            &[
                ("t1", vec![c("keel_x_total", 3), c("keel_y_total", 4)]),
                ("t2", vec![c("keel_x_total", 5), c("keel_y_total", 0)]),
                ("h", Vec::new()),
            ],
            None,
        );
        assert_eq!(text.matches("# TYPE keel_x_total counter").count(), 1);
        assert_eq!(text.matches("# HELP keel_y_total Help.").count(), 1);
        for sample in [
            "keel_x_total{member=\"t1\"} 3",
            "keel_x_total{member=\"t2\"} 5",
            "keel_y_total{member=\"t1\"} 4",
            "keel_y_total{member=\"t2\"} 0",
        ] {
            assert!(text.contains(sample), "{sample} missing from\n{text}");
        }
        assert!(
            text.contains("keel_access_log_dropped_total 0"),
            "the registry too"
        );
    }
}
