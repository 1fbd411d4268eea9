//! The `session` filter's decisions: session state kept in a store (memcached-session-manager's
//! semantics, at the proxy), reached with `dispatch_http_call` ([`store_api`]).
//!
//! The contract with the backend (keel owns the session id when the filter is on):
//!
//! * The cookie (`cookie_name`, or the `;jsessionid=` path parameter, found as the other filters
//!   find ids: [`crate::lookup`]) holds `<id>-<node>.<route>`: `id` 32 upper-case hex digits
//!   issued by the store, `node` the store node that holds the record, `route` the member that
//!   serves the session. Only ids of that form are looked up ([`key`]); any other is no session
//!   and never reaches the store. The backend never creates or parses an id.
//! * Every client header whose name starts with `keel-session` is removed from the request, on
//!   every request. A request whose path (without the query) matches `ignore_pattern` neither
//!   loads nor stores.
//! * With a session the store knows, the backend gets `keel-session: <state>` (exactly as it sent
//!   it) and `keel-session-id: <id>` (the 32 hex digits). An unknown or expired id gets nothing,
//!   and is never adopted: new state then gets a fresh id. When the store cannot be reached the
//!   backend gets `keel-session-store: unavailable` and no state (fail open), or, with
//!   `fail_closed`, the client gets a local 503.
//! * In its response the backend creates or replaces the state with `keel-session: <state>` (at
//!   most `max_state_bytes` of visible ASCII, one header), deletes it with
//!   `keel-session-invalidate` (any value; the cookie is expired too), and asks for a new id
//!   (after a login: fixation protection) with `keel-session-rotate` (with or without new state).
//!   No `keel-session` header, or the same state again: no write (the load touched the idle
//!   timer). Invalidation wins over rotation, rotation over a plain save. Every `keel-session*`
//!   header is removed before the response reaches the client.
//! * A state that is too large, not visible ASCII or sent twice is not stored: it is counted,
//!   logged, and the response is replaced by a local 502 — the backend's change would otherwise
//!   be lost without anyone knowing.
//! * Compare-and-set: a save carries the CAS token of the load. When another request of the same
//!   session wrote in between (409), the first writer is kept and the later write is dropped,
//!   counted and logged — the backend that lost sees its state again on the next request. A save
//!   whose record is gone (404: expired or invalidated meanwhile) creates the state under a fresh
//!   id.
//! * A new or moved id reaches the client as
//!   `Set-Cookie: <cookie_name>=<id>-<node>.<route>; Path=/; HttpOnly` (attributes from
//!   `cookie`), `route` naming the member that served. A record the store moved to another node
//!   (its node was down) gets the client a cookie with the new node.
//! * The response waits for the store's answer to a write (`write_mode: sync`); with `async`,
//!   saves and deletes go on at once, while a create or rotation still waits for its new id.
//!
//! [`request`] plans the request and reads the load's answer; [`response`] decides the write and
//! reads its answer. Both are pure: the adapter (`filters/session`) only moves headers.

pub mod key;
pub mod request;
pub mod response;
pub mod store_api;

pub use key::StoreKey;
pub use request::{LoadEffect, LoadOutcome, Loaded, RequestPlan, on_load_answer, on_request};
pub use response::{
    BackendSaid, Decision, ResponsePlan, StateError, WriteOutcome, WriteResult, on_response,
    on_write_answer,
};
pub use store_api::{CallKind, StoreAnswer, StoreCall};

use crate::syntax::name_is;

/// The prefix of every header of the contract: removed from requests and responses.
pub const HEADER_PREFIX: &str = "keel-session";
/// The state, both ways.
pub const STATE_HEADER: &str = "keel-session";
/// The session's id (32 hex digits), to the backend.
pub const SESSION_ID_HEADER: &str = "keel-session-id";
/// `unavailable` to the backend when the store could not be reached.
pub const STORE_STATUS_HEADER: &str = "keel-session-store";
/// From the backend: delete the session.
pub const INVALIDATE_HEADER: &str = "keel-session-invalidate";
/// From the backend: give the session a new id.
pub const ROTATE_HEADER: &str = "keel-session-rotate";

/// Whether a header name starts with `keel-session` (ASCII case-insensitive).
pub fn is_session_header(name: &[u8]) -> bool {
    name.get(..HEADER_PREFIX.len())
        .is_some_and(|prefix| name_is(prefix, HEADER_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::is_session_header;

    #[test]
    fn session_header_names() {
        for yes in [
            &b"keel-session"[..],
            b"Keel-Session-Id",
            b"KEEL-SESSIONX",
            b"keel-session-\xff",
        ] {
            assert!(is_session_header(yes), "{yes:?}");
        }
        for no in [
            &b"keel-sessio"[..],
            b"x-keel-session",
            b"keel-store-key",
            b"",
            b"\xffeel-session",
        ] {
            assert!(!is_session_header(no), "{no:?}");
        }
    }
}
