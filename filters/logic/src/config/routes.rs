//! The `routes` map (route name → backend `ip:port`), deserialized in document order and
//! refusing a route named twice (a JSON object with a repeated key would otherwise silently keep
//! only the last one).

use core::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

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
