//! The route_suffix filter's counters (`proxy_define_metric`): one per kind of decision, defined
//! once per VM when the plugin is first configured, incremented per request or response.

use crate::adapter;

/// A session `Set-Cookie` whose route was rewritten (or appended).
pub const REWRITTEN: &str = "suffix_rewritten";
/// A `Set-Cookie` added to move the client to the route that served it.
pub const ADDED: &str = "suffix_added";
/// A `Location` whose `;jsessionid=` route was rewritten.
pub const LOCATION_REWRITTEN: &str = "suffix_location_rewritten";
/// A response left as it was.
pub const UNCHANGED: &str = "suffix_unchanged";
/// A response whose backend (`upstream.address`) is not in `routes`, or unknown.
pub const UNKNOWN_UPSTREAM: &str = "suffix_unknown_upstream";
/// A request whose session id lost its `.route` before the backend saw it (strip/append).
pub const STRIPPED: &str = "suffix_stripped";

/// What a counter counts (its index in [`NAMES`]).
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// [`REWRITTEN`].
    Rewritten,
    /// [`ADDED`].
    Added,
    /// [`LOCATION_REWRITTEN`].
    LocationRewritten,
    /// [`UNCHANGED`].
    Unchanged,
    /// [`UNKNOWN_UPSTREAM`].
    UnknownUpstream,
    /// [`STRIPPED`].
    Stripped,
}

const NAMES: [&str; 6] = [
    REWRITTEN,
    ADDED,
    LOCATION_REWRITTEN,
    UNCHANGED,
    UNKNOWN_UPSTREAM,
    STRIPPED,
];

/// The filter's counters, indexed by [`Counter`].
pub type Counters = adapter::Counters<{ NAMES.len() }>;

/// Defines every counter with the host.
pub fn define() -> Counters {
    Counters::define(NAMES)
}
