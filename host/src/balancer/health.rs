//! Active health checks: one task per member, each holding only a weak reference to its
//! balancer, so that a reload (a new balancer) ends the old checks.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Balancer;

/// Active check settings.
#[derive(Debug, Clone, Copy)]
pub struct CheckSettings {
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Passes in a row that bring a member back.
    pub passes: u32,
    /// Fails in a row that take it out.
    pub fails: u32,
}

/// Starts the checks of every member (needs a tokio runtime).
pub fn spawn(balancer: &Arc<Balancer>, settings: CheckSettings) {
    for i in 0..balancer.members().len() {
        let weak = Arc::downgrade(balancer);
        tokio::spawn(run(weak, i, settings));
    }
}

async fn run(balancer: Weak<Balancer>, index: usize, s: CheckSettings) {
    let mut tick = tokio::time::interval(s.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(b) = balancer.upgrade() else { return };
        let Some(member) = b.members().get(index).cloned() else {
            return;
        };
        drop(b);
        let started = Instant::now();
        let result = member.upstream.health_check(s.timeout).await;
        let latency = started.elapsed();
        match result {
            Ok(()) => member.record_check(true, latency, s.passes, s.fails, ""),
            Err(e) => member.record_check(false, latency, s.passes, s.fails, &e.to_string()),
        }
    }
}
