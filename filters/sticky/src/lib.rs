//! keel's `sticky` proxy-wasm filter: a thin adapter around `keel_filter_logic::sticky`.
//!
//! On request headers it finds the session id (configured path parameters, then cookies), takes
//! its route and names it in the routing header (the route, or base64 of its `ip:port` for Envoy's
//! `stateful_session`). A routing header the client sent is always removed first. Plugin
//! configuration: see `keel_filter_logic::config::sticky`.

#[path = "../../shared/adapter.rs"]
mod adapter;
mod metrics;

use std::rc::Rc;

use keel_filter_logic::config::{ConfigError, StickyConfig};
use keel_filter_logic::sticky::{self, StickyDecision};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use metrics::{Counter, Counters};

// The module's entry point (`_initialize`), as the SDK's macro writes it.
#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        crate::adapter::start::<crate::Sticky>();
    }}
}

/// The filter, for the shared root context.
struct Sticky;

impl adapter::Filter for Sticky {
    type Config = StickyConfig;
    type Counters = Counters;
    const NAME: &'static str = "sticky";

    fn parse(bytes: &[u8]) -> Result<StickyConfig, ConfigError> {
        StickyConfig::from_json(bytes)
    }

    fn summary(config: &StickyConfig) -> String {
        format!(
            "header {}, {} cookie names, {} path parameters, {} routes",
            config.header,
            config.cookie_names.len(),
            config.path_parameters.len(),
            config.routes.as_ref().map_or(0, Vec::len),
        )
    }

    fn define_counters() -> Counters {
        metrics::define()
    }

    fn stream(
        config: Option<Rc<StickyConfig>>,
        counters: Option<Rc<Counters>>,
    ) -> Box<dyn HttpContext> {
        Box::new(Stream { config, counters })
    }
}

/// One HTTP stream.
struct Stream {
    /// `None` only if a host creates streams for a plugin it never configured: pass through.
    config: Option<Rc<StickyConfig>>,
    counters: Option<Rc<Counters>>,
}

impl Stream {
    fn count(&self, counter: Counter) {
        if let Some(counters) = &self.counters {
            counters.add(counter as usize, 1);
        }
    }

    fn log(decision: &StickyDecision) {
        // Only validated data: the outcome, the source, a route of [A-Za-z0-9_.-], the id's
        // length and fingerprint. Never the id or any other client bytes.
        log::debug!(
            "sticky: {} source={} route={} header={} id_len={} id_fp={:08x} client_header={}",
            decision.outcome.as_str(),
            decision.source.map_or("-", |s| s.as_str()),
            decision.route.unwrap_or("-"),
            decision.header_value.is_some(),
            decision.id_len(),
            decision.id_fingerprint(),
            decision.client_sent_header,
        );
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = adapter::HeaderMap::read(MapType::HttpRequestHeaders);
        let decision = sticky::decide(&config, &headers.pairs());
        if decision.client_sent_header {
            // Removes every copy; adding afterwards leaves exactly one, ours.
            self.set_http_request_header_bytes(&config.header, None);
            self.count(Counter::ClientHeaderRemoved);
        }
        if let Some(value) = decision.header_value {
            self.add_http_request_header_bytes(&config.header, value.as_bytes());
        }
        self.count(decision.outcome.into());
        Self::log(&decision);
        Action::Continue
    }
}
