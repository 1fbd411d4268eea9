//! The `routes` map (route name → backend `ip:port`), deserialized in document order and
//! refusing a route named twice (a JSON object with a repeated key would otherwise silently keep
//! only the last one); validated into [`RouteTargets`], which turns the `upstream.address` of a
//! response into the route that served it (the route_suffix and session filters).

use core::fmt;
use core::net::SocketAddr;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::{ConfigError, fields};

/// `routes` as written: (route, address) pairs in document order, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for RouteMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RoutesVisitor;

        impl<'de> Visitor<'de> for RoutesVisitor {
            type Value = RouteMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of route name to \"ip:port\"")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RouteMap, A::Error> {
                let mut routes: Vec<(String, String)> = Vec::new();
                while let Some((route, address)) = map.next_entry::<String, String>()? {
                    if routes.iter().any(|(r, _)| *r == route) {
                        return Err(serde::de::Error::custom(format!(
                            "route `{route}` is named twice"
                        )));
                    }
                    routes.push((route, address));
                }
                Ok(RouteMap(routes))
            }
        }

        deserializer.deserialize_map(RoutesVisitor)
    }
}

/// One entry of `routes`: a route name and the backend address it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// The route name (Tomcat's jvmRoute).
    pub route: String,
    /// The backend's `ip:port`.
    pub address: SocketAddr,
    /// `address` written the way hosts write `upstream.address` (`127.0.0.1:8081`, `[::1]:8082`),
    /// so that the usual answer is matched without parsing it.
    text: String,
}

/// A validated, required `routes` map: names are routes, addresses `ip:port`, both unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTargets(Vec<RouteTarget>);

impl RouteTargets {
    /// Validates the `routes` map at `field`: required and non-empty (it is how a filter turns
    /// `upstream.address` into a route).
    pub fn from_map(field: &str, map: Option<RouteMap>) -> Result<Self, ConfigError> {
        let Some(RouteMap(routes)) = map else {
            return Err(ConfigError::new(
                field,
                "required: the map of route name to backend ip:port that turns upstream.address into a route",
            ));
        };
        if routes.is_empty() {
            return Err(ConfigError::new(
                field,
                "is empty: no backend could ever be named",
            ));
        }
        let mut checked: Vec<RouteTarget> = Vec::with_capacity(routes.len());
        for (route, address) in routes {
            let entry = format!("{field}.{route}");
            fields::route_name(&entry, &route)?;
            let address = fields::address(&entry, &address)?;
            if let Some(other) = checked.iter().find(|t| t.address == address) {
                return Err(ConfigError::new(
                    entry,
                    format!(
                        "{address} is already the address of route `{}`",
                        other.route
                    ),
                ));
            }
            checked.push(RouteTarget {
                route,
                address,
                text: address.to_string(),
            });
        }
        Ok(RouteTargets(checked))
    }

    /// The routes, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &RouteTarget> {
        self.0.iter()
    }

    /// How many routes there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an empty map is refused.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The route of the backend at `address` (the `upstream.address` property's bytes, `ip:port`).
    pub fn route_for_address(&self, address: &[u8]) -> Option<&str> {
        let target = match self.0.iter().find(|t| t.text.as_bytes() == address) {
            Some(target) => target,
            None => {
                // Another spelling of an address (`[0:0::1]:8082`, spaces): compare it parsed.
                let address: SocketAddr =
                    core::str::from_utf8(address).ok()?.trim().parse().ok()?;
                self.0.iter().find(|t| t.address == address)?
            }
        };
        Some(target.route.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RouteMap;

    #[test]
    fn keeps_order_and_refuses_duplicates() {
        let map: RouteMap =
            serde_json::from_str(r#"{"b":"127.1.1.1:1","a":"127.2.2.2:2"}"#).expect("ok");
        assert_eq!(map.0[0].0, "b");
        assert_eq!(map.0[1].0, "a");
        let err = serde_json::from_str::<RouteMap>(r#"{"a":"127.1.1.1:1","a":"127.2.2.2:2"}"#)
            .expect_err("duplicate");
        assert!(
            err.to_string().contains("route `a` is named twice"),
            "{err}"
        );
        assert!(serde_json::from_str::<RouteMap>(r#"["a"]"#).is_err());
        assert!(serde_json::from_str::<RouteMap>(r#"{"a":1}"#).is_err());
    }
}
