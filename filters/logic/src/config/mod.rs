//! The filters' plugin configuration (JSON, as Envoy and keel pass it): deserialized with serde
//! (`deny_unknown_fields`), then validated; every error names the field it is about.

mod error;
mod fields;
pub mod route_suffix;
mod routes;
pub mod session;
pub mod sticky;

pub use error::ConfigError;
pub use route_suffix::{Mode, RouteSuffixConfig};
pub use routes::{RouteMap, RouteTarget, RouteTargets};
pub use session::{SessionConfig, WriteMode};
pub use sticky::{Encoding, StickyConfig};

use serde::de::DeserializeOwned;

/// Deserializes a plugin configuration; an empty (or all-whitespace) configuration is `{}`, so
/// every default applies. Type and syntax errors carry the path of the field (`cookie.secure`).
pub(crate) fn deserialize<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        Some(b'{') => bytes,
        Some(_) => {
            return Err(ConfigError::new(
                "",
                "the plugin configuration must be a JSON object",
            ));
        }
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let field = err.path().to_string();
        ConfigError::new(
            if field == "." { String::new() } else { field },
            err.into_inner().to_string(),
        )
    })?;
    de.end()
        .map_err(|err| ConfigError::new("", err.to_string()))?;
    Ok(value)
}
