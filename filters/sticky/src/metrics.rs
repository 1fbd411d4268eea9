//! The sticky filter's counters (`proxy_define_metric`): one per decision outcome, defined once
//! per VM when the plugin is first configured, incremented per request.

use crate::adapter;
use keel_filter_logic::sticky::StickyOutcome;

/// A valid id with a known route: the routing header was set.
pub const ROUTED: &str = "sticky_routed";
/// No session id in the request.
pub const NO_SESSION: &str = "sticky_no_session";
/// A valid id without a route suffix.
pub const NO_ROUTE: &str = "sticky_no_route";
/// A route the `routes` map does not know.
pub const UNKNOWN_ROUTE: &str = "sticky_unknown_route";
/// Session id candidates, none valid.
pub const INVALID_ID: &str = "sticky_invalid_id";
/// The client sent the routing header itself (it was removed).
pub const CLIENT_HEADER_REMOVED: &str = "sticky_client_header_removed";

/// What a counter counts (its index in [`NAMES`]).
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// [`ROUTED`].
    Routed,
    /// [`NO_SESSION`].
    NoSession,
    /// [`NO_ROUTE`].
    NoRoute,
    /// [`UNKNOWN_ROUTE`].
    UnknownRoute,
    /// [`INVALID_ID`].
    InvalidId,
    /// [`CLIENT_HEADER_REMOVED`].
    ClientHeaderRemoved,
}

const NAMES: [&str; 6] = [
    ROUTED,
    NO_SESSION,
    NO_ROUTE,
    UNKNOWN_ROUTE,
    INVALID_ID,
    CLIENT_HEADER_REMOVED,
];

impl From<StickyOutcome> for Counter {
    fn from(outcome: StickyOutcome) -> Self {
        match outcome {
            StickyOutcome::Routed => Counter::Routed,
            StickyOutcome::NoSession => Counter::NoSession,
            StickyOutcome::NoRoute => Counter::NoRoute,
            StickyOutcome::UnknownRoute => Counter::UnknownRoute,
            StickyOutcome::InvalidId => Counter::InvalidId,
        }
    }
}

/// The filter's counters, indexed by [`Counter`].
pub type Counters = adapter::Counters<{ NAMES.len() }>;

/// Defines every counter with the host.
pub fn define() -> Counters {
    Counters::define(NAMES)
}
