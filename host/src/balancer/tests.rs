//! The balancer's picking rules: smooth WRR, sticky with fallback, drain, hot standby,
//! forcerecovery, sticky_force, bybusyness, backoff, and one probe at a time on recovery.

use std::time::Duration;

use super::*;
use crate::recycled::Recycled;
use crate::upstream::{BoxFuture, Sending, Upstream, UpstreamError, UpstreamRequest};

struct Nothing;
impl Upstream for Nothing {
    fn send(&self, _: UpstreamRequest) -> Sending {
        Recycled::new(async { Err(UpstreamError::Connect("test".into())) })
    }
    fn health_check(&self, _: Duration) -> BoxFuture<'static, Result<(), UpstreamError>> {
        Box::pin(async { Ok(()) })
    }
}

const MINUTE: Duration = Duration::from_secs(60);

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
    let ej = Ejection {
        interval: MINUTE,
        backoff: 2.0,
        max_interval: 10 * MINUTE,
    };
    Balancer::new(members, LbMethod::Byrequests, force, ej)
}

fn tried(list: &[usize]) -> Tried {
    let mut t = Tried::default();
    for &i in list {
        t.add(i);
    }
    t
}

/// The index picked (the attempt ends at once).
fn pick(b: &Balancer, sticky: Option<&str>, t: &[usize]) -> Result<usize, PickError> {
    b.pick(sticky, tried(t)).map(|g| g.index())
}

fn fail(b: &Balancer, i: usize, now: Instant) {
    b.at(i).record_failure(&b.ejection, now, "test");
}

impl Balancer {
    fn at(&self, i: usize) -> &Arc<Member> {
        &self.members[i]
    }
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
    let picks: Vec<usize> = (0..7).map(|_| pick(&b, None, &[]).unwrap()).collect();
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
    assert_eq!(
        pick(&b, Some("d"), &[]),
        Ok(1),
        "drain takes bound requests"
    );
    assert_eq!(pick(&b, Some("x"), &[]), Ok(0), "disabled takes nothing");
    for _ in 0..5 {
        assert_eq!(
            pick(&b, None, &[]),
            Ok(0),
            "only the active member takes new ones"
        );
    }
    fail(&b, 0, Instant::now());
    assert_eq!(
        pick(&b, None, &[]),
        Ok(2),
        "hot standby when actives are down"
    );
    assert_eq!(pick(&b, None, &[2]), Ok(0), "forcerecovery");
    assert_eq!(pick(&b, None, &[0, 2]), Err(PickError::NoMember));
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
    assert_eq!(pick(&b, Some("a"), &[]), Ok(0));
    fail(&b, 0, Instant::now());
    assert_eq!(
        pick(&b, Some("a"), &[]),
        Err(PickError::StickyUnavailable("a".into()))
    );
    assert_eq!(
        pick(&b, Some("nope"), &[]),
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
    let busy = b.pick(Some("a"), Tried::default()).unwrap();
    for _ in 0..4 {
        assert_eq!(pick(&b, None, &[]), Ok(1), "a has one in flight");
    }
    drop(busy);
    let picks: Vec<usize> = (0..4).map(|_| pick(&b, None, &[]).unwrap()).collect();
    assert!(
        picks.contains(&0) && picks.contains(&1),
        "idle members share: {picks:?}"
    );
}

#[test]
fn backoff_grows_per_ejection_not_per_concurrent_failure() {
    let b = bal(&[("a", 1, MemberStatus::Active)], false);
    let now = Instant::now();
    // Fifty requests under way when the member died all fail now: one ejection.
    for _ in 0..50 {
        fail(&b, 0, now);
    }
    assert_eq!(b.at(0).health().error_until, Some(now + MINUTE));
    assert_eq!(b.at(0).errors(), 50, "every failure is counted");
    // The retry interval passes; the probe fails: the second ejection is twice as long.
    let later = now + MINUTE;
    let probe = b.pick_at(None, Tried::default(), later).unwrap();
    fail(&b, 0, later);
    drop(probe);
    assert_eq!(b.at(0).health().error_until, Some(later + 2 * MINUTE));
    assert!(!b.at(0).is_healthy(later));
    b.at(0).record_success();
    assert!(b.at(0).is_healthy(later));
    assert_eq!(b.at(0).health().failures, 0);
}

#[test]
fn a_recovering_member_takes_one_probe_at_a_time() {
    let b = bal(
        &[
            ("a", 1, MemberStatus::Active),
            ("b", 1, MemberStatus::Active),
        ],
        false,
    );
    let now = Instant::now();
    fail(&b, 0, now);
    let later = now + MINUTE;
    let at = |sticky| {
        b.pick_at(sticky, Tried::default(), later)
            .map(|g| g.index())
    };
    let probe = b.pick_at(Some("a"), Tried::default(), later).unwrap();
    assert_eq!(
        probe.index(),
        0,
        "the retry interval passed: a takes a probe"
    );
    for _ in 0..6 {
        assert_eq!(at(None), Ok(1), "no herd while the probe is under way");
        assert_eq!(at(Some("a")), Ok(1), "sticky requests fail over meanwhile");
    }
    // The probe's client went away without a verdict: the slot is free again.
    drop(probe);
    let probe = b.pick_at(Some("a"), Tried::default(), later).unwrap();
    assert_eq!(probe.index(), 0);
    b.at(0).record_success();
    drop(probe);
    let picks: Vec<usize> = (0..4).map(|_| at(None).unwrap()).collect();
    assert!(
        picks.contains(&0) && picks.contains(&1),
        "a is back: {picks:?}"
    );
}

#[test]
fn a_reloaded_member_inherits_its_error_but_not_the_probe_in_flight() {
    let spec = [
        ("a", 1, MemberStatus::Active),
        ("b", 1, MemberStatus::Active),
    ];
    let old = bal(&spec, false);
    let now = Instant::now();
    fail(&old, 0, now);
    let later = now + MINUTE;
    let probe = old.pick_at(Some("a"), Tried::default(), later).unwrap();
    assert_eq!(probe.index(), 0, "the old a has its probe under way");
    old.at(1).set_weight(5);

    let new = bal(&spec, false);
    new.inherit(&old);
    let at = |when| {
        new.pick_at(Some("a"), Tried::default(), when)
            .map(|g| g.index())
    };
    assert_eq!(at(now), Ok(1), "a is still in error after the reload");
    assert_eq!(at(later), Ok(0), "the new a takes its own probe");
    assert_eq!(new.at(1).weight(), 5, "the admin's weight");
    assert_eq!(new.at(0).errors(), old.at(0).errors());

    // A weight the new file changes itself is the file's.
    let changed = bal(
        &[
            ("a", 1, MemberStatus::Active),
            ("b", 2, MemberStatus::Active),
        ],
        false,
    );
    changed.inherit(&old);
    assert_eq!(changed.at(1).weight(), 2);
    drop(probe);
}

#[test]
fn with_every_member_in_error_a_sticky_request_tries_its_own_member_first() {
    let b = bal(
        &[
            ("a", 1, MemberStatus::Active),
            ("b", 1, MemberStatus::Active),
            ("c", 1, MemberStatus::Disabled),
        ],
        false,
    );
    let now = Instant::now();
    fail(&b, 0, now);
    fail(&b, 1, now);
    for _ in 0..4 {
        assert_eq!(pick(&b, Some("b"), &[]), Ok(1), "b holds the session");
        assert_eq!(pick(&b, Some("a"), &[]), Ok(0), "a holds the session");
    }
    assert_eq!(pick(&b, Some("b"), &[1]), Ok(0), "b tried: the others");
    assert_eq!(
        pick(&b, Some("c"), &[]).map(|i| i < 2),
        Ok(true),
        "a disabled member is not forced"
    );
}

#[test]
fn tried_is_a_set() {
    let mut t = Tried::default();
    t.add(0);
    t.add(127);
    t.add(500);
    assert!(t.contains(0) && t.contains(127));
    assert!(!t.contains(1) && !t.contains(500));
}
