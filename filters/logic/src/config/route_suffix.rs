//! The `route_suffix` filter's configuration.
//!
//! ```json
//! { "cookie_name": "JSESSIONID", "path_parameter": "jsessionid",
//!   "routes": { "tomcat1": "127.0.0.1:8081" },
//!   "mode": "rewrite",
//!   "cookie": { "path": "/", "domain": "example.com", "http_only": true, "secure": false,
//!               "same_site": "Lax" } }
//! ```
//! `routes` is required (it is how the filter turns `upstream.address` into a route); the rest is
//! optional. Unknown keys are refused.

use serde::Deserialize;

use super::{ConfigError, RouteMap, RouteTargets, deserialize, fields};
use crate::new_cookie::CookieAttributes;

/// What the filter does with the route suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The backend knows its jvmRoute: make the id the client holds name the route that really
    /// served (after a failover).
    #[default]
    Rewrite,
    /// The backend knows no jvmRoute: strip `.route` from the id on the way in, append the serving
    /// route on the way out.
    StripAppend,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    cookie_name: String,
    path_parameter: String,
    routes: Option<RouteMap>,
    mode: Mode,
    cookie: CookieAttributes,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            cookie_name: "JSESSIONID".to_owned(),
            path_parameter: "jsessionid".to_owned(),
            routes: None,
            mode: Mode::Rewrite,
            cookie: CookieAttributes::default(),
        }
    }
}

/// The validated configuration of the `route_suffix` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSuffixConfig {
    /// The session cookie's name.
    pub cookie_name: String,
    /// The session path parameter's name (`;jsessionid=`).
    pub path_parameter: String,
    /// The routes in document order; names and addresses unique.
    pub routes: RouteTargets,
    /// Rewrite, or strip/append.
    pub mode: Mode,
    /// Attributes of a cookie the filter sets itself.
    pub cookie: CookieAttributes,
}

impl RouteSuffixConfig {
    /// Parses and validates the plugin configuration (JSON bytes).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: Raw = deserialize(bytes)?;
        fields::cookie_name("cookie_name", &raw.cookie_name)?;
        fields::parameter_name("path_parameter", &raw.path_parameter)?;
        fields::cookie_attributes("cookie", &raw.cookie)?;
        let routes = RouteTargets::from_map("routes", raw.routes)?;
        Ok(RouteSuffixConfig {
            cookie_name: raw.cookie_name,
            path_parameter: raw.path_parameter,
            routes,
            mode: raw.mode,
            cookie: raw.cookie,
        })
    }

    /// The route of the backend at `address` (the `upstream.address` property's bytes, `ip:port`).
    pub fn route_for_address(&self, address: &[u8]) -> Option<&str> {
        self.routes.route_for_address(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_cookie::SameSite;

    fn err(json: &str) -> ConfigError {
        RouteSuffixConfig::from_json(json.as_bytes()).expect_err("must be refused")
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let cfg = RouteSuffixConfig::from_json(br#"{"routes": {"tomcat1": "127.0.0.1:8081"}}"#)
            .expect("valid");
        assert_eq!(cfg.cookie_name, "JSESSIONID");
        assert_eq!(cfg.path_parameter, "jsessionid");
        assert_eq!(cfg.mode, Mode::Rewrite);
        assert_eq!(cfg.cookie, CookieAttributes::default());
    }

    #[test]
    fn full_config() {
        let cfg = RouteSuffixConfig::from_json(
            br#"{ "cookie_name": "SID", "path_parameter": "sid",
                  "routes": { "tomcat1": "127.0.0.1:8081", "tomcat2": "[::1]:8082" },
                  "mode": "strip_append",
                  "cookie": { "path": "/app", "http_only": false, "secure": true, "same_site": "None",
                              "domain": "example.com" } }"#,
        )
        .expect("valid");
        assert_eq!(cfg.mode, Mode::StripAppend);
        assert_eq!(cfg.cookie.same_site, Some(SameSite::None));
        assert_eq!(cfg.route_for_address(b"127.0.0.1:8081"), Some("tomcat1"));
        assert_eq!(cfg.route_for_address(b"[0:0::1]:8082"), Some("tomcat2"));
        assert_eq!(cfg.route_for_address(b"127.0.0.1:9999"), None);
        assert_eq!(cfg.route_for_address(b"\xff"), None);
        assert_eq!(cfg.route_for_address(b""), None);
    }

    #[test]
    fn path_null_leaves_path_out() {
        let cfg = RouteSuffixConfig::from_json(
            br#"{"routes": {"t": "127.1.2.4:5"}, "cookie": {"path": null}}"#,
        )
        .expect("valid");
        assert_eq!(cfg.cookie.path, None);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err("").field, "routes");
        assert_eq!(err(r#"{"routes": {}}"#).field, "routes");
        assert_eq!(
            err(r#"{"routes": {"t1": "127.1.2.4:5", "t2": "127.1.2.4:5"}}"#).field,
            "routes.t2"
        );
        assert_eq!(err(r#"{"routes": {"t1": "nope"}}"#).field, "routes.t1");
        assert_eq!(
            err(r#"{"routes": {"t": "127.1.2.4:5"}, "mode": "append"}"#).field,
            "mode"
        );
        assert_eq!(
            err(r#"{"routes": {"t": "127.1.2.4:5"}, "cookie_name": ""}"#).field,
            "cookie_name"
        );
        assert_eq!(
            err(r#"{"routes": {"t": "127.1.2.4:5"}, "path_parameter": "a/b"}"#).field,
            "path_parameter"
        );
        assert_eq!(
            err(r#"{"routes": {"t": "127.1.2.4:5"}, "cookie": {"secure": "yes"}}"#).field,
            "cookie.secure"
        );
        assert_eq!(
            err(r#"{"routes": {"t": "127.1.2.4:5"}, "cookie": {"same_site": "lax"}}"#).field,
            "cookie.same_site"
        );
        assert_eq!(
            err(r#"{"routes": {"t": "127.1.2.4:5"}, "cookie": {"same_site": "None"}}"#).field,
            "cookie.same_site"
        );
        let e = err(r#"{"routes": {"t": "127.1.2.4:5"}, "cookie": {"max_age": 5}}"#);
        assert_eq!(e.field, "cookie.max_age");
        assert!(e.message.contains("unknown field `max_age`"), "{e}");
        let e = err(r#"{"routes": {"t": "127.1.2.4:5"}, "cookies": {}}"#);
        assert!(e.message.contains("unknown field `cookies`"), "{e}");
    }
}
