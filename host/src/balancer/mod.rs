//! The balancer: picks a member for an attempt. Sticky first (the member named by the routing
//! header, if it can take the request; `sticky_force` gives no fallback), then the active
//! members by lbmethod (smooth weighted round robin or fewest in flight), then the hot
//! standbys, then — when every member is in error — any member not yet tried (forcerecovery).
//! A member whose retry interval has passed takes one request at a time (its probe) until it
//! answers: see [`member`].

pub mod health;
pub mod member;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use member::{Availability, Ejection, InFlight, Member};

use crate::config::{LbMethod, MemberStatus};

/// Why no member was picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// `sticky_force`: the sticky member cannot take the request.
    #[error("sticky member {0} unavailable (sticky_force)")]
    StickyUnavailable(String),
    /// No member can take the request.
    #[error("no member available")]
    NoMember,
}

/// The members and the picking state.
pub struct Balancer {
    members: Vec<Arc<Member>>,
    by_route: HashMap<String, usize>,
    lbmethod: LbMethod,
    sticky_force: bool,
    /// Smooth WRR current weights, one per member (held only for one pass over the members).
    wrr: Mutex<Vec<i64>>,
    /// Passive ejection settings.
    pub ejection: Ejection,
}

/// The members already tried for a request (a bit set; members beyond 128 are never marked,
/// and `maxattempts` ends the loop for them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tried(u128);

impl Tried {
    /// Marks member `i` as tried.
    pub fn add(&mut self, i: usize) {
        if let Some(bit) = 1u128.checked_shl(u32::try_from(i).unwrap_or(u32::MAX)) {
            self.0 |= bit;
        }
    }

    /// Whether member `i` was tried.
    pub fn contains(self, i: usize) -> bool {
        1u128
            .checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
            .is_some_and(|bit| self.0 & bit != 0)
    }
}

impl Balancer {
    /// A balancer over `members` (file order).
    pub fn new(
        members: Vec<Arc<Member>>,
        lbmethod: LbMethod,
        sticky_force: bool,
        ejection: Ejection,
    ) -> Self {
        let by_route = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.route.clone(), i))
            .collect();
        let wrr = Mutex::new(vec![0; members.len()]);
        Self {
            members,
            by_route,
            lbmethod,
            sticky_force,
            wrr,
            ejection,
        }
    }

    /// All members, in file order.
    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// After a reload: each member that `old` had too (same route and URL) takes over its run-time
    /// state ([`Member::inherit`]); new members start fresh.
    pub fn inherit(&self, old: &Balancer) {
        for member in &self.members {
            if let Some(before) = old.member(&member.route).filter(|m| m.url == member.url) {
                member.inherit(before);
            }
        }
    }

    /// The member with this route.
    pub fn member(&self, route: &str) -> Option<&Arc<Member>> {
        self.by_route.get(route).and_then(|&i| self.members.get(i))
    }

    /// Picks a member for an attempt and starts it there. `sticky` is the route from the
    /// routing header; `tried` holds the members already tried for this request.
    pub fn pick(&self, sticky: Option<&str>, tried: Tried) -> Result<InFlight, PickError> {
        self.pick_at(sticky, tried, Instant::now())
    }

    /// [`Self::pick`] at a given time (tests control the clock).
    pub fn pick_at(
        &self,
        sticky: Option<&str>,
        tried: Tried,
        now: Instant,
    ) -> Result<InFlight, PickError> {
        if let Some(route) = sticky
            && let Some(&i) = self.by_route.get(route)
            && let Some(m) = self.members.get(i)
        {
            if m.status() != MemberStatus::Disabled
                && !tried.contains(i)
                && let Some(probe) = self.takes(m, now)
            {
                return Ok(m.begin(i, probe));
            }
            if self.sticky_force {
                return Err(PickError::StickyUnavailable(route.to_string()));
            }
        }
        let mut skip = tried;
        for want in [MemberStatus::Active, MemberStatus::HotStandby] {
            loop {
                let healthy = |i: usize, m: &Member| {
                    !skip.contains(i)
                        && m.status() == want
                        && m.availability(now) != Availability::Down
                };
                let Some(i) = self.choose(healthy) else { break };
                let Some(m) = self.members.get(i) else { break };
                match self.takes(m, now) {
                    Some(probe) => return Ok(m.begin(i, probe)),
                    // Another request took its probe meanwhile: choose again without it.
                    None => skip.add(i),
                }
            }
        }
        // forcerecovery: every member that could take traffic is in error: try them anyway, the
        // session's own member first (where its state is).
        if let Some(route) = sticky
            && let Some(&i) = self.by_route.get(route)
            && let Some(m) = self.members.get(i)
            && m.status() != MemberStatus::Disabled
            && !tried.contains(i)
        {
            return Ok(m.begin(i, None));
        }
        for want in [MemberStatus::Active, MemberStatus::HotStandby] {
            let any = |i: usize, m: &Member| !tried.contains(i) && m.status() == want;
            if let Some(i) = self.choose(any)
                && let Some(m) = self.members.get(i)
            {
                return Ok(m.begin(i, None));
            }
        }
        Err(PickError::NoMember)
    }

    /// Whether `m` takes a request now: `Some(None)` if it is up, `Some(Some(probe))` if it is
    /// recovering and this request is its probe, `None` if not.
    fn takes(&self, m: &Member, now: Instant) -> Option<Option<u64>> {
        match m.availability(now) {
            Availability::Up => Some(None),
            Availability::Recovering => m.claim_probe(now).map(Some),
            Availability::Down => None,
        }
    }

    /// Chooses among the members for which `candidate` holds, by lbmethod.
    fn choose(&self, candidate: impl Fn(usize, &Member) -> bool) -> Option<usize> {
        match self.lbmethod {
            LbMethod::Byrequests => self.smooth_wrr(candidate),
            LbMethod::Bybusyness => {
                let min = self
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(i, m)| candidate(*i, m))
                    .map(|(_, m)| m.in_flight())
                    .min()?;
                self.smooth_wrr(|i, m| candidate(i, m) && m.in_flight() == min)
            }
        }
    }

    /// nginx's smooth weighted round robin over the candidates.
    fn smooth_wrr(&self, candidate: impl Fn(usize, &Member) -> bool) -> Option<usize> {
        let mut cur = match self.wrr.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        let mut best_val = i64::MIN;
        for (i, (m, c)) in self.members.iter().zip(cur.iter_mut()).enumerate() {
            if !candidate(i, m) {
                continue;
            }
            let w = i64::from(m.weight());
            *c += w;
            total += w;
            if *c > best_val {
                best_val = *c;
                best = Some(i);
            }
        }
        if let Some(c) = best.and_then(|b| cur.get_mut(b)) {
            *c -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests;
