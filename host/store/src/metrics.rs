//! The store's counters: plain atomics the host exports (Prometheus names are the host's
//! business). Each counts events since the store was built.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Loads asked for (valid keys).
    pub loads: AtomicU64,
    /// Loads that found the record (on the primary or the backup).
    pub hits: AtomicU64,
    /// Loads that found nothing (unknown, expired, deleted).
    pub misses: AtomicU64,
    /// Sessions created.
    pub creates: AtomicU64,
    /// Saves that wrote.
    pub saves: AtomicU64,
    /// Saves refused because the record changed since it was loaded (409).
    pub cas_conflicts: AtomicU64,
    /// Records moved to another node because theirs was down.
    pub relocations: AtomicU64,
    /// Node operations that failed and marked the node down.
    pub node_failures: AtomicU64,
    /// Requests answered 503 because no node could serve them.
    pub unavailable: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`Metrics::loads`].
    pub loads: u64,
    /// See [`Metrics::hits`].
    pub hits: u64,
    /// See [`Metrics::misses`].
    pub misses: u64,
    /// See [`Metrics::creates`].
    pub creates: u64,
    /// See [`Metrics::saves`].
    pub saves: u64,
    /// See [`Metrics::cas_conflicts`].
    pub cas_conflicts: u64,
    /// See [`Metrics::relocations`].
    pub relocations: u64,
    /// See [`Metrics::node_failures`].
    pub node_failures: u64,
    /// See [`Metrics::unavailable`].
    pub unavailable: u64,
}

impl Metrics {
    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            loads: g(&self.loads),
            hits: g(&self.hits),
            misses: g(&self.misses),
            creates: g(&self.creates),
            saves: g(&self.saves),
            cas_conflicts: g(&self.cas_conflicts),
            relocations: g(&self.relocations),
            node_failures: g(&self.node_failures),
            unavailable: g(&self.unavailable),
        }
    }
}
