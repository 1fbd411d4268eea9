//! Durations in the configuration: `250ms`, `5s`, `2m`, `1h` (an integer and a unit), at most
//! [`MAX`] (so that no deadline computed from one can overflow).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration the configuration accepts: one day.
pub const MAX: Duration = Duration::from_secs(86_400);

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`, up to [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = parse_unbounded(text)?;
    if d > MAX {
        return Err(format!("duration {:?} is longer than 24h", text.trim()));
    }
    Ok(d)
}

fn parse_unbounded(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {t:?} has no unit (use ms, s, m or h)"))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {t:?} does not start with an integer"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!(
            "duration {t:?} has unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}

/// A configuration duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl From<Duration> for ConfigDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert!(parse("5").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("s").is_err());
        assert_eq!(parse("24h"), Ok(MAX));
        assert!(parse("25h").is_err());
        assert!(parse("18446744073709551615s").is_err(), "no overflow later");
    }
}
