//! The store API as the filter speaks it (`/work/notes/store-api.md`, version 1): the calls it
//! sends with `dispatch_http_call` and what it reads from the answers.
//!
//! | call | request | the answers the filter acts on |
//! |---|---|---|
//! | load | `GET /v1/sessions/<key>` | 200 (body = state; `keel-store-key`, `keel-store-cas`, `keel-store-route`), 404 |
//! | create | `POST /v1/sessions` (+ `keel-store-replaces` to rotate) | 201 (`keel-store-key`), 413 |
//! | save | `PUT /v1/sessions/<key>` with `keel-store-cas` | 204 (`keel-store-key`), 409, 404, 413 |
//! | delete | `DELETE /v1/sessions/<key>` | 204 |
//!
//! Every call carries `keel-store-ttl` (the idle timeout) and `:authority` = the upstream name.
//! Anything else — 503, 400, another status, a failed or timed-out call (no `:status`) — is
//! "unavailable" for a load and a failed write otherwise.

use super::key::StoreKey;
use crate::config::SessionConfig;
use crate::session_id;
use crate::syntax::name_is;

/// The idle timeout in seconds, on every call.
pub const TTL: &str = "keel-store-ttl";
/// Where the record lives (`<id>-<node>`), in answers.
pub const KEY: &str = "keel-store-key";
/// The CAS token: in a load's answer, and sent back with a save.
pub const CAS: &str = "keel-store-cas";
/// The route the session is bound to.
pub const ROUTE: &str = "keel-store-route";
/// On a create: the key of the record the new one replaces (rotation).
pub const REPLACES: &str = "keel-store-replaces";

/// What a store call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `GET`: load (and touch).
    Load,
    /// `POST`: a new session.
    Create,
    /// `POST` with `keel-store-replaces`: a new id for a session.
    Rotate,
    /// `PUT`: changed state.
    Save,
    /// `DELETE`: invalidated.
    Delete,
}

/// A store call, ready for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCall {
    /// What it is for.
    pub kind: CallKind,
    /// `:method`.
    pub method: &'static str,
    /// `:path`.
    pub path: String,
    /// `:authority` (the upstream name).
    pub authority: String,
    /// The other headers (ASCII: validated keys, routes, numbers).
    pub headers: Vec<(&'static str, String)>,
    /// The body (the state), for create, rotate and save.
    pub body: Option<Vec<u8>>,
}

impl StoreCall {
    fn new(cfg: &SessionConfig, kind: CallKind, key: Option<&StoreKey>) -> Self {
        let method = match kind {
            CallKind::Load => "GET",
            CallKind::Create | CallKind::Rotate => "POST",
            CallKind::Save => "PUT",
            CallKind::Delete => "DELETE",
        };
        let path = match key {
            Some(key) => format!("/v1/sessions/{}", key.as_str()),
            None => "/v1/sessions".to_owned(),
        };
        StoreCall {
            kind,
            method,
            path,
            authority: cfg.store_upstream.clone(),
            headers: vec![(TTL, cfg.idle_timeout_seconds.to_string())],
            body: None,
        }
    }

    fn with_state(mut self, state: &[u8], route: Option<&str>) -> Self {
        if let Some(route) = route.filter(|r| session_id::is_valid_route(r.as_bytes())) {
            self.headers.push((ROUTE, route.to_owned()));
        }
        self.headers
            .push(("content-length", state.len().to_string()));
        self.body = Some(state.to_vec());
        self
    }

    /// `GET /v1/sessions/<key>`.
    pub fn load(cfg: &SessionConfig, key: &StoreKey) -> Self {
        Self::new(cfg, CallKind::Load, Some(key))
    }

    /// `POST /v1/sessions` with the state, bound to `route`.
    pub fn create(cfg: &SessionConfig, state: &[u8], route: Option<&str>) -> Self {
        Self::new(cfg, CallKind::Create, None).with_state(state, route)
    }

    /// `POST /v1/sessions` replacing `old`.
    pub fn rotate(cfg: &SessionConfig, old: &StoreKey, state: &[u8], route: Option<&str>) -> Self {
        let mut call = Self::new(cfg, CallKind::Rotate, None).with_state(state, route);
        call.headers.push((REPLACES, old.as_str().to_owned()));
        call
    }

    /// `PUT /v1/sessions/<key>`, compare-and-set against `cas` when the load gave one.
    pub fn save(
        cfg: &SessionConfig,
        key: &StoreKey,
        state: &[u8],
        route: Option<&str>,
        cas: Option<u64>,
    ) -> Self {
        let mut call = Self::new(cfg, CallKind::Save, Some(key)).with_state(state, route);
        if let Some(cas) = cas {
            call.headers.push((CAS, cas.to_string()));
        }
        call
    }

    /// `DELETE /v1/sessions/<key>`.
    pub fn delete(cfg: &SessionConfig, key: &StoreKey) -> Self {
        Self::new(cfg, CallKind::Delete, Some(key))
    }

    /// The header list `dispatch_http_call` takes: pseudo-headers first.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs = vec![
            (":method", self.method),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
        ];
        pairs.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        pairs
    }
}

/// What the filter reads from a store answer's headers (each value validated; a bad one is
/// treated as absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreAnswer {
    /// `:status`; `None` for a failed call (Envoy and keel deliver a reset with no headers; a
    /// timeout comes as a 504, an unreachable store as a 503) or a status that is not a number.
    pub status: Option<u16>,
    /// `keel-store-key`.
    pub key: Option<StoreKey>,
    /// `keel-store-cas`.
    pub cas: Option<u64>,
    /// `keel-store-route`.
    pub route: Option<String>,
}

impl StoreAnswer {
    /// Reads an answer's headers (names ASCII case-insensitive; the first of each counts).
    pub fn from_headers<N: AsRef<[u8]>>(headers: &[(N, &[u8])]) -> Self {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| name_is(n.as_ref(), name))
                .map(|(_, v)| *v)
        };
        let number = |v: &[u8]| core::str::from_utf8(v).ok()?.trim().parse::<u64>().ok();
        StoreAnswer {
            status: find(":status")
                .and_then(number)
                .and_then(|s| u16::try_from(s).ok()),
            key: find(KEY).and_then(StoreKey::parse),
            cas: find(CAS).and_then(number),
            route: find(ROUTE)
                .filter(|r| session_id::is_valid_route(r))
                .and_then(|r| core::str::from_utf8(r).ok())
                .map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY1: &str = "0123456789ABCDEF0123456789ABCDEF-n1";

    fn cfg() -> SessionConfig {
        SessionConfig::from_json(
            br#"{"routes": {"t1": "127.0.0.1:8081"}, "idle_timeout_seconds": 60}"#,
        )
        .expect("valid")
    }

    fn key() -> StoreKey {
        StoreKey::parse(KEY1.as_bytes()).expect("valid")
    }

    #[test]
    fn calls() {
        let c = cfg();
        let load = StoreCall::load(&c, &key());
        assert_eq!(
            load.header_pairs(),
            [
                (":method", "GET"),
                (":path", "/v1/sessions/0123456789ABCDEF0123456789ABCDEF-n1"),
                (":authority", "keel_store"),
                ("keel-store-ttl", "60"),
            ]
        );
        assert_eq!(load.body, None);
        let create = StoreCall::create(&c, b"s=1", Some("t1"));
        assert_eq!(
            (create.method, create.path.as_str()),
            ("POST", "/v1/sessions")
        );
        assert_eq!(create.body.as_deref(), Some(&b"s=1"[..]));
        assert!(create.headers.contains(&(ROUTE, "t1".to_owned())));
        assert!(create.headers.contains(&("content-length", "3".to_owned())));
        let rotate = StoreCall::rotate(&c, &key(), b"s", None);
        assert!(rotate.headers.contains(&(REPLACES, KEY1.to_owned())));
        assert!(!rotate.headers.iter().any(|(n, _)| *n == ROUTE));
        let save = StoreCall::save(&c, &key(), b"s=2", Some("t1"), Some(42));
        assert_eq!(save.method, "PUT");
        assert!(save.headers.contains(&(CAS, "42".to_owned())));
        let delete = StoreCall::delete(&c, &key());
        assert_eq!((delete.method, delete.body), ("DELETE", None));
    }

    #[test]
    fn answers() {
        let a = StoreAnswer::from_headers(&[
            (":status", &b"200"[..]),
            ("Keel-Store-Key", KEY1.as_bytes()),
            ("keel-store-cas", b"77"),
            ("keel-store-route", b"t2"),
        ]);
        assert_eq!(a.status, Some(200));
        assert_eq!(a.key, Some(key()));
        assert_eq!((a.cas, a.route.as_deref()), (Some(77), Some("t2")));
        let failed = StoreAnswer::from_headers::<&str>(&[]);
        assert_eq!(failed, StoreAnswer::default());
        let bad = StoreAnswer::from_headers(&[
            (":status", &b"2xx"[..]),
            ("keel-store-key", b"nope"),
            ("keel-store-cas", b"-1"),
            ("keel-store-route", b"a b"),
        ]);
        assert_eq!(bad, StoreAnswer::default());
        assert_eq!(
            StoreAnswer::from_headers(&[(":status", &b"70000"[..])]).status,
            None
        );
    }
}
