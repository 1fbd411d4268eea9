//! The route_suffix filter's counters (`proxy_define_metric`): one per kind of decision, defined
//! once per VM when the plugin is first configured, incremented per request or response.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

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

/// The defined counters' ids (`None` where the host refused one: counting is then skipped).
#[derive(Debug)]
pub struct Counters {
    ids: [Option<u32>; NAMES.len()],
}

impl Counters {
    /// Defines every counter with the host.
    pub fn define() -> Self {
        Counters {
            ids: NAMES.map(|name| hostcalls::define_metric(MetricType::Counter, name).ok()),
        }
    }

    /// Adds `n` to `counter` (nothing for 0).
    pub fn add(&self, counter: Counter, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(Some(id)) = self.ids.get(counter as usize) {
            // A host that no longer knows the metric is no reason to fail the request.
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
