//! The `sticky` filter's configuration.
//!
//! ```json
//! { "cookie_names": ["JSESSIONID"], "path_parameters": ["jsessionid"],
//!   "header": "x-keel-route", "encoding": "route",
//!   "routes": { "tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082" } }
//! ```
//! Every key is optional, except `routes` with `"encoding": "envoy_host"`. Unknown keys are
//! refused.

use serde::Deserialize;

use super::{ConfigError, RouteMap, deserialize, fields};
use crate::base64;

/// What the routing header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The route name (`tomcat1`): keel's balancer reads it.
    #[default]
    Route,
    /// base64 of the backend's `ip:port`: what Envoy's `envoy.http.stateful_session.header` reads.
    EnvoyHost,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    cookie_names: Vec<String>,
    path_parameters: Vec<String>,
    header: String,
    encoding: Encoding,
    routes: Option<RouteMap>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            cookie_names: vec!["JSESSIONID".to_owned()],
            path_parameters: vec!["jsessionid".to_owned()],
            header: "x-keel-route".to_owned(),
            encoding: Encoding::Route,
            routes: None,
        }
    }
}

/// One configured route and the routing header value that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyRoute {
    /// The route name (`tomcat1`).
    pub route: String,
    /// The routing header's value for it: the name, or base64 of `ip:port`.
    pub header_value: String,
}

/// The validated configuration of the `sticky` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// Cookie names that carry the session id, in order of preference.
    pub cookie_names: Vec<String>,
    /// Path parameter names that carry it (`;jsessionid=`).
    pub path_parameters: Vec<String>,
    /// The routing header (lowercase).
    pub header: String,
    /// What the header carries.
    pub encoding: Encoding,
    /// The configured routes; `None` when there is no `routes` map (then, with the `route`
    /// encoding, any valid route passes through).
    pub routes: Option<Vec<StickyRoute>>,
}

impl Default for StickyConfig {
    fn default() -> Self {
        // The defaults are valid by construction; an empty document yields them.
        StickyConfig {
            cookie_names: vec!["JSESSIONID".to_owned()],
            path_parameters: vec!["jsessionid".to_owned()],
            header: "x-keel-route".to_owned(),
            encoding: Encoding::Route,
            routes: None,
        }
    }
}

impl StickyConfig {
    /// Parses and validates the plugin configuration (JSON bytes; empty means all defaults).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: Raw = deserialize(bytes)?;
        for (i, name) in raw.cookie_names.iter().enumerate() {
            fields::cookie_name(&format!("cookie_names[{i}]"), name)?;
        }
        for (i, name) in raw.path_parameters.iter().enumerate() {
            fields::parameter_name(&format!("path_parameters[{i}]"), name)?;
        }
        if raw.cookie_names.is_empty() && raw.path_parameters.is_empty() {
            return Err(ConfigError::new(
                "cookie_names",
                "cookie_names and path_parameters are both empty: no session id could ever be found",
            ));
        }
        let header = fields::header_name("header", &raw.header)?;
        let routes = match raw.routes {
            None if raw.encoding == Encoding::EnvoyHost => {
                return Err(ConfigError::new(
                    "routes",
                    "required with \"encoding\": \"envoy_host\" (the header carries the route's ip:port)",
                ));
            }
            None => None,
            Some(RouteMap(routes)) => {
                if routes.is_empty() {
                    return Err(ConfigError::new(
                        "routes",
                        "is empty: no route could ever be chosen",
                    ));
                }
                let mut out = Vec::with_capacity(routes.len());
                for (route, address) in routes {
                    let field = format!("routes.{route}");
                    fields::route_name(&field, &route)?;
                    let address = fields::address(&field, &address)?;
                    let header_value = match raw.encoding {
                        Encoding::Route => route.clone(),
                        Encoding::EnvoyHost => base64::encode(address.to_string().as_bytes()),
                    };
                    out.push(StickyRoute {
                        route,
                        header_value,
                    });
                }
                Some(out)
            }
        };
        Ok(StickyConfig {
            cookie_names: raw.cookie_names,
            path_parameters: raw.path_parameters,
            header,
            encoding: raw.encoding,
            routes,
        })
    }

    /// The routing header value for `route`: `None` for a route the `routes` map does not know.
    pub fn header_value_for<'s>(&'s self, route: &'s str) -> Option<&'s str> {
        match &self.routes {
            Some(routes) => routes
                .iter()
                .find(|r| r.route == route)
                .map(|r| r.header_value.as_str()),
            None => Some(route),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        StickyConfig::from_json(json.as_bytes()).expect_err("must be refused")
    }

    #[test]
    fn empty_config_is_all_defaults() {
        for empty in ["", "  \n", "{}"] {
            assert_eq!(
                StickyConfig::from_json(empty.as_bytes()),
                Ok(StickyConfig::default())
            );
        }
    }

    #[test]
    fn full_route_config() {
        let cfg = StickyConfig::from_json(
            br#"{ "cookie_names": ["JSESSIONID", "SID"], "path_parameters": ["jsessionid"],
                  "header": "X-Keel-Route", "encoding": "route",
                  "routes": { "tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082" } }"#,
        )
        .expect("valid");
        assert_eq!(cfg.header, "x-keel-route");
        assert_eq!(cfg.cookie_names, ["JSESSIONID", "SID"]);
        assert_eq!(cfg.header_value_for("tomcat2"), Some("tomcat2"));
        assert_eq!(cfg.header_value_for("tomcat3"), None);
    }

    #[test]
    fn envoy_host_encoding_is_base64_of_ip_port() {
        let cfg = StickyConfig::from_json(
            br#"{ "encoding": "envoy_host", "routes": { "t1": "127.0.0.1:8081", "t6": "[::1]:8080" } }"#,
        )
        .expect("valid");
        assert_eq!(cfg.header_value_for("t1"), Some("MTI3LjAuMC4xOjgwODE="));
        assert_eq!(cfg.header_value_for("t6"), Some("Wzo6MV06ODA4MA=="));
        assert_eq!(cfg.header_value_for("t2"), None);
    }

    #[test]
    fn without_routes_any_route_passes() {
        let cfg = StickyConfig::default();
        assert_eq!(cfg.header_value_for("anything"), Some("anything"));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"encoding": "envoy_host"}"#).field, "routes");
        assert_eq!(err(r#"{"routes": {}}"#).field, "routes");
        assert_eq!(
            err(r#"{"routes": {"t1": "localhost:80"}}"#).field,
            "routes.t1"
        );
        assert_eq!(
            err(r#"{"routes": {"t 1": "127.0.0.1:80"}}"#).field,
            "routes.t 1"
        );
        assert_eq!(
            err(r#"{"cookie_names": ["ok", "b a d"]}"#).field,
            "cookie_names[1]"
        );
        assert_eq!(
            err(r#"{"path_parameters": ["a;b"]}"#).field,
            "path_parameters[0]"
        );
        assert_eq!(
            err(r#"{"cookie_names": [], "path_parameters": []}"#).field,
            "cookie_names"
        );
        assert_eq!(err(r#"{"header": "cookie"}"#).field, "header");
        assert_eq!(err(r#"{"header": ""}"#).field, "header");
        assert_eq!(err(r#"{"encoding": "hex"}"#).field, "encoding");
        assert_eq!(err(r#"{"header": 5}"#).field, "header");
        assert_eq!(
            err(r#"{"cookie_names": ["a", 1]}"#).field,
            "cookie_names[1]"
        );
        assert_eq!(err(r#"{"routes": {"t1": 5}}"#).field, "routes.t1");
        let dup = err(r#"{"routes": {"a": "127.1.1.1:1", "a": "127.1.1.1:2"}}"#);
        assert_eq!(dup.field, "routes");
        assert!(dup.message.contains("named twice"), "{dup}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = err(r#"{"cookie_name": "JSESSIONID"}"#);
        assert!(e.to_string().contains("unknown field `cookie_name`"), "{e}");
        assert_eq!(e.field, "cookie_name");
    }

    #[test]
    fn syntax_errors_and_trailing_bytes() {
        assert!(StickyConfig::from_json(b"{").is_err());
        assert!(StickyConfig::from_json(b"{} x").is_err());
        assert!(StickyConfig::from_json(b"[]").is_err());
        assert!(StickyConfig::from_json(b"\xff").is_err());
    }
}
