//! keel's `route_suffix` proxy-wasm filter: a thin adapter around
//! `keel_filter_logic::route_suffix`.
//!
//! On request headers it remembers the session id the client holds (and in strip/append mode
//! takes `.route` off the cookie and the `;jsessionid=` parameter). On response headers it learns
//! the backend that served from the `upstream.address` property, maps it to a route through the
//! configured `routes`, and makes the client's id name that route: `Set-Cookie` rewritten, a
//! `Set-Cookie` added after a failover, `Location` rewritten. Plugin configuration: see
//! `keel_filter_logic::config::route_suffix`.

#[path = "../../shared/adapter.rs"]
mod adapter;
#[path = "../../shared/edits.rs"]
mod edits;
mod metrics;
#[path = "../../shared/presence.rs"]
mod presence;
#[path = "../../shared/upstream.rs"]
mod upstream;

use std::rc::Rc;

use keel_filter_logic::config::{ConfigError, RouteSuffixConfig};
use keel_filter_logic::fingerprint::fingerprint;
use keel_filter_logic::route_suffix::{self, ClientSession};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use metrics::{Counter, Counters};

// The module's entry point (`_initialize`), as the SDK's macro writes it.
#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        crate::adapter::start::<crate::RouteSuffix>();
    }}
}

/// The filter, for the shared root context.
struct RouteSuffix;

impl adapter::Filter for RouteSuffix {
    type Config = RouteSuffixConfig;
    type Counters = Counters;
    const NAME: &'static str = "route_suffix";

    fn parse(bytes: &[u8]) -> Result<RouteSuffixConfig, ConfigError> {
        RouteSuffixConfig::from_json(bytes)
    }

    fn summary(config: &RouteSuffixConfig) -> String {
        format!(
            "mode {:?}, cookie {}, parameter {}, {} routes",
            config.mode,
            config.cookie_name,
            config.path_parameter,
            config.routes.len(),
        )
    }

    fn define_counters() -> Counters {
        metrics::define()
    }

    fn stream(
        config: Option<Rc<RouteSuffixConfig>>,
        counters: Option<Rc<Counters>>,
    ) -> Box<dyn HttpContext> {
        Box::new(Stream {
            config,
            counters,
            client: ClientSession::default(),
        })
    }
}

/// One HTTP stream: remembers, between request and response, what session the client holds.
struct Stream {
    /// `None` only if a host creates streams for a plugin it never configured: pass through.
    config: Option<Rc<RouteSuffixConfig>>,
    counters: Option<Rc<Counters>>,
    client: ClientSession,
}

impl Stream {
    fn count(&self, counter: Counter, n: usize) {
        if let Some(counters) = &self.counters {
            counters.add(counter as usize, n);
        }
    }

    /// The route of the backend that served, from `upstream.address`.
    fn served_route(config: &RouteSuffixConfig) -> Option<&str> {
        config.route_for_address(&upstream::address()?)
    }
}

/// Length and fingerprint of an id for log lines (never the id itself).
fn id_summary(id: Option<&[u8]>) -> (usize, u32) {
    id.map_or((0, 0), |id| (id.len(), fingerprint(id)))
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = adapter::HeaderMap::read(MapType::HttpRequestHeaders);
        let plan = route_suffix::on_request(&config, &headers.pairs());
        let stripped = plan.new_path.is_some() || plan.new_cookie.is_some();
        if let Some(path) = &plan.new_path {
            self.set_http_request_header_bytes(":path", Some(path));
        }
        if let Some(cookie) = &plan.new_cookie {
            // Every cookie header goes; one joined header with the stripped id comes back.
            self.set_http_request_header_bytes("cookie", None);
            self.add_http_request_header_bytes("cookie", cookie);
        }
        self.client = plan.client;
        if stripped {
            self.count(Counter::Stripped, 1);
        }
        if log::log_enabled!(log::Level::Debug) {
            let (len, fp) = id_summary(self.client.cookie_id.as_deref());
            log::debug!(
                "route_suffix: request cookie_id_len={len} cookie_id_fp={fp:08x} path_id={} stripped={stripped}",
                self.client.path_id.is_some(),
            );
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Some(served) = Self::served_route(&config) else {
            self.count(Counter::UnknownUpstream, 1);
            log::debug!("route_suffix: response from a backend not in routes: unchanged");
            return Action::Continue;
        };
        // Most responses carry neither Set-Cookie nor Location: the whole map is read only when
        // there is something in it to rewrite.
        let headers = presence::read_if_any(
            MapType::HttpResponseHeaders,
            &route_suffix::RESPONSE_HEADERS_READ,
        );
        let plan = route_suffix::on_response(&config, served, &self.client, &headers.pairs());
        for edit in &plan.edits {
            edits::apply_to_response(edit);
        }
        self.count(Counter::Rewritten, plan.cookies_rewritten);
        self.count(Counter::Added, usize::from(plan.cookie_added));
        self.count(Counter::LocationRewritten, plan.locations_rewritten);
        self.count(Counter::Unchanged, usize::from(plan.is_unchanged()));
        log::debug!(
            "route_suffix: response served_by={served} set_cookie_rewritten={} set_cookie_added={} location_rewritten={}",
            plan.cookies_rewritten,
            plan.cookie_added,
            plan.locations_rewritten,
        );
        Action::Continue
    }
}
