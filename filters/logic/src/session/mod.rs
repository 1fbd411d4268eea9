//! The `session` filter's decisions: session state kept in a store (memcached-session-manager's
//! semantics, at the proxy), reached with `dispatch_http_call` ([`store_api`]). The contract with
//! the backend — the id keel owns, the `keel-session*` headers both ways, the local 502 for a bad
//! state, the first-writer-wins CAS policy — is written out in the filter crate's docs
//! (`filters/session/src/lib.rs`).
//!
//! [`key`] is the only id form ever looked up; [`request`] plans the request and reads the
//! load's answer; [`response`] decides the write and reads its answer. All of it is pure: the
//! adapter only moves headers and makes the calls.

pub mod key;
pub mod request;
pub mod response;
pub mod store_api;

pub use key::StoreKey;
pub use request::{LoadEffect, LoadOutcome, Loaded, RequestPlan, on_load_answer, on_request};
pub use response::{
    BackendSaid, Decision, ResponsePlan, StateError, WriteOutcome, WriteResult, cookie_edit,
    on_response, on_write_answer,
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
