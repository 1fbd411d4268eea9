//! keel's `session` proxy-wasm filter: session state kept in a store (memcached-session-manager's
//! semantics, at the proxy), so that a backend can be stateless and a session survives the death
//! of the backend that served it. A thin adapter around `keel_filter_logic::session`; the store is
//! reached by `dispatch_http_call` to the callout upstream `store_upstream` (keel serves it in
//! process, stock Envoy through `keel bridge`; API: `notes/store-api.md`).
//!
//! # The contract with the backend
//!
//! keel owns the session id when the filter is on; the backend never creates or parses one.
//!
//! * **The id.** The cookie `cookie_name` (default `JSESSIONID`; or the `;jsessionid=` path
//!   parameter, found as the other filters find ids, the URL first) holds
//!   `<id>-<node>.<route>`: `id` 32 upper-case hex digits (128 bits from the OS CSPRNG, issued by
//!   the store), `node` the store node holding the record, `route` the member that served. Only
//!   ids of the form `^[0-9A-F]{32}-<node>` (+ optional `.route`) are looked up; anything else is
//!   treated as no session and never reaches the store.
//! * **Client headers.** Every request header whose name starts with `keel-session` is removed,
//!   on every request (ignored paths too). A client can neither forge nor read state.
//! * **Ignored paths.** A request whose whole path (without the query) matches `ignore_pattern`
//!   (default `.*\.(ico|png|gif|jpg|css|js)$`, msm's `requestUriIgnorePattern`) neither loads nor
//!   stores.
//! * **Load.** With a valid id the request waits for `GET /v1/sessions/<id>-<node>` (which also
//!   touches the idle timeout, `idle_timeout_seconds`). Found: the backend gets
//!   `keel-session: <state>` (exactly as it last sent it) and `keel-session-id: <id>` (the 32 hex
//!   digits, the same after a relocation). Not found (expired, forged): no session, no header —
//!   the id is never adopted, and new state gets a fresh id. Store unavailable (503, failed call,
//!   timeout `store_timeout_ms`): the backend gets `keel-session-store: unavailable` and no state
//!   (fail open, counted); with `fail_closed: true` the client gets a local 503 instead.
//! * **The backend's answer.** `keel-session: <state>` creates or replaces the state (one header,
//!   at most `max_state_bytes` of visible ASCII: base64 fits); `keel-session-invalidate` (any
//!   value) deletes the session and expires the cookie; `keel-session-rotate` (any value) gives
//!   the session a new id (after a login: fixation protection), with the new state if one is sent,
//!   else the same. No state header, or the same state again: no write (the load touched the idle
//!   timer). Invalidation wins over rotation, rotation over a save. Every `keel-session*` header
//!   is removed before the response reaches the client.
//! * **Bad state: a local 502.** A state header that is too long, not visible ASCII, or repeated
//!   is not stored; it is counted and logged, and the client gets a local 502 instead of the
//!   backend's response — passing the response on would lose the backend's change silently.
//! * **Concurrent writes: the first writer wins.** A save carries the CAS token of its load. If
//!   another request of the same session stored a change in between, the store answers 409 and
//!   this later write is dropped: counted (`session_cas_conflicts`) and logged. The backend sees
//!   the state that won on the session's next request. A save whose record is gone meanwhile
//!   (expired, invalidated: 404) stores the state under a fresh id.
//! * **Cookies.** A new or moved id is sent as
//!   `Set-Cookie: <cookie_name>=<id>-<node>.<route>; Path=/; HttpOnly` (attributes from `cookie`:
//!   `path`, `domain`, `http_only`, `secure`, `same_site`), `route` naming the member that served
//!   (from `upstream.address` through `routes`, as route_suffix learns it). A record the store
//!   moved to another node because its node was down gets the client the cookie with the new node.
//!   When keel sets the cookie, any other `Set-Cookie` of `cookie_name` in the response (a
//!   backend's own session id) is dropped: the response sets the session cookie once.
//! * **Writes are synchronous** by default: the response waits until the store has answered, so
//!   nothing is lost if the proxy dies right after. `write_mode: async` lets saves and deletes go
//!   on at once; a create or rotation still waits, since the new id comes from the store.
//!
//! Configuration: `keel_filter_logic::config::session`. Counters: `metrics.rs`. The stream
//! (load, write, the store's answers): `stream.rs`.

#[path = "../../shared/adapter.rs"]
mod adapter;
#[path = "../../shared/edits.rs"]
mod edits;
mod metrics;
mod stream;
#[path = "../../shared/upstream.rs"]
mod upstream;

use std::rc::Rc;

use keel_filter_logic::config::{ConfigError, SessionConfig};
use proxy_wasm::traits::HttpContext;

use metrics::Counters;
use stream::Stream;

// The module's entry point (`_initialize`), as the SDK's macro writes it.
#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        crate::adapter::start::<crate::Session>();
    }}
}

/// The filter, for the shared root context.
struct Session;

impl adapter::Filter for Session {
    type Config = SessionConfig;
    type Counters = Counters;
    const NAME: &'static str = "session";

    fn parse(bytes: &[u8]) -> Result<SessionConfig, ConfigError> {
        SessionConfig::from_json(bytes)
    }

    fn summary(config: &SessionConfig) -> String {
        format!(
            "store {}, cookie {}, idle timeout {} s, {} routes, {:?} writes, fail {}",
            config.store_upstream,
            config.cookie_name,
            config.idle_timeout_seconds,
            config.routes.len(),
            config.write_mode,
            if config.fail_closed { "closed" } else { "open" },
        )
    }

    fn define_counters() -> Counters {
        metrics::define()
    }

    fn stream(
        config: Option<Rc<SessionConfig>>,
        counters: Option<Rc<Counters>>,
    ) -> Box<dyn HttpContext> {
        Box::new(Stream::new(config, counters))
    }
}
