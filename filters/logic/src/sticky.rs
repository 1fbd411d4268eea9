//! The `sticky` filter's decision: from the request headers to the routing header value, or none.
//!
//! Find the session id (see [`crate::lookup`]), take its route, and name that route in the
//! routing header: the route itself, or base64 of its `ip:port` (see [`StickyConfig`]). No
//! session, no route in the id, or a route the `routes` map does not know: no header, and the
//! balancer decides. The client's own routing header is always removed first.

use crate::config::StickyConfig;
use crate::fingerprint::fingerprint;
use crate::lookup::{Lookup, RequestParts, Source, find_session};
use crate::syntax::name_is;

/// How the decision came out (one metric each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyOutcome {
    /// A valid id with a known route: the header is set.
    Routed,
    /// No session id in the request.
    NoSession,
    /// A valid session id without a route suffix.
    NoRoute,
    /// A valid id whose route the `routes` map does not know.
    UnknownRoute,
    /// Session id candidates, none of them valid.
    InvalidId,
}

impl StickyOutcome {
    /// A short word for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            StickyOutcome::Routed => "routed",
            StickyOutcome::NoSession => "no_session",
            StickyOutcome::NoRoute => "no_route",
            StickyOutcome::UnknownRoute => "unknown_route",
            StickyOutcome::InvalidId => "invalid_id",
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyDecision<'a> {
    /// How it came out.
    pub outcome: StickyOutcome,
    /// Where the session id came from, when there was a valid one.
    pub source: Option<Source>,
    /// The id's route (validated: `[A-Za-z0-9_.-]`), when it had one; borrowed from the headers.
    pub route: Option<&'a str>,
    /// The routing header's value to set, borrowed from the configuration; `None`: set none.
    pub header_value: Option<&'a str>,
    /// Whether the client sent the routing header itself (it must be removed).
    pub client_sent_header: bool,
    /// The valid session id (empty without one): only its length and fingerprint leave this
    /// struct, for log lines.
    id: &'a [u8],
}

impl StickyDecision<'_> {
    /// Length of the valid session id (0 without one), for log lines.
    pub fn id_len(&self) -> usize {
        self.id.len()
    }

    /// [`fingerprint`] of the valid session id (0 without one), for log lines. Computed when
    /// asked: a request whose log line is off does not pay for it.
    pub fn id_fingerprint(&self) -> u32 {
        if self.id.is_empty() {
            0
        } else {
            fingerprint(self.id)
        }
    }
}

/// Decides the routing header for a request with these headers.
pub fn decide<'a, N: AsRef<[u8]>>(
    cfg: &'a StickyConfig,
    headers: &[(N, &'a [u8])],
) -> StickyDecision<'a> {
    let client_sent_header = headers
        .iter()
        .any(|(name, _)| name_is(name.as_ref(), &cfg.header));
    let parts = RequestParts::from_headers(headers);
    let mut decision = StickyDecision {
        outcome: StickyOutcome::NoSession,
        source: None,
        route: None,
        header_value: None,
        client_sent_header,
        id: &[],
    };
    let (id, source) = match find_session(&parts, &cfg.path_parameters, &cfg.cookie_names) {
        Lookup::Found(id, source) => (id, source),
        Lookup::Invalid => {
            decision.outcome = StickyOutcome::InvalidId;
            return decision;
        }
        Lookup::Absent => return decision,
    };
    decision.source = Some(source);
    decision.id = id.as_bytes();
    let Some(route) = id.route_str() else {
        decision.outcome = StickyOutcome::NoRoute;
        return decision;
    };
    decision.route = Some(route);
    match cfg.header_value_for(route) {
        Some(value) => {
            decision.outcome = StickyOutcome::Routed;
            decision.header_value = Some(value);
        }
        None => decision.outcome = StickyOutcome::UnknownRoute,
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> StickyConfig {
        StickyConfig::from_json(json.as_bytes()).expect("valid config")
    }

    #[test]
    fn tomcat_cookie_is_routed_by_name() {
        let c = StickyConfig::default();
        let d = decide(
            &c,
            &[
                (":path", b"/shop"),
                (
                    "cookie",
                    b"JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1",
                ),
            ],
        );
        assert_eq!(d.outcome, StickyOutcome::Routed);
        assert_eq!(d.header_value, Some("tomcat1"));
        assert_eq!(d.source, Some(Source::Cookie));
        assert_eq!(d.id_len(), 40);
        assert_eq!(
            d.id_fingerprint(),
            fingerprint(b"4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1")
        );
        assert!(!d.client_sent_header);
    }

    #[test]
    fn msm_id_and_url_parameter_wins() {
        let c = StickyConfig::default();
        let d = decide(
            &c,
            &[
                (":path", b"/a;jsessionid=ABC-n1.tomcat2?x"),
                ("cookie", b"JSESSIONID=ABC-n1.tomcat1"),
            ],
        );
        assert_eq!(d.header_value, Some("tomcat2"));
        assert_eq!(d.source, Some(Source::PathParameter));
    }

    #[test]
    fn envoy_host_encoding() {
        let c = cfg(r#"{"encoding": "envoy_host", "routes": {"tomcat1": "127.0.0.1:8081"}}"#);
        let d = decide(&c, &[("cookie", b"JSESSIONID=ABC.tomcat1")]);
        assert_eq!(d.outcome, StickyOutcome::Routed);
        assert_eq!(d.header_value, Some("MTI3LjAuMC4xOjgwODE="));
        let d = decide(&c, &[("cookie", b"JSESSIONID=ABC.tomcat9")]);
        assert_eq!(d.outcome, StickyOutcome::UnknownRoute);
        assert_eq!(d.header_value, None);
        assert_eq!(d.route, Some("tomcat9"));
    }

    #[test]
    fn unknown_route_with_routes_map_sets_no_header() {
        let c = cfg(r#"{"routes": {"tomcat1": "127.0.0.1:8081"}}"#);
        let d = decide(&c, &[("cookie", b"JSESSIONID=ABC.tomcat2")]);
        assert_eq!(d.outcome, StickyOutcome::UnknownRoute);
        assert_eq!(d.header_value, None);
    }

    #[test]
    fn no_session_no_route_invalid() {
        let c = StickyConfig::default();
        let d = decide(&c, &[(":path", b"/")]);
        assert_eq!(
            (d.outcome, d.header_value, d.id_len(), d.id_fingerprint()),
            (StickyOutcome::NoSession, None, 0, 0)
        );
        let d = decide(&c, &[("cookie", b"JSESSIONID=ABC")]);
        assert_eq!(
            (d.outcome, d.header_value, d.id_len()),
            (StickyOutcome::NoRoute, None, 3)
        );
        let d = decide(&c, &[("cookie", b"JSESSIONID=AB\"C.t1")]);
        assert_eq!(
            (d.outcome, d.header_value),
            (StickyOutcome::InvalidId, None)
        );
        let d = decide(
            &c,
            &[("cookie", b"JSESSIONID=ABC.t1\r\nx-keel-route: evil")],
        );
        assert_eq!(d.outcome, StickyOutcome::InvalidId);
    }

    #[test]
    fn client_routing_header_is_noticed() {
        let c = StickyConfig::default();
        let d = decide(&c, &[("X-Keel-Route", b"tomcat9")]);
        assert!(d.client_sent_header);
        assert_eq!(d.header_value, None);
        let d = decide(
            &c,
            &[
                ("x-keel-route", b"tomcat9"),
                ("cookie", b"JSESSIONID=A.tomcat1"),
            ],
        );
        assert!(d.client_sent_header);
        assert_eq!(d.header_value, Some("tomcat1"));
    }

    #[test]
    fn custom_names() {
        let c = cfg(r#"{"cookie_names": ["SID"], "path_parameters": [], "header": "x-route"}"#);
        let d = decide(
            &c,
            &[
                (":path", b"/a;jsessionid=X.t1"),
                ("cookie", b"JSESSIONID=Y.t2; SID=Z.t3"),
            ],
        );
        assert_eq!(d.header_value, Some("t3"));
        let d = decide(&c, &[("x-route", b"t1")]);
        assert!(d.client_sent_header);
    }
}
