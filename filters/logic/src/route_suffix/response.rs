//! route_suffix on the response path: the header edits that make the session id the client holds
//! name the route that really served the request.
//!
//! * `Set-Cookie` for the session cookie with a valid id: its route becomes the served route
//!   (strip/append: the route is appended); the rest of the header is kept byte for byte.
//! * No `Set-Cookie` for the session cookie at all, and the client came with a session cookie
//!   naming another route (strip/append: or no route): a new `Set-Cookie` with the configured
//!   attributes moves it to the served route. An id the client sent only in the URL gets no cookie
//!   (that client tracks its session by URL rewriting).
//! * `Location` with a `;path_parameter=` id: renamed the same way.
//!
//! Every other header passes untouched.

use super::{ClientSession, renamed};
use crate::config::RouteSuffixConfig;
use crate::new_cookie;
use crate::path_param;
use crate::set_cookie::SetCookie;
use crate::syntax::name_is;

/// One change to the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every header called `name`, then add `values` in order (how one `Set-Cookie` among
    /// several is changed while the others and their order are kept).
    ReplaceAll {
        /// Lowercase header name.
        name: &'static str,
        /// The new values.
        values: Vec<Vec<u8>>,
    },
    /// Add one header.
    Add {
        /// Lowercase header name.
        name: &'static str,
        /// Its value.
        value: Vec<u8>,
    },
}

/// The edits for one response and what they amount to (for metrics and the log line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponsePlan {
    /// The edits, to be applied in order.
    pub edits: Vec<HeaderEdit>,
    /// How many session `Set-Cookie` headers were rewritten.
    pub cookies_rewritten: usize,
    /// Whether a `Set-Cookie` was added.
    pub cookie_added: bool,
    /// How many `Location` headers were rewritten.
    pub locations_rewritten: usize,
}

impl ResponsePlan {
    /// True when the response is left as it is.
    pub fn is_unchanged(&self) -> bool {
        self.edits.is_empty()
    }
}

/// The only response headers [`on_response`] reads: a response with none of them needs only the
/// request's session (a filter may skip reading the whole map).
pub const RESPONSE_HEADERS_READ: [&str; 2] = [SET_COOKIE, LOCATION];

const SET_COOKIE: &str = "set-cookie";
const LOCATION: &str = "location";

/// Plans the response edits: `served` is the route of the backend that answered (learned from
/// `upstream.address`), `client` what the request carried, `headers` the response headers (names
/// as text or as the bytes the host sent). A response that needs no edit costs no allocation.
pub fn on_response<N: AsRef<[u8]>>(
    cfg: &RouteSuffixConfig,
    served: &str,
    client: &ClientSession,
    headers: &[(N, &[u8])],
) -> ResponsePlan {
    let mut plan = ResponsePlan::default();
    let name = cfg.cookie_name.as_bytes();

    let mut session_cookie_set = false;
    let (set_cookies, rewritten) = rewrite_each(headers, SET_COOKIE, |raw| {
        let parsed = SetCookie::parse(raw).filter(|c| c.name == name)?;
        session_cookie_set = true;
        renamed(cfg.mode, parsed.value, served).map(|value| parsed.with_value(&value))
    });
    plan.cookies_rewritten = rewritten;
    if let Some(values) = set_cookies {
        plan.edits.push(HeaderEdit::ReplaceAll {
            name: SET_COOKIE,
            values,
        });
    }

    if !session_cookie_set {
        let moved = client
            .cookie_id
            .as_deref()
            .and_then(|id| renamed(cfg.mode, id, served));
        if let Some(value) = moved {
            plan.edits.push(HeaderEdit::Add {
                name: SET_COOKIE,
                value: new_cookie::build(name, &value, &cfg.cookie),
            });
            plan.cookie_added = true;
        }
    }

    let param = cfg.path_parameter.as_bytes();
    let (locations, rewritten) = rewrite_each(headers, LOCATION, |location| {
        path_param::replace_values(location, param, |v| renamed(cfg.mode, v, served))
    });
    plan.locations_rewritten = rewritten;
    if let Some(values) = locations {
        plan.edits.push(HeaderEdit::ReplaceAll {
            name: LOCATION,
            values,
        });
    }
    plan
}

/// Offers the value of every header called `name` (lowercase), in order, to `change`, which
/// answers a replacement or `None` to keep it. When at least one changed: every value of that
/// header in order, the changed ones replaced, and how many changed. Otherwise `(None, 0)`, and
/// nothing was allocated.
fn rewrite_each<N: AsRef<[u8]>>(
    headers: &[(N, &[u8])],
    name: &str,
    mut change: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> (Option<Vec<Vec<u8>>>, usize) {
    let mut values = headers
        .iter()
        .filter(|(n, _)| name_is(n.as_ref(), name))
        .map(|&(_, value)| value);
    let mut kept = 0;
    let (first, mut list) = loop {
        let Some(value) = values.next() else {
            return (None, 0);
        };
        if let Some(new) = change(value) {
            break (new, Vec::new());
        }
        kept += 1;
    };
    list.extend(
        headers
            .iter()
            .filter(|(n, _)| name_is(n.as_ref(), name))
            .take(kept)
            .map(|(_, value)| value.to_vec()),
    );
    list.push(first);
    let mut changed = 1;
    for value in values {
        list.push(match change(value) {
            Some(new) => {
                changed += 1;
                new
            }
            None => value.to_vec(),
        });
    }
    (Some(list), changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response without headers.
    const NO_HEADERS: &[(&str, &[u8])] = &[];

    #[test]
    fn rewrite_each_keeps_order_and_copies_only_when_something_changed() {
        let headers: &[(&str, &[u8])] = &[
            ("location", b"keep-1"),
            ("x-other", b"CHANGE-ME-NOT"),
            ("Location", b"CHANGE-2"),
            ("location", b"keep-3"),
            ("location", b"CHANGE-4"),
        ];
        let lower = |v: &[u8]| v.starts_with(b"CHANGE").then(|| v.to_ascii_lowercase());
        let (values, changed) = rewrite_each(headers, LOCATION, lower);
        assert_eq!(changed, 2);
        assert_eq!(
            values,
            Some(vec![
                b"keep-1".to_vec(),
                b"change-2".to_vec(),
                b"keep-3".to_vec(),
                b"change-4".to_vec(),
            ])
        );
        assert_eq!(rewrite_each(headers, "x-missing", lower), (None, 0));
        assert_eq!(rewrite_each(&headers[..2], "location", lower), (None, 0));
    }

    fn cfg(mode: &str) -> RouteSuffixConfig {
        let json = format!(
            r#"{{"routes": {{"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}}, "mode": "{mode}",
                "cookie": {{"path": "/", "http_only": true, "secure": true, "same_site": "Lax"}}}}"#
        );
        RouteSuffixConfig::from_json(json.as_bytes()).expect("valid")
    }

    fn client(cookie: Option<&[u8]>) -> ClientSession {
        ClientSession {
            cookie_id: cookie.map(<[u8]>::to_vec),
            path_id: None,
        }
    }

    #[test]
    fn set_cookie_suffix_rewritten_keeping_attributes_and_other_cookies() {
        let plan = on_response(
            &cfg("rewrite"),
            "tomcat2",
            &client(None),
            &[
                (":status", b"200"),
                ("set-cookie", b"a=1; Path=/"),
                ("set-cookie", b"JSESSIONID=NEW.tomcat1; Path=/shop; Secure; HttpOnly; SameSite=Strict; X=\xff"),
                ("content-type", b"text/html"),
            ],
        );
        assert_eq!(
            plan.edits,
            vec![HeaderEdit::ReplaceAll {
                name: SET_COOKIE,
                values: vec![
                    b"a=1; Path=/".to_vec(),
                    b"JSESSIONID=NEW.tomcat2; Path=/shop; Secure; HttpOnly; SameSite=Strict; X=\xff".to_vec(),
                ],
            }]
        );
        assert_eq!((plan.cookies_rewritten, plan.cookie_added), (1, false));
    }

    #[test]
    fn failover_without_cookie_adds_one_for_the_new_route() {
        let plan = on_response(
            &cfg("rewrite"),
            "tomcat2",
            &client(Some(b"X-n1.tomcat1")),
            &[(":status", b"200")],
        );
        assert_eq!(
            plan.edits,
            vec![HeaderEdit::Add {
                name: SET_COOKIE,
                value: b"JSESSIONID=X-n1.tomcat2; Path=/; Secure; HttpOnly; SameSite=Lax".to_vec(),
            }]
        );
        assert!(plan.cookie_added);
    }

    #[test]
    fn same_route_is_unchanged() {
        let plan = on_response(
            &cfg("rewrite"),
            "tomcat1",
            &client(Some(b"X.tomcat1")),
            &[
                ("set-cookie", b"JSESSIONID=Y.tomcat1; Path=/"),
                ("location", b"/a;jsessionid=Y.tomcat1"),
            ],
        );
        assert!(plan.is_unchanged());
    }

    #[test]
    fn deletion_cookie_is_kept_and_blocks_adding() {
        let plan = on_response(
            &cfg("rewrite"),
            "tomcat2",
            &client(Some(b"X.tomcat1")),
            &[("set-cookie", b"JSESSIONID=; Max-Age=0; Path=/")],
        );
        assert!(plan.is_unchanged());
    }

    #[test]
    fn rewrite_mode_leaves_routeless_ids() {
        let plan = on_response(
            &cfg("rewrite"),
            "tomcat2",
            &client(Some(b"X")),
            &[("set-cookie", b"JSESSIONID=Y; Path=/")],
        );
        assert!(plan.is_unchanged());
        let plan = on_response(&cfg("rewrite"), "tomcat2", &client(Some(b"X")), NO_HEADERS);
        assert!(plan.is_unchanged());
    }

    #[test]
    fn url_only_client_gets_no_cookie() {
        let c = ClientSession {
            cookie_id: None,
            path_id: Some(b"X.tomcat1".to_vec()),
        };
        assert!(on_response(&cfg("rewrite"), "tomcat2", &c, NO_HEADERS).is_unchanged());
    }

    #[test]
    fn location_rewritten() {
        let plan = on_response(
            &cfg("rewrite"),
            "tomcat2",
            &client(None),
            &[(
                "Location",
                b"https://h.example/app/next;jsessionid=X.tomcat1?a=1;jsessionid=X.tomcat1",
            )],
        );
        assert_eq!(
            plan.edits,
            vec![HeaderEdit::ReplaceAll {
                name: LOCATION,
                values: vec![
                    b"https://h.example/app/next;jsessionid=X.tomcat2?a=1;jsessionid=X.tomcat1"
                        .to_vec()
                ],
            }]
        );
        assert_eq!(plan.locations_rewritten, 1);
    }

    #[test]
    fn strip_append_appends_on_the_way_out() {
        let plan = on_response(
            &cfg("strip_append"),
            "tomcat1",
            &client(None),
            &[
                ("set-cookie", b"JSESSIONID=\"NEW\"; Path=/app"),
                ("location", b"/app;jsessionid=NEW"),
            ],
        );
        assert_eq!(
            plan.edits,
            vec![
                HeaderEdit::ReplaceAll {
                    name: SET_COOKIE,
                    values: vec![b"JSESSIONID=\"NEW.tomcat1\"; Path=/app".to_vec()]
                },
                HeaderEdit::ReplaceAll {
                    name: LOCATION,
                    values: vec![b"/app;jsessionid=NEW.tomcat1".to_vec()]
                },
            ]
        );
    }

    #[test]
    fn strip_append_moves_a_client_without_route_or_with_another() {
        for held in [&b"X"[..], b"X.tomcat1"] {
            let plan = on_response(
                &cfg("strip_append"),
                "tomcat2",
                &client(Some(held)),
                NO_HEADERS,
            );
            assert!(plan.cookie_added, "{held:?}");
        }
        let plan = on_response(
            &cfg("strip_append"),
            "tomcat2",
            &client(Some(b"X.tomcat2")),
            NO_HEADERS,
        );
        assert!(plan.is_unchanged());
    }

    #[test]
    fn hostile_headers_pass_untouched() {
        let plan = on_response(
            &cfg("strip_append"),
            "tomcat2",
            &client(None),
            &[
                ("set-cookie", b"JSESSIONID=bad id; Path=/"),
                ("set-cookie", b"=x"),
                ("set-cookie", b"\xff\xfe"),
                ("location", b"/a;jsessionid=\xff"),
                ("location", b""),
            ],
        );
        assert!(plan.is_unchanged());
    }
}
