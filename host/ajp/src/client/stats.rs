//! Counters of one member's client, for logs, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters; read them with [`snapshot`](Stats::snapshot).
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) connects: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) cpings: AtomicU64,
    pub(crate) cping_failures: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) stale_dropped: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) secret_rejections: AtomicU64,
    pub(crate) closed_after_response: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// New TCP connections.
    pub connects: u64,
    /// Requests on a pooled connection.
    pub reused: u64,
    /// CPINGs sent (pool checks and health checks).
    pub cpings: u64,
    /// CPINGs without a CPONG.
    pub cping_failures: u64,
    /// Idle connections closed by keel after the idle timeout.
    pub idle_closed: u64,
    /// Pooled connections found closed by the member.
    pub stale_dropped: u64,
    /// Protocol violations by the member (connection closed).
    pub protocol_errors: u64,
    /// 403 answers that look like a secret mismatch.
    pub secret_rejections: u64,
    /// Exchanges after which the connection was closed rather than pooled.
    pub closed_after_response: u64,
}

impl Stats {
    pub(crate) fn add(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connects: g(&self.connects),
            reused: g(&self.reused),
            cpings: g(&self.cpings),
            cping_failures: g(&self.cping_failures),
            idle_closed: g(&self.idle_closed),
            stale_dropped: g(&self.stale_dropped),
            protocol_errors: g(&self.protocol_errors),
            secret_rejections: g(&self.secret_rejections),
            closed_after_response: g(&self.closed_after_response),
        }
    }
}

impl std::ops::Add for StatsSnapshot {
    type Output = Self;

    /// The sum of two pools' counters (one member's pools, one per worker).
    fn add(self, o: Self) -> Self {
        Self {
            connects: self.connects + o.connects,
            reused: self.reused + o.reused,
            cpings: self.cpings + o.cpings,
            cping_failures: self.cping_failures + o.cping_failures,
            idle_closed: self.idle_closed + o.idle_closed,
            stale_dropped: self.stale_dropped + o.stale_dropped,
            protocol_errors: self.protocol_errors + o.protocol_errors,
            secret_rejections: self.secret_rejections + o.secret_rejections,
            closed_after_response: self.closed_after_response + o.closed_after_response,
        }
    }
}
