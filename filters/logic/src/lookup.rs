//! Finding the client's session id in a request: the configured path parameters first (the URL
//! parameter wins, as in mod_proxy_balancer), then the configured cookies, in header order. The
//! first candidate that is a valid session id is the session; invalid candidates are passed over.

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
    /// Picks `:path` and the `cookie` headers out of a header list (names ASCII case-insensitive).
    pub fn from_headers(headers: &[(&'a str, &'a [u8])]) -> Self {
        let mut parts = RequestParts::default();
        for &(name, value) in headers {
            if name == ":path" {
                parts.path.get_or_insert(value);
            } else if name_is(name, "cookie") {
                parts.cookies.push(value);
            }
        }
        parts
    }
}

/// The first valid session id among the path parameters named in `path_names` and the cookies
/// named in `cookie_names`.
pub fn find_session<'a, S: AsRef<str>>(
    parts: &RequestParts<'a>,
    path_names: &[S],
    cookie_names: &[S],
) -> Lookup<'a> {
    let mut seen_invalid = false;
    if let Some(path) = parts.path {
        let is_name = |n: &[u8]| path_names.iter().any(|p| p.as_ref().as_bytes() == n);
        for (_, param) in path_param::find_all(path, is_name) {
            match SessionId::parse(param.value) {
                Some(id) => return Lookup::Found(id, Source::PathParameter),
                None => seen_invalid = true,
            }
        }
    }
    for header in &parts.cookies {
        for pair in cookie::pairs(header) {
            if !cookie_names
                .iter()
                .any(|c| c.as_ref().as_bytes() == pair.name)
            {
                continue;
            }
            match SessionId::parse(pair.value) {
                Some(id) => return Lookup::Found(id, Source::Cookie),
                None => seen_invalid = true,
            }
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
            Lookup::Found(id, source) => Some((id.to_vec(), source)),
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
}
