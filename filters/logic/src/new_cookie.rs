//! A new `Set-Cookie` built from configured attributes (route_suffix uses it to move a client to
//! the route that really served it when the backend set no cookie itself; the session filter to
//! hand out the ids it owns, and to expire one).

use serde::Deserialize;

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

impl SameSite {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            SameSite::Strict => b"Strict",
            SameSite::Lax => b"Lax",
            SameSite::None => b"None",
        }
    }
}

/// The attributes of a cookie the filter sets itself (plugin configuration key `cookie`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieAttributes {
    /// `Path`; `null` leaves it out. Default `/`.
    pub path: Option<String>,
    /// `Domain`; absent by default (host-only cookie).
    pub domain: Option<String>,
    /// `HttpOnly`; default true.
    pub http_only: bool,
    /// `Secure`; default false.
    pub secure: bool,
    /// `SameSite`; absent by default.
    pub same_site: Option<SameSite>,
}

impl Default for CookieAttributes {
    fn default() -> Self {
        CookieAttributes {
            path: Some("/".to_owned()),
            domain: None,
            http_only: true,
            secure: false,
            same_site: None,
        }
    }
}

/// `name=value; Path=…; Domain=…; Secure; HttpOnly; SameSite=…` (only what is configured).
pub fn build(name: &[u8], value: &[u8], attrs: &CookieAttributes) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 48);
    out.extend_from_slice(name);
    out.push(b'=');
    out.extend_from_slice(value);
    if let Some(path) = &attrs.path {
        out.extend_from_slice(b"; Path=");
        out.extend_from_slice(path.as_bytes());
    }
    if let Some(domain) = &attrs.domain {
        out.extend_from_slice(b"; Domain=");
        out.extend_from_slice(domain.as_bytes());
    }
    if attrs.secure {
        out.extend_from_slice(b"; Secure");
    }
    if attrs.http_only {
        out.extend_from_slice(b"; HttpOnly");
    }
    if let Some(same_site) = attrs.same_site {
        out.extend_from_slice(b"; SameSite=");
        out.extend_from_slice(same_site.as_bytes());
    }
    out
}

/// A `Set-Cookie` that makes the browser drop the cookie `name` (same Path and Domain as the one
/// it replaces, an empty value, `Max-Age=0`).
pub fn build_expired(name: &[u8], attrs: &CookieAttributes) -> Vec<u8> {
    let mut out = build(name, b"", attrs);
    out.extend_from_slice(b"; Max-Age=0");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set_cookie::SetCookie;

    #[test]
    fn defaults() {
        assert_eq!(
            build(b"JSESSIONID", b"ABC.t2", &CookieAttributes::default()),
            b"JSESSIONID=ABC.t2; Path=/; HttpOnly"
        );
    }

    #[test]
    fn expired() {
        assert_eq!(
            build_expired(b"JSESSIONID", &CookieAttributes::default()),
            b"JSESSIONID=; Path=/; HttpOnly; Max-Age=0"
        );
    }

    #[test]
    fn everything() {
        let attrs = CookieAttributes {
            path: Some("/shop".into()),
            domain: Some("example.com".into()),
            http_only: true,
            secure: true,
            same_site: Some(SameSite::None),
        };
        let out = build(b"JSESSIONID", b"ABC.t2", &attrs);
        assert_eq!(
            out,
            b"JSESSIONID=ABC.t2; Path=/shop; Domain=example.com; Secure; HttpOnly; SameSite=None"
        );
        let parsed = SetCookie::parse(&out).expect("parses");
        assert_eq!(parsed.value, b"ABC.t2");
        assert_eq!(parsed.attribute(b"samesite"), Some(Some(&b"None"[..])));
    }

    #[test]
    fn nothing() {
        let attrs = CookieAttributes {
            path: None,
            domain: None,
            http_only: false,
            secure: false,
            same_site: Some(SameSite::Strict),
        };
        assert_eq!(build(b"S", b"X", &attrs), b"S=X; SameSite=Strict");
    }
}
