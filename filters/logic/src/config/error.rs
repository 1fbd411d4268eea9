//! The configuration error: which field, and what is wrong with it.

/// A plugin configuration that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field_prefix(.field))]
pub struct ConfigError {
    /// The field's path (`routes.tomcat1`, `cookie_names[0]`); empty for the document itself.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn display_names_the_field() {
        assert_eq!(
            ConfigError::new("routes.t1", "bad").to_string(),
            "routes.t1: bad"
        );
        assert_eq!(ConfigError::new("", "bad json").to_string(), "bad json");
    }
}
