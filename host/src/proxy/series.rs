//! The per-request metrics of a generation, each series looked up once instead of once per
//! request (`with_label_values` hashes the labels and takes the vector's lock): each member's
//! `keel_upstream_seconds` histogram and its `keel_requests_total` counters by status, and the
//! counters of requests no member answered (`member="-"`). A series still appears when its
//! first request is counted; a status past 599 is looked up each time.

use std::sync::OnceLock;

use http::StatusCode;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use crate::metrics::Metrics;

/// The statuses kept: 100 to 599.
const STATUSES: std::ops::Range<u16> = 100..600;

/// One member's series (or those of no member).
struct Member {
    route: String,
    seconds: OnceLock<Histogram>,
    /// By status, from 100.
    requests: Box<[OnceLock<IntCounter>]>,
}

/// The series of a generation's members, by their place in the balancer.
pub(super) struct Series {
    requests: IntCounterVec,
    seconds: HistogramVec,
    /// The members', then the one for no member.
    members: Vec<Member>,
}

impl Series {
    /// The series of members `routes` (in balancer order).
    pub(super) fn new<'a>(metrics: &Metrics, routes: impl Iterator<Item = &'a str>) -> Self {
        let member = |route: &str| Member {
            route: route.to_owned(),
            seconds: OnceLock::new(),
            requests: STATUSES.map(|_| OnceLock::new()).collect(),
        };
        let mut members: Vec<Member> = routes.map(member).collect();
        members.push(member("-"));
        Series {
            requests: metrics.requests.clone(),
            seconds: metrics.upstream_seconds.clone(),
            members,
        }
    }

    /// The series of the member `(index, route)` (none: `-`), if kept.
    fn member(&self, member: Option<(usize, &str)>) -> Option<&Member> {
        match member {
            Some((index, route)) => self
                .members
                .get(index)
                .filter(|m| m.route == route && index + 1 < self.members.len()),
            None => self.members.last(),
        }
    }

    /// Counts a request answered with `status` by the member `(index, route)` (none: `-`).
    pub(super) fn request(&self, member: Option<(usize, &str)>, status: StatusCode) {
        let route = member.map_or("-", |(_, route)| route);
        let make = || self.requests.with_label_values(&[route, status.as_str()]);
        let kept = status
            .as_u16()
            .checked_sub(STATUSES.start)
            .and_then(|at| self.member(member)?.requests.get(usize::from(at)));
        match kept {
            Some(counter) => counter.get_or_init(make).inc(),
            None => make().inc(),
        }
    }

    /// Records the time from attempt to response head of the member `(index, route)`.
    pub(super) fn upstream_seconds(&self, index: usize, route: &str, seconds: f64) {
        let make = || self.seconds.with_label_values(&[route]);
        match self.member(Some((index, route))) {
            Some(member) => member.seconds.get_or_init(make).observe(seconds),
            None => make().observe(seconds),
        }
    }
}
