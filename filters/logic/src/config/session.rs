//! The `session` filter's configuration.
//!
//! ```json
//! { "store_upstream": "keel_store", "store_timeout_ms": 1000,
//!   "cookie_name": "JSESSIONID", "path_parameter": "jsessionid",
//!   "cookie": { "path": "/", "http_only": true, "secure": false },
//!   "ignore_pattern": ".*\\.(ico|png|gif|jpg|css|js)$",
//!   "idle_timeout_seconds": 1800, "max_state_bytes": 4096,
//!   "fail_closed": false, "write_mode": "sync",
//!   "routes": { "tomcat1": "127.0.0.1:8081" } }
//! ```
//! `routes` is required (keel fills it with `inject_routes: true`): it turns `upstream.address`
//! into the route the cookie names. `ignore_pattern` must match the whole path (without the
//! query), as msm's `requestUriIgnorePattern`; `null` ignores nothing. Unknown keys are refused.

use regex_lite::Regex;
use serde::Deserialize;

use super::{ConfigError, RouteMap, RouteTargets, deserialize, fields};
use crate::new_cookie::CookieAttributes;

/// msm's default `requestUriIgnorePattern`: static resources neither load nor store a session.
pub const DEFAULT_IGNORE_PATTERN: &str = r".*\.(ico|png|gif|jpg|css|js)$";

/// The largest `max_state_bytes` accepted: the state travels in one request header.
pub const MAX_STATE_BYTES_LIMIT: usize = 64 * 1024;

/// Whether the response waits for the store's answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// The response waits until the state is stored (nothing is lost if the proxy dies then).
    #[default]
    Sync,
    /// Saves and deletes are sent and the response goes on at once. A create or a rotation still
    /// waits: the new id, which the cookie carries, comes from the store.
    Async,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    store_upstream: String,
    store_timeout_ms: u64,
    cookie_name: String,
    path_parameter: String,
    cookie: CookieAttributes,
    ignore_pattern: Option<String>,
    idle_timeout_seconds: u64,
    max_state_bytes: usize,
    fail_closed: bool,
    write_mode: WriteMode,
    routes: Option<RouteMap>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            store_upstream: "keel_store".to_owned(),
            store_timeout_ms: 1000,
            cookie_name: "JSESSIONID".to_owned(),
            path_parameter: "jsessionid".to_owned(),
            cookie: CookieAttributes::default(),
            ignore_pattern: Some(DEFAULT_IGNORE_PATTERN.to_owned()),
            idle_timeout_seconds: 1800,
            max_state_bytes: 4096,
            fail_closed: false,
            write_mode: WriteMode::Sync,
            routes: None,
        }
    }
}

/// The validated configuration of the `session` filter.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The callout upstream (cluster) that serves the store API; also the calls' `:authority`.
    pub store_upstream: String,
    /// How long a store call may take, in milliseconds.
    pub store_timeout_ms: u64,
    /// The session cookie's name.
    pub cookie_name: String,
    /// The session path parameter's name (`;jsessionid=`).
    pub path_parameter: String,
    /// Attributes of the cookie the filter sets.
    pub cookie: CookieAttributes,
    /// Paths (without the query) that neither load nor store — the whole path must match, as in
    /// msm; `None`: none.
    pub ignore_pattern: Option<Regex>,
    /// The idle timeout (the store's TTL), in seconds.
    pub idle_timeout_seconds: u64,
    /// The largest state a backend may return, in bytes.
    pub max_state_bytes: usize,
    /// Answer 503 when the store cannot be reached on load (else go on without state).
    pub fail_closed: bool,
    /// Whether the response waits for writes.
    pub write_mode: WriteMode,
    /// The routes: which member served a response.
    pub routes: RouteTargets,
}

impl SessionConfig {
    /// Parses and validates the plugin configuration (JSON bytes).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: Raw = deserialize(bytes)?;
        // The upstream name is a cluster name and the calls' `:authority`: a header-safe token.
        if !crate::syntax::is_token(raw.store_upstream.as_bytes()) {
            return Err(ConfigError::new(
                "store_upstream",
                format!(
                    "`{}` is not an upstream name (an HTTP token)",
                    raw.store_upstream
                ),
            ));
        }
        if !(1..=60_000).contains(&raw.store_timeout_ms) {
            return Err(ConfigError::new(
                "store_timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        fields::cookie_name("cookie_name", &raw.cookie_name)?;
        fields::parameter_name("path_parameter", &raw.path_parameter)?;
        fields::cookie_attributes("cookie", &raw.cookie)?;
        let ignore_pattern = match &raw.ignore_pattern {
            None => None,
            // The whole path must match, as msm's `Pattern.matcher(uri).matches()` wants it.
            Some(pattern) => Some(Regex::new(&format!("^(?:{pattern})$")).map_err(|err| {
                ConfigError::new("ignore_pattern", format!("not a regular expression: {err}"))
            })?),
        };
        if raw.idle_timeout_seconds == 0 {
            return Err(ConfigError::new(
                "idle_timeout_seconds",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_STATE_BYTES_LIMIT).contains(&raw.max_state_bytes) {
            return Err(ConfigError::new(
                "max_state_bytes",
                format!("must be between 1 and {MAX_STATE_BYTES_LIMIT}"),
            ));
        }
        let routes = RouteTargets::from_map("routes", raw.routes)?;
        Ok(SessionConfig {
            store_upstream: raw.store_upstream,
            store_timeout_ms: raw.store_timeout_ms,
            cookie_name: raw.cookie_name,
            path_parameter: raw.path_parameter,
            cookie: raw.cookie,
            ignore_pattern,
            idle_timeout_seconds: raw.idle_timeout_seconds,
            max_state_bytes: raw.max_state_bytes,
            fail_closed: raw.fail_closed,
            write_mode: raw.write_mode,
            routes,
        })
    }

    /// Whether a request for `path` (`:path`, the query is cut off here) is ignored: neither
    /// loaded nor stored. A path that is not UTF-8 is matched with its bad bytes replaced.
    pub fn is_ignored(&self, path: &[u8]) -> bool {
        let Some(pattern) = &self.ignore_pattern else {
            return false;
        };
        let end = memchr::memchr2(b'?', b'#', path).unwrap_or(path.len());
        pattern.is_match(&String::from_utf8_lossy(&path[..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#""routes": {"tomcat1": "127.0.0.1:8081"}"#;

    fn cfg(extra: &str) -> Result<SessionConfig, ConfigError> {
        let sep = if extra.is_empty() { "" } else { ", " };
        SessionConfig::from_json(format!("{{{ROUTES}{sep}{extra}}}").as_bytes())
    }

    fn field(extra: &str) -> String {
        cfg(extra).expect_err("must be refused").field
    }

    #[test]
    fn defaults() {
        let c = cfg("").expect("valid");
        assert_eq!(c.store_upstream, "keel_store");
        assert_eq!(c.store_timeout_ms, 1000);
        assert_eq!(c.cookie_name, "JSESSIONID");
        assert_eq!(c.path_parameter, "jsessionid");
        assert_eq!(c.cookie, CookieAttributes::default());
        assert_eq!(c.idle_timeout_seconds, 1800);
        assert_eq!(c.max_state_bytes, 4096);
        assert!(!c.fail_closed);
        assert_eq!(c.write_mode, WriteMode::Sync);
        assert_eq!(
            c.routes.route_for_address(b"127.0.0.1:8081"),
            Some("tomcat1")
        );
    }

    #[test]
    fn default_ignore_pattern_is_msms() {
        let c = cfg("").expect("valid");
        for ignored in [
            &b"/favicon.ico"[..],
            b"/s/a.css?v=1",
            b"/app.js#x",
            b"/i.png",
        ] {
            assert!(c.is_ignored(ignored), "{ignored:?}");
        }
        for kept in [&b"/"[..], b"/shop", b"/a.jsp", b"/x?f=a.css", b"/\xff.cs"] {
            assert!(!c.is_ignored(kept), "{kept:?}");
        }
        let c = cfg(r#""ignore_pattern": null"#).expect("valid");
        assert!(!c.is_ignored(b"/favicon.ico"));
        let c = cfg(r#""ignore_pattern": "/static/.*""#).expect("valid");
        assert!(c.is_ignored(b"/static/x"));
        assert!(!c.is_ignored(b"/app/static/x"), "the whole path must match");
        let c = cfg(r#""ignore_pattern": "a|/b""#).expect("valid");
        assert!(
            !c.is_ignored(b"/ab"),
            "alternatives stay inside the anchors"
        );
        assert!(c.is_ignored(b"/b"));
    }

    #[test]
    fn full_config() {
        let c = cfg(
            r#""store_upstream": "store2", "store_timeout_ms": 250, "cookie_name": "SID",
               "path_parameter": "sid", "cookie": {"path": "/app", "secure": true},
               "idle_timeout_seconds": 60, "max_state_bytes": 100, "fail_closed": true,
               "write_mode": "async""#,
        )
        .expect("valid");
        assert_eq!(c.store_upstream, "store2");
        assert_eq!(c.cookie.path.as_deref(), Some("/app"));
        assert!(c.cookie.secure && c.fail_closed);
        assert_eq!(c.write_mode, WriteMode::Async);
        assert_eq!((c.idle_timeout_seconds, c.max_state_bytes), (60, 100));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            SessionConfig::from_json(b"{}")
                .expect_err("no routes")
                .field,
            "routes"
        );
        assert_eq!(field(r#""store_upstream": "a b""#), "store_upstream");
        assert_eq!(field(r#""store_timeout_ms": 0"#), "store_timeout_ms");
        assert_eq!(field(r#""cookie_name": "a;b""#), "cookie_name");
        assert_eq!(field(r#""path_parameter": "a=b""#), "path_parameter");
        assert_eq!(field(r#""cookie": {"path": "x"}"#), "cookie.path");
        assert_eq!(field(r#""ignore_pattern": "(""#), "ignore_pattern");
        assert_eq!(field(r#""ignore_pattern": 5"#), "ignore_pattern");
        assert_eq!(
            field(r#""idle_timeout_seconds": 0"#),
            "idle_timeout_seconds"
        );
        assert_eq!(
            field(r#""idle_timeout_seconds": -1"#),
            "idle_timeout_seconds"
        );
        assert_eq!(field(r#""max_state_bytes": 0"#), "max_state_bytes");
        assert_eq!(field(r#""max_state_bytes": 1000000"#), "max_state_bytes");
        assert_eq!(field(r#""fail_closed": "yes""#), "fail_closed");
        assert_eq!(field(r#""write_mode": "later""#), "write_mode");
        let e = cfg(r#""colour": 1"#).expect_err("unknown");
        assert_eq!(e.field, "colour");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
    }
}
