//! The request side: which client headers go, whether the request is ignored, which session to
//! load; then, from the store's answer to the load, what the backend is told.

use super::key::StoreKey;
use super::store_api::StoreAnswer;
use super::{SESSION_ID_HEADER, STATE_HEADER, STORE_STATUS_HEADER, is_session_header};
use crate::config::SessionConfig;
use crate::lookup::{Lookup, RequestParts, find_session};

/// What to do with a request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan<'a> {
    /// The names of the `keel-session*` headers the client sent (each once, as sent): all go.
    pub client_headers: Vec<&'a [u8]>,
    /// The path matches `ignore_pattern`: no load, no store.
    pub ignored: bool,
    /// The session to load: a keel id (`<32 HEX>-<node>[.<route>]`) from the cookie or the path
    /// parameter. `None` for no id, an invalid one, one of another form, or an ignored request.
    pub key: Option<StoreKey>,
}

/// Plans the request side from the request headers.
pub fn on_request<'a, N: AsRef<[u8]>>(
    cfg: &SessionConfig,
    headers: &'a [(N, &'a [u8])],
) -> RequestPlan<'a> {
    let mut client_headers: Vec<&'a [u8]> = Vec::new();
    for (name, _) in headers {
        let name = name.as_ref();
        if is_session_header(name) && !client_headers.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            client_headers.push(name);
        }
    }
    let parts = RequestParts::from_headers(headers);
    let ignored = cfg.is_ignored(parts.path.unwrap_or_default());
    let key = if ignored {
        None
    } else {
        match find_session(&parts, &[&cfg.path_parameter], &[&cfg.cookie_name]) {
            Lookup::Found(id, _) => StoreKey::from_session_id(&id),
            Lookup::Invalid | Lookup::Absent => None,
        }
    };
    RequestPlan {
        client_headers,
        ignored,
        key,
    }
}

/// A session the store knew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The key the client's cookie named.
    pub requested: StoreKey,
    /// Where the record lives now (differs from `requested` when the store relocated it).
    pub key: StoreKey,
    /// The CAS token for a save.
    pub cas: Option<u64>,
    /// The route the record is bound to.
    pub route: Option<String>,
    /// The state, as the backend last sent it (kept to tell a change, and for a rotation
    /// without new state).
    pub state: Vec<u8>,
}

impl Loaded {
    /// Whether the record moved to another node: the client needs a cookie with the new one.
    pub fn relocated(&self) -> bool {
        self.key != self.requested
    }
}

/// How a load came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The store knew the session.
    Loaded(Loaded),
    /// Unknown or expired: no session (the id is never adopted).
    NotFound,
    /// The store could not answer (503, a failed or timed-out call, a bad answer).
    Unavailable,
}

/// Whether `state` may travel as a header value: at most `max` bytes of visible ASCII.
pub fn state_is_valid(state: &[u8], max: usize) -> bool {
    state.len() <= max && state.iter().all(u8::is_ascii_graphic)
}

/// Reads the store's answer to a load of `requested`.
pub fn on_load_answer(
    cfg: &SessionConfig,
    requested: StoreKey,
    answer: StoreAnswer,
    body: &[u8],
) -> LoadOutcome {
    match answer.status {
        Some(200) if state_is_valid(body, cfg.max_state_bytes) => {
            let key = answer.key.unwrap_or_else(|| requested.clone());
            LoadOutcome::Loaded(Loaded {
                requested,
                key,
                cas: answer.cas,
                route: answer.route,
                state: body.to_vec(),
            })
        }
        Some(404) => LoadOutcome::NotFound,
        // A state the filter would never have stored is a damaged record: as if unreachable.
        _ => LoadOutcome::Unavailable,
    }
}

/// What the request becomes after the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEffect {
    /// Add these headers and go on.
    Continue(Vec<(&'static str, Vec<u8>)>),
    /// Answer 503 here (`fail_closed` and the store unavailable).
    Refuse,
}

impl LoadOutcome {
    /// The headers the backend gets, or the refusal.
    pub fn effect(&self, cfg: &SessionConfig) -> LoadEffect {
        match self {
            LoadOutcome::Loaded(loaded) => LoadEffect::Continue(vec![
                (STATE_HEADER, loaded.state.clone()),
                (SESSION_ID_HEADER, loaded.key.id().as_bytes().to_vec()),
            ]),
            LoadOutcome::NotFound => LoadEffect::Continue(Vec::new()),
            LoadOutcome::Unavailable if cfg.fail_closed => LoadEffect::Refuse,
            LoadOutcome::Unavailable => {
                LoadEffect::Continue(vec![(STORE_STATUS_HEADER, b"unavailable".to_vec())])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789ABCDEF0123456789ABCDEF";

    fn cfg(extra: &str) -> SessionConfig {
        SessionConfig::from_json(
            format!(r#"{{"routes": {{"t1": "127.0.0.1:8081"}}{extra}}}"#).as_bytes(),
        )
        .expect("valid")
    }

    fn key(node: &str) -> StoreKey {
        StoreKey::parse(format!("{HEX}-{node}").as_bytes()).expect("valid")
    }

    #[test]
    fn a_keel_cookie_is_loaded_and_client_headers_go() {
        let cookie = format!("JSESSIONID={HEX}-n1.t1");
        let headers = [
            (":path", &b"/shop"[..]),
            ("cookie", cookie.as_bytes()),
            ("keel-session", b"forged"),
            ("Keel-Session-Id", b"x"),
            ("keel-session", b"again"),
            ("keel-sessions", b"x"),
            ("keel-store-key", b"not ours to remove"),
        ];
        let plan = on_request(&cfg(""), &headers);
        assert_eq!(plan.key, Some(key("n1")));
        assert!(!plan.ignored);
        assert_eq!(
            plan.client_headers,
            [&b"keel-session"[..], b"Keel-Session-Id", b"keel-sessions"]
        );
    }

    #[test]
    fn the_path_parameter_counts_and_other_ids_are_no_session() {
        let path = format!("/a;jsessionid={HEX}-n2.t1");
        let headers = [(":path", path.as_bytes())];
        let plan = on_request(&cfg(""), &headers);
        assert_eq!(plan.key, Some(key("n2")));
        for cookie in [
            &b"JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1"[..],
            b"JSESSIONID=0123456789abcdef0123456789abcdef-n1",
            b"JSESSIONID=0123456789ABCDEF0123456789ABCDEF-n1 x",
            b"JSESSIONID=%00",
            b"OTHER=0123456789ABCDEF0123456789ABCDEF-n1",
        ] {
            let headers = [(":path", &b"/"[..]), ("cookie", cookie)];
            let plan = on_request(&cfg(""), &headers);
            assert_eq!(plan.key, None, "{cookie:?}");
        }
    }

    #[test]
    fn ignored_paths_load_nothing_but_still_lose_client_headers() {
        let cookie = format!("JSESSIONID={HEX}-n1.t1");
        let headers = [
            (":path", &b"/img/logo.png?v=2"[..]),
            ("cookie", cookie.as_bytes()),
            ("keel-session", b"forged"),
        ];
        let plan = on_request(&cfg(""), &headers);
        assert!(plan.ignored);
        assert_eq!(plan.key, None);
        assert_eq!(plan.client_headers, [&b"keel-session"[..]]);
    }

    #[test]
    fn load_answers() {
        let c = cfg("");
        let ok = StoreAnswer {
            status: Some(200),
            key: Some(key("n1")),
            cas: Some(9),
            route: Some("t1".into()),
        };
        let LoadOutcome::Loaded(loaded) = on_load_answer(&c, key("n1"), ok.clone(), b"c=1") else {
            panic!("loaded");
        };
        assert!(!loaded.relocated());
        assert_eq!(
            (loaded.cas, loaded.state.as_slice()),
            (Some(9), &b"c=1"[..])
        );
        assert_eq!(
            LoadOutcome::Loaded(loaded).effect(&c),
            LoadEffect::Continue(vec![
                ("keel-session", b"c=1".to_vec()),
                ("keel-session-id", HEX.as_bytes().to_vec()),
            ])
        );
        let moved = StoreAnswer {
            key: Some(key("n2")),
            ..ok.clone()
        };
        let LoadOutcome::Loaded(loaded) = on_load_answer(&c, key("n1"), moved, b"") else {
            panic!("loaded");
        };
        assert!(loaded.relocated());
        let status = |s| StoreAnswer {
            status: s,
            ..StoreAnswer::default()
        };
        assert_eq!(
            on_load_answer(&c, key("n1"), status(Some(404)), b""),
            LoadOutcome::NotFound
        );
        assert_eq!(
            LoadOutcome::NotFound.effect(&c),
            LoadEffect::Continue(Vec::new())
        );
        for s in [Some(503), Some(400), Some(500), None] {
            assert_eq!(
                on_load_answer(&c, key("n1"), status(s), b""),
                LoadOutcome::Unavailable
            );
        }
        // A state the filter would never have stored.
        assert_eq!(
            on_load_answer(&c, key("n1"), ok.clone(), b"a b"),
            LoadOutcome::Unavailable
        );
        assert_eq!(
            on_load_answer(&c, key("n1"), ok, &[b'x'; 4097]),
            LoadOutcome::Unavailable
        );
        assert_eq!(
            LoadOutcome::Unavailable.effect(&c),
            LoadEffect::Continue(vec![("keel-session-store", b"unavailable".to_vec())])
        );
        let closed = cfg(r#", "fail_closed": true"#);
        assert_eq!(LoadOutcome::Unavailable.effect(&closed), LoadEffect::Refuse);
    }
}
