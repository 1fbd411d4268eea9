//! Validation of the individual fields both filters share: cookie and parameter names, header
//! names, route names, `ip:port` addresses, cookie attributes.

use core::net::SocketAddr;

use super::ConfigError;
use crate::new_cookie::{CookieAttributes, SameSite};
use crate::session_id;
use crate::syntax::is_token;

/// Headers a routing header must not be: the filter removes and sets it on every request.
const FORBIDDEN_HEADERS: &[&str] = &[
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
];

/// A cookie name: an HTTP token of at most 256 bytes.
pub fn cookie_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if !is_token(name.as_bytes()) || name.len() > 256 {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is not a cookie name (an HTTP token)"),
        ));
    }
    Ok(())
}

/// A path parameter name: 1–256 visible ASCII bytes without `; / ? # = %`.
pub fn parameter_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b";/?#=%".contains(&b));
    if !ok {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is not a path parameter name (visible ASCII without ; / ? # = %)"),
        ));
    }
    Ok(())
}

/// A header name: a token, returned in lowercase (how proxy-wasm hosts store header names).
pub fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if !is_token(name.as_bytes()) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is not a header name (an HTTP token)"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` cannot be the routing header"),
        ));
    }
    Ok(lower)
}

/// A route name: 1–64 bytes of `[A-Za-z0-9_.-]`.
pub fn route_name(field: &str, route: &str) -> Result<(), ConfigError> {
    if !session_id::is_valid_route(route.as_bytes()) {
        return Err(ConfigError::new(
            field,
            format!("`{route}` is not a route name (1-64 of A-Za-z0-9_.-)"),
        ));
    }
    Ok(())
}

/// An `ip:port` address (`127.0.0.1:8081`, `[::1]:8081`).
pub fn address(field: &str, address: &str) -> Result<SocketAddr, ConfigError> {
    address
        .parse::<SocketAddr>()
        .map_err(|_| ConfigError::new(field, format!("`{address}` is not an ip:port address")))
}

/// The attributes of a cookie the filter sets: values a `Set-Cookie` can carry as they are.
pub fn cookie_attributes(field: &str, attrs: &CookieAttributes) -> Result<(), ConfigError> {
    if let Some(path) = &attrs.path {
        let ok =
            path.starts_with('/') && path.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b';');
        if !ok {
            return Err(ConfigError::new(
                format!("{field}.path"),
                format!("`{path}` is not a cookie path (starts with /, printable ASCII, no ;)"),
            ));
        }
    }
    if let Some(domain) = &attrs.domain {
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(ConfigError::new(
                format!("{field}.domain"),
                format!("`{domain}` is not a cookie domain (letters, digits, . and -)"),
            ));
        }
    }
    if attrs.same_site == Some(SameSite::None) && !attrs.secure {
        return Err(ConfigError::new(
            format!("{field}.same_site"),
            "\"None\" needs \"secure\": true (browsers drop SameSite=None cookies without Secure)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(cookie_name("f", "JSESSIONID").is_ok());
        assert!(cookie_name("f", "").is_err());
        assert!(cookie_name("f", "a b").is_err());
        assert!(parameter_name("f", "jsessionid").is_ok());
        assert!(parameter_name("f", "a;b").is_err());
        assert!(parameter_name("f", "a=b").is_err());
        assert!(parameter_name("f", "").is_err());
        assert_eq!(
            header_name("f", "X-Keel-Route").as_deref(),
            Ok("x-keel-route")
        );
        assert!(header_name("f", ":path").is_err());
        assert!(header_name("f", "Cookie").is_err());
        assert!(route_name("f", "tomcat-1").is_ok());
        assert!(route_name("f", "tomcat 1").is_err());
        assert!(route_name("f", "").is_err());
    }

    #[test]
    fn addresses() {
        assert!(address("f", "127.0.0.1:8081").is_ok());
        assert!(address("f", "[::1]:8081").is_ok());
        assert!(address("f", "localhost:8081").is_err());
        assert!(address("f", "127.0.0.1").is_err());
        let err = address("routes.t1", "nope").expect_err("invalid");
        assert_eq!(err.field, "routes.t1");
    }

    #[test]
    fn attributes() {
        let mut attrs = CookieAttributes::default();
        assert!(cookie_attributes("cookie", &attrs).is_ok());
        attrs.path = Some("shop".into());
        assert_eq!(
            cookie_attributes("cookie", &attrs).expect_err("bad").field,
            "cookie.path"
        );
        attrs.path = Some("/a;b".into());
        assert_eq!(
            cookie_attributes("cookie", &attrs).expect_err("bad").field,
            "cookie.path"
        );
        attrs.path = None;
        attrs.domain = Some("exa mple.com".into());
        assert_eq!(
            cookie_attributes("cookie", &attrs).expect_err("bad").field,
            "cookie.domain"
        );
        attrs.domain = None;
        attrs.same_site = Some(SameSite::None);
        assert_eq!(
            cookie_attributes("cookie", &attrs).expect_err("bad").field,
            "cookie.same_site"
        );
        attrs.secure = true;
        assert!(cookie_attributes("cookie", &attrs).is_ok());
    }
}
