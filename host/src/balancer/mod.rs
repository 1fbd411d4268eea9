//! The balancer: picks a member for an attempt. Sticky first (the member named by the routing
//! header, if it can take the request; `sticky_force` gives no fallback), then the active
//! members by lbmethod (smooth weighted round robin or fewest in flight), then the hot
//! standbys, then — when every member is in error — any member not yet tried (forcerecovery).

pub mod health;
pub mod member;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use member::{Ejection, InFlight, Member};

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
    /// Smooth WRR current weights, one per member.
    wrr: Mutex<Vec<i64>>,
    /// Passive ejection settings.
    pub ejection: Ejection,
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

    /// The member with this route.
    pub fn member(&self, route: &str) -> Option<&Arc<Member>> {
        self.by_route.get(route).map(|&i| &self.members[i])
    }

    /// Picks a member for an attempt. `sticky` is the route from the routing header; `tried`
    /// holds the members already tried for this request.
    pub fn pick(&self, sticky: Option<&str>, tried: &[usize]) -> Result<usize, PickError> {
        let now = Instant::now();
        if let Some(route) = sticky
            && let Some(&i) = self.by_route.get(route)
        {
            let m = &self.members[i];
            let takes = m.status() != MemberStatus::Disabled && m.is_healthy(now);
            if takes && !tried.contains(&i) {
                return Ok(i);
            }
            if self.sticky_force {
                return Err(PickError::StickyUnavailable(route.to_string()));
            }
        }
        let eligible = |i: usize, want: MemberStatus, healthy: bool| {
            let m = &self.members[i];
            !tried.contains(&i) && m.status() == want && (!healthy || m.is_healthy(now))
        };
        for want in [MemberStatus::Active, MemberStatus::HotStandby] {
            let c: Vec<usize> = (0..self.members.len())
                .filter(|&i| eligible(i, want, true))
                .collect();
            if !c.is_empty() {
                return Ok(self.choose(&c));
            }
        }
        // forcerecovery: every member that could take traffic is in error: try them anyway.
        for want in [MemberStatus::Active, MemberStatus::HotStandby] {
            let c: Vec<usize> = (0..self.members.len())
                .filter(|&i| eligible(i, want, false))
                .collect();
            if !c.is_empty() {
                return Ok(self.choose(&c));
            }
        }
        Err(PickError::NoMember)
    }

    fn choose(&self, candidates: &[usize]) -> usize {
        match self.lbmethod {
            LbMethod::Byrequests => self.smooth_wrr(candidates),
            LbMethod::Bybusyness => {
                let min = candidates
                    .iter()
                    .map(|&i| self.members[i].in_flight())
                    .min()
                    .unwrap_or(0);
                let idle: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| self.members[i].in_flight() == min)
                    .collect();
                self.smooth_wrr(&idle)
            }
        }
    }

    /// nginx's smooth weighted round robin over the candidates.
    fn smooth_wrr(&self, candidates: &[usize]) -> usize {
        let Ok(mut cur) = self.wrr.lock() else {
            return candidates[0];
        };
        let mut total = 0i64;
        let mut best = candidates[0];
        let mut best_val = i64::MIN;
        for &i in candidates {
            let w = i64::from(self.members[i].weight());
            cur[i] += w;
            total += w;
            if cur[i] > best_val {
                best_val = cur[i];
                best = i;
            }
        }
        cur[best] -= total;
        best
    }

    /// The member at an index.
    pub fn at(&self, i: usize) -> &Arc<Member> {
        &self.members[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{BoxFuture, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};
    use std::time::Duration;

    struct Nothing;
    impl Upstream for Nothing {
        fn send(
            &self,
            _: UpstreamRequest,
        ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
            Box::pin(async { Err(UpstreamError::Connect("test".into())) })
        }
        fn health_check(&self, _: Duration) -> BoxFuture<'static, Result<(), UpstreamError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn ej() -> Ejection {
        Ejection {
            interval: Duration::from_secs(60),
            backoff: 2.0,
            max_interval: Duration::from_secs(600),
        }
    }

    fn bal(spec: &[(&str, u32, MemberStatus)], force: bool) -> Balancer {
        let members = spec
            .iter()
            .map(|(r, w, s)| {
                Arc::new(Member::new(
                    r.to_string(),
                    format!("http://{r}"),
                    "127.0.0.1:1".parse().unwrap(),
                    Arc::new(Nothing),
                    *w,
                    *s,
                ))
            })
            .collect();
        Balancer::new(members, LbMethod::Byrequests, force, ej())
    }

    #[test]
    fn smooth_wrr_spreads_by_weight() {
        let b = bal(
            &[
                ("a", 5, MemberStatus::Active),
                ("b", 1, MemberStatus::Active),
                ("c", 1, MemberStatus::Active),
            ],
            false,
        );
        let picks: Vec<usize> = (0..7).map(|_| b.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        // nginx's smooth sequence for 5,1,1: a a b a c a a
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn sticky_drain_standby_disabled() {
        let b = bal(
            &[
                ("a", 1, MemberStatus::Active),
                ("d", 1, MemberStatus::Drain),
                ("h", 1, MemberStatus::HotStandby),
                ("x", 1, MemberStatus::Disabled),
            ],
            false,
        );
        assert_eq!(b.pick(Some("d"), &[]), Ok(1), "drain takes bound requests");
        assert_eq!(b.pick(Some("x"), &[]), Ok(0), "disabled takes nothing");
        for _ in 0..5 {
            assert_eq!(
                b.pick(None, &[]),
                Ok(0),
                "only the active member takes new ones"
            );
        }
        b.at(0).record_failure(&b.ejection, Instant::now(), "test");
        assert_eq!(
            b.pick(None, &[]),
            Ok(2),
            "hot standby when actives are down"
        );
        assert_eq!(b.pick(None, &[2]), Ok(0), "forcerecovery");
        assert_eq!(b.pick(None, &[0, 2]), Err(PickError::NoMember));
    }

    #[test]
    fn sticky_force() {
        let b = bal(
            &[
                ("a", 1, MemberStatus::Active),
                ("b", 1, MemberStatus::Active),
            ],
            true,
        );
        assert_eq!(b.pick(Some("a"), &[]), Ok(0));
        b.at(0).record_failure(&b.ejection, Instant::now(), "test");
        assert_eq!(
            b.pick(Some("a"), &[]),
            Err(PickError::StickyUnavailable("a".into()))
        );
        assert_eq!(
            b.pick(Some("nope"), &[]),
            Ok(1),
            "an unknown route balances normally"
        );
    }

    #[test]
    fn bybusyness_picks_the_least_busy() {
        let mut b = bal(
            &[
                ("a", 1, MemberStatus::Active),
                ("b", 1, MemberStatus::Active),
            ],
            false,
        );
        b.lbmethod = LbMethod::Bybusyness;
        let busy = b.at(0).begin();
        for _ in 0..4 {
            assert_eq!(b.pick(None, &[]), Ok(1), "a has one in flight");
        }
        drop(busy);
        let picks: Vec<usize> = (0..4).map(|_| b.pick(None, &[]).unwrap()).collect();
        assert!(
            picks.contains(&0) && picks.contains(&1),
            "idle members share: {picks:?}"
        );
    }

    #[test]
    fn backoff_grows() {
        let b = bal(&[("a", 1, MemberStatus::Active)], false);
        let now = Instant::now();
        b.at(0).record_failure(&b.ejection, now, "1");
        let first = b.at(0).health().error_until.unwrap() - now;
        b.at(0).record_failure(&b.ejection, now, "2");
        let second = b.at(0).health().error_until.unwrap() - now;
        assert_eq!(first, Duration::from_secs(60));
        assert_eq!(second, Duration::from_secs(120));
        assert!(!b.at(0).is_healthy(now));
        b.at(0).record_success();
        assert!(b.at(0).is_healthy(now));
    }
}
