//! One balancer member: its upstream, administrative status, weight, traffic counters and
//! health (passive error state with backoff, active check results).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::MemberStatus;
use crate::upstream::Upstream;

/// Passive ejection settings.
#[derive(Debug, Clone, Copy)]
pub struct Ejection {
    /// First retry interval.
    pub interval: Duration,
    /// Growth per failure in a row.
    pub backoff: f64,
    /// Cap.
    pub max_interval: Duration,
}

/// A member's health.
#[derive(Debug, Default, Clone)]
pub struct Health {
    /// In error (passive) until then.
    pub error_until: Option<Instant>,
    /// Failures in a row (passive and active).
    pub failures: u32,
    /// Active checks: consecutive passes and fails.
    pub check_passes: u32,
    /// Active checks: consecutive fails.
    pub check_fails: u32,
    /// Active checks took it out.
    pub check_down: bool,
    /// Last active check: when, how long, ok.
    pub last_check: Option<(SystemTime, Duration, bool)>,
    /// Last error message.
    pub last_error: Option<String>,
}

/// One member.
pub struct Member {
    /// Route (jvmRoute).
    pub route: String,
    /// URL as configured.
    pub url: String,
    /// Resolved address (`upstream.address`).
    pub address: SocketAddr,
    /// Transport.
    pub upstream: Arc<dyn Upstream>,
    status: AtomicU8,
    weight: AtomicU32,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    health: Mutex<Health>,
}

fn status_code(s: MemberStatus) -> u8 {
    match s {
        MemberStatus::Active => 0,
        MemberStatus::HotStandby => 1,
        MemberStatus::Drain => 2,
        MemberStatus::Disabled => 3,
    }
}

impl Member {
    /// A new member.
    pub fn new(
        route: String,
        url: String,
        address: SocketAddr,
        upstream: Arc<dyn Upstream>,
        weight: u32,
        status: MemberStatus,
    ) -> Self {
        Self {
            route,
            url,
            address,
            upstream,
            status: AtomicU8::new(status_code(status)),
            weight: AtomicU32::new(weight),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
        }
    }

    /// Administrative status.
    pub fn status(&self) -> MemberStatus {
        match self.status.load(Ordering::Acquire) {
            0 => MemberStatus::Active,
            1 => MemberStatus::HotStandby,
            2 => MemberStatus::Drain,
            _ => MemberStatus::Disabled,
        }
    }

    /// Sets the administrative status.
    pub fn set_status(&self, s: MemberStatus) {
        self.status.store(status_code(s), Ordering::Release);
    }

    /// Weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Acquire)
    }

    /// Sets the weight.
    pub fn set_weight(&self, w: u32) {
        self.weight.store(w, Ordering::Release);
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests sent (attempts).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// Failed attempts that counted against it.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Acquire)
    }

    /// A copy of the health state.
    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Whether it is healthy now (not in passive error, not taken out by checks).
    pub fn is_healthy(&self, now: Instant) -> bool {
        self.health
            .lock()
            .map(|h| !h.check_down && h.error_until.is_none_or(|t| now >= t))
            .unwrap_or(false)
    }

    /// Starts an attempt; the guard ends it.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// A successful exchange: clears the passive error state.
    pub fn record_success(&self) {
        if let Ok(mut h) = self.health.lock()
            && (h.failures > 0 || h.error_until.is_some())
        {
            if h.error_until.is_some() {
                log::info!("member {} is back", self.route);
            }
            h.failures = 0;
            h.error_until = None;
        }
    }

    /// A failure that counts: puts the member in error for the retry interval, grown by the
    /// backoff factor for each failure in a row.
    pub fn record_failure(&self, ej: &Ejection, now: Instant, why: &str) {
        self.errors.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut h) = self.health.lock() {
            let exp = h.failures.min(16) as i32;
            h.failures = h.failures.saturating_add(1);
            let secs = ej.interval.as_secs_f64() * ej.backoff.powi(exp);
            let wait = Duration::from_secs_f64(secs.min(ej.max_interval.as_secs_f64()));
            h.error_until = Some(now + wait);
            h.last_error = Some(why.to_string());
            log::warn!(
                "member {} in error for {wait:?} (failure {} in a row): {why}",
                self.route,
                h.failures
            );
        }
    }

    /// Records one active check result; `passes`/`fails` consecutive results flip the state.
    pub fn record_check(&self, ok: bool, latency: Duration, passes: u32, fails: u32, err: &str) {
        if let Ok(mut h) = self.health.lock() {
            h.last_check = Some((SystemTime::now(), latency, ok));
            if ok {
                h.check_fails = 0;
                h.check_passes = h.check_passes.saturating_add(1);
                if h.check_passes >= passes && (h.check_down || h.error_until.is_some()) {
                    log::info!("member {} passes its health checks", self.route);
                    h.check_down = false;
                    h.error_until = None;
                    h.failures = 0;
                }
            } else {
                h.check_passes = 0;
                h.check_fails = h.check_fails.saturating_add(1);
                h.last_error = Some(err.to_string());
                if h.check_fails >= fails && !h.check_down {
                    log::warn!("member {} fails its health checks: {err}", self.route);
                    h.check_down = true;
                }
            }
        }
    }

    /// Takes it out of rotation now (admin: reset health) — used by tests and admin enable.
    pub fn reset_health(&self) {
        if let Ok(mut h) = self.health.lock() {
            *h = Health::default();
        }
    }
}

/// An attempt in flight on a member (bybusyness counts these).
pub struct InFlight(Arc<Member>);

impl InFlight {
    /// The member.
    pub fn member(&self) -> &Arc<Member> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
