//! Finding the client's session id in a request: the configured path parameters first (the URL
//! parameter wins, as in mod_proxy_balancer), then the configured cookies; each list in its
//! configured order, and for one name in request order. The first candidate that is a valid
//! session id is the session; invalid candidates are passed over.

use crate::cookie;
use crate::path_param;
use crate::session_id::SessionId;
use crate::syntax::name_is;

/// Where a session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `;name=value` path parameter.
    PathParameter,
    /// A cookie.
    Cookie,
}

impl Source {
    /// A short word for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::PathParameter => "path",
            Source::Cookie => "cookie",
        }
    }
}

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A valid session id.
    Found(SessionId<'a>, Source),
    /// Candidates with a configured name were there, but none was a valid session id.
    Invalid,
    /// No candidate at all.
    Absent,
}

/// The parts of the request headers the filters read: `:path` and every `cookie` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// The `:path` pseudo-header (path and query).
    pub path: Option<&'a [u8]>,
    /// Every `cookie` header, in order.
    pub cookies: Vec<&'a [u8]>,
}

impl<'a> RequestParts<'a> {
    /// Picks `:path` and the `cookie` headers out of a header list (names ASCII case-insensitive,
    /// as text or as the bytes the host sent).
    pub fn from_headers<N: AsRef<[u8]>>(headers: &[(N, &'a [u8])]) -> Self {
        let mut parts = RequestParts::default();
        for (name, value) in headers {
            let name = name.as_ref();
            if name == b":path" {
                parts.path.get_or_insert(*value);
            } else if name_is(name, "cookie") {
                parts.cookies.push(*value);
            }
        }
        parts
    }
}

/// The first valid session id among the path parameters named in `path_names` and the cookies
/// named in `cookie_names`. Names are tried in the configured order (their order of preference);
/// for one name, candidates in the order they stand in the request.
pub fn find_session<'a, P: AsRef<str>, C: AsRef<str>>(
    parts: &RequestParts<'a>,
    path_names: &[P],
    cookie_names: &[C],
) -> Lookup<'a> {
    let path = parts.path.unwrap_or_default();
    let from_path = path_names.iter().flat_map(|name| {
        let name = name.as_ref().as_bytes();
        path_param::find_all(path, move |n| n == name)
            .map(|(_, param)| (param.value, Source::PathParameter))
    });
    let from_cookies = cookie_names.iter().flat_map(|name| {
        let name = name.as_ref().as_bytes();
        parts
            .cookies
            .iter()
            .flat_map(|header| cookie::pairs(header))
            .filter(move |pair| pair.name == name)
            .map(|pair| (pair.value, Source::Cookie))
    });
    let mut seen_invalid = false;
    for (value, source) in from_path.chain(from_cookies) {
        match SessionId::parse(value) {
            Some(id) => return Lookup::Found(id, source),
            None => seen_invalid = true,
        }
    }
    if seen_invalid {
        Lookup::Invalid
    } else {
        Lookup::Absent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: &[&str] = &["jsessionid"];
    const COOKIES: &[&str] = &["JSESSIONID"];

    fn lookup<'a>(headers: &[(&'a str, &'a [u8])]) -> Lookup<'a> {
        find_session(&RequestParts::from_headers(headers), PATHS, COOKIES)
    }

    fn found(l: Lookup<'_>) -> Option<(Vec<u8>, Source)> {
        match l {
            Lookup::Found(id, source) => Some((id.as_bytes().to_vec(), source)),
            _ => None,
        }
    }

    #[test]
    fn url_parameter_wins_over_cookie() {
        let l = lookup(&[
            (":path", b"/a;jsessionid=URL.t2"),
            ("cookie", b"JSESSIONID=CK.t1"),
        ]);
        assert_eq!(found(l), Some((b"URL.t2".to_vec(), Source::PathParameter)));
    }

    #[test]
    fn invalid_url_parameter_falls_back_to_cookie() {
        let l = lookup(&[
            (":path", b"/a;jsessionid=b%61d"),
            ("cookie", b"JSESSIONID=CK.t1"),
        ]);
        assert_eq!(found(l), Some((b"CK.t1".to_vec(), Source::Cookie)));
    }

    #[test]
    fn first_valid_cookie_across_headers() {
        let l = lookup(&[
            (":path", b"/"),
            ("cookie", b"JSESSIONID=\"\"; JSESSIONID=bad value"),
            (
                "Cookie",
                b"other=1; JSESSIONID=GOOD.t3; JSESSIONID=LATER.t4",
            ),
        ]);
        assert_eq!(found(l), Some((b"GOOD.t3".to_vec(), Source::Cookie)));
    }

    #[test]
    fn quoted_cookie_value_is_unquoted() {
        let l = lookup(&[("cookie", b"JSESSIONID=\"Q.t1\"")]);
        assert_eq!(found(l), Some((b"Q.t1".to_vec(), Source::Cookie)));
    }

    #[test]
    fn invalid_and_absent() {
        assert_eq!(
            lookup(&[("cookie", b"JSESSIONID=\xff\xfe")]),
            Lookup::Invalid
        );
        assert_eq!(lookup(&[(":path", b"/a;jsessionid=")]), Lookup::Invalid);
        assert_eq!(
            lookup(&[(":path", b"/a?jsessionid=X"), ("cookie", b"SID=X")]),
            Lookup::Absent
        );
        assert_eq!(lookup(&[]), Lookup::Absent);
    }

    #[test]
    fn several_configured_names() {
        let parts = RequestParts::from_headers(&[("cookie", b"SID=S.t9")]);
        let l = find_session(&parts, &["jsessionid"], &["JSESSIONID", "SID"]);
        assert_eq!(found(l), Some((b"S.t9".to_vec(), Source::Cookie)));
    }

    #[test]
    fn configured_names_are_tried_in_order_of_preference() {
        let parts = RequestParts::from_headers(&[
            (":path", b"/a;sid=P.t8;jsessionid=J.t7"),
            ("cookie", b"SID=S.t9"),
            ("cookie", b"JSESSIONID=bad value; JSESSIONID=J.t1"),
        ]);
        let l = find_session(&parts, &["jsessionid", "sid"], &["JSESSIONID", "SID"]);
        assert_eq!(found(l), Some((b"J.t7".to_vec(), Source::PathParameter)));
        let l = find_session(&parts, &["none"], &["JSESSIONID", "SID"]);
        assert_eq!(found(l), Some((b"J.t1".to_vec(), Source::Cookie)));
        let l = find_session(&parts, &["none"], &["SID", "JSESSIONID"]);
        assert_eq!(found(l), Some((b"S.t9".to_vec(), Source::Cookie)));
    }
}
