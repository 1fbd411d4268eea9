//! One balancer member: its upstream, administrative status, weight, traffic counters and
//! health (passive error state with backoff, active check results).
//!
//! Passive health works like a circuit breaker: a failure that counts puts the member in error
//! for the retry interval (grown by the backoff factor for each ejection in a row). Failures of
//! requests that were already under way when it was ejected do not grow the backoff again. Once
//! the interval has passed, one request at a time may go to it (the probe); the others keep
//! away until the probe succeeds, so a recovering member is not hit by every waiting request at
//! once. A probe whose request ends without a verdict (client gone) frees the slot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::MemberStatus;
use crate::proxy::filter::UpstreamInfo;
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
    /// Ejections in a row (the backoff exponent).
    pub failures: u32,
    /// The retry interval passed and this probe (an id) is the one request let through.
    pub probe: Option<u64>,
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
    /// What the filters learn of this member when it serves (address and route), made once.
    pub info: UpstreamInfo,
    /// Transport.
    pub upstream: Arc<dyn Upstream>,
    status: AtomicU8,
    weight: AtomicU32,
    /// The status and weight the configuration file gave (the admin API changes the live ones).
    configured: (MemberStatus, u32),
    in_flight: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    probes: AtomicU64,
    /// False while the member is plainly healthy (no error, not checked down): lets the
    /// balancer skip the health lock on the hot path.
    troubled: AtomicBool,
    health: Mutex<Health>,
}

/// Whether a member can take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Healthy.
    Up,
    /// Its retry interval has passed and no probe is under way: one request may try it.
    Recovering,
    /// In error, probed by another request, or taken out by its health checks.
    Down,
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
            info: UpstreamInfo::new(address, route.as_str()),
            route,
            url,
            address,
            upstream,
            status: AtomicU8::new(status_code(status)),
            weight: AtomicU32::new(weight),
            configured: (status, weight),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            troubled: AtomicBool::new(false),
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

    /// Takes over what `old`, the same member (route and URL) of the configuration before a
    /// reload, learned while it ran: its health (passive errors and their backoff, active check
    /// results), its request and error counts, and a status or weight an admin set, unless the
    /// new file changes that setting itself (then the file wins). A probe the old member let
    /// through is not carried over: its answer goes to the old member, and this one lets its
    /// own probe through when the retry interval has passed.
    pub fn inherit(&self, old: &Member) {
        let (old_status, old_weight) = old.configured;
        if self.configured.0 == old_status && old.status() != old_status {
            self.set_status(old.status());
        }
        if self.configured.1 == old_weight && old.weight() != old_weight {
            self.set_weight(old.weight());
        }
        let mut health = old.health();
        health.probe = None;
        let troubled = health.check_down || health.error_until.is_some();
        if let Ok(mut mine) = self.health.lock() {
            *mine = health;
        }
        self.troubled.store(troubled, Ordering::Release);
        for (mine, theirs) in [
            (&self.requests, &old.requests),
            (&self.errors, &old.errors),
            (&self.probes, &old.probes),
        ] {
            mine.store(theirs.load(Ordering::Acquire), Ordering::Release);
        }
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

    /// Whether it is healthy now (not in error, or its retry interval has passed), as the
    /// status page shows it.
    pub fn is_healthy(&self, now: Instant) -> bool {
        self.availability(now) != Availability::Down
    }

    /// Whether it can take a request now.
    pub fn availability(&self, now: Instant) -> Availability {
        if !self.troubled.load(Ordering::Acquire) {
            return Availability::Up;
        }
        let Ok(h) = self.health.lock() else {
            return Availability::Down;
        };
        match h.error_until {
            _ if h.check_down => Availability::Down,
            None => Availability::Up,
            Some(t) if now < t || h.probe.is_some() => Availability::Down,
            Some(_) => Availability::Recovering,
        }
    }

    /// Claims the probe of a recovering member; `None` if it is not recovering (any more).
    pub(crate) fn claim_probe(&self, now: Instant) -> Option<u64> {
        let mut h = self.health.lock().ok()?;
        let due = !h.check_down && h.probe.is_none() && h.error_until.is_some_and(|t| now >= t);
        if !due {
            return None;
        }
        let id = self.probes.fetch_add(1, Ordering::Relaxed);
        h.probe = Some(id);
        Some(id)
    }

    fn release_probe(&self, id: u64) {
        if let Ok(mut h) = self.health.lock()
            && h.probe == Some(id)
        {
            h.probe = None;
        }
    }

    /// Starts an attempt; the guard ends it. `index` is the member's place in the balancer,
    /// `probe` the probe this attempt holds (see [`Self::claim_probe`]).
    pub(crate) fn begin(self: &Arc<Self>, index: usize, probe: Option<u64>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        InFlight {
            member: self.clone(),
            index,
            probe,
        }
    }

    /// A successful exchange: clears the passive error state.
    pub fn record_success(&self) {
        // Failures and an error state always leave the member troubled: a plainly healthy
        // member has nothing to clear, and its lock (a write every worker would share) is
        // not taken.
        if !self.troubled.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut h) = self.health.lock()
            && (h.failures > 0 || h.error_until.is_some())
        {
            if h.error_until.is_some() {
                log::info!("member {} is back", self.route);
            }
            h.failures = 0;
            h.error_until = None;
            h.probe = None;
            self.settle(&h);
        }
    }

    /// Keeps the lock-free "plainly healthy" flag in step with the health state.
    fn settle(&self, h: &Health) {
        let troubled = h.check_down || h.error_until.is_some();
        self.troubled.store(troubled, Ordering::Release);
    }

    /// A failure that counts. A member not yet in error (or whose probe failed) goes in error
    /// for the retry interval grown by the backoff factor per ejection in a row; a member
    /// already in error stays as it is (requests under way when it failed end now, and they
    /// are one outage, not many).
    pub fn record_failure(&self, ej: &Ejection, now: Instant, why: &str) {
        self.errors.fetch_add(1, Ordering::AcqRel);
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        h.last_error = Some(why.to_string());
        let in_error = h.error_until.is_some_and(|t| now < t);
        if in_error && h.probe.is_none() {
            return;
        }
        h.probe = None;
        let exp = i32::try_from(h.failures.min(16)).unwrap_or(16);
        h.failures = h.failures.saturating_add(1);
        let secs = ej.interval.as_secs_f64() * ej.backoff.powi(exp);
        let cap = ej.max_interval.as_secs_f64();
        let wait = Duration::try_from_secs_f64(secs.min(cap)).unwrap_or(ej.max_interval);
        // Durations are capped in the configuration; the fallback is unreachable.
        h.error_until = Some(now.checked_add(wait).unwrap_or(now));
        self.settle(&h);
        log::warn!(
            "member {} in error for {wait:?} (ejection {} in a row): {why}",
            self.route,
            h.failures
        );
    }

    /// Records one active check result; `passes`/`fails` consecutive results flip the
    /// checked-down state (independent of the passive error state).
    pub fn record_check(&self, ok: bool, latency: Duration, passes: u32, fails: u32, err: &str) {
        if let Ok(mut h) = self.health.lock() {
            h.last_check = Some((SystemTime::now(), latency, ok));
            if ok {
                h.check_fails = 0;
                h.check_passes = h.check_passes.saturating_add(1);
                // Only what the checks did: a passive ejection keeps its retry interval
                // (a member can pass `GET /health` and still fail requests).
                if h.check_passes >= passes && h.check_down {
                    log::info!("member {} passes its health checks", self.route);
                    h.check_down = false;
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
            self.settle(&h);
        }
    }
}

/// An attempt in flight on a member (bybusyness counts these); holds the member's probe if
/// the attempt is one.
pub struct InFlight {
    member: Arc<Member>,
    index: usize,
    probe: Option<u64>,
}

impl InFlight {
    /// The member.
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// The member's place in the balancer.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(id) = self.probe {
            self.member.release_probe(id);
        }
    }
}
