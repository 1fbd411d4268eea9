//! A `callout_upstreams` entry: a URL (HTTP/1.1, as before), or `{url, protocol}` where
//! `protocol: http2` speaks HTTP/2 with prior knowledge (h2c) to it, as an Envoy cluster with
//! `http2_protocol_options` does for `proxy_http_call`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Unexpected, Visitor};

/// The protocol of a callout upstream's http callouts (gRPC calls are HTTP/2 whatever it says).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CalloutProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// One callout upstream as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutUpstream {
    /// `http://host:port`.
    pub url: String,
    /// The protocol of its http callouts.
    pub protocol: CalloutProtocol,
}

const FIELDS: &[&str] = &["url", "protocol"];

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = CalloutUpstream;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a URL (http://host:port) or a map with url and protocol (http1 or http2)")
    }

    fn visit_str<E: de::Error>(self, url: &str) -> Result<Self::Value, E> {
        Ok(CalloutUpstream {
            url: url.to_owned(),
            protocol: CalloutProtocol::Http1,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut url, mut protocol) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "url" if url.is_some() => return Err(de::Error::duplicate_field("url")),
                "url" => url = Some(map.next_value::<String>()?),
                "protocol" if protocol.is_some() => {
                    return Err(de::Error::duplicate_field("protocol"));
                }
                "protocol" => {
                    let name = map.next_value::<String>()?;
                    protocol = Some(match name.as_str() {
                        "http1" => CalloutProtocol::Http1,
                        "http2" => CalloutProtocol::Http2,
                        other => {
                            return Err(de::Error::invalid_value(
                                Unexpected::Str(other),
                                &"http1 or http2 (HTTP/2 with prior knowledge, h2c)",
                            ));
                        }
                    });
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        Ok(CalloutUpstream {
            url: url.ok_or_else(|| de::Error::missing_field("url"))?,
            protocol: protocol.unwrap_or_default(),
        })
    }
}

impl<'de> Deserialize<'de> for CalloutUpstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<CalloutUpstream, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_url_alone_is_http1_and_a_map_may_say_http2() {
        let plain = parse("http://127.0.0.1:1").unwrap();
        assert_eq!(plain.protocol, CalloutProtocol::Http1);
        assert_eq!(plain.url, "http://127.0.0.1:1");
        let h2 = parse("{url: 'http://127.0.0.1:1', protocol: http2}").unwrap();
        assert_eq!(h2.protocol, CalloutProtocol::Http2);
        let h1 = parse("{url: 'http://127.0.0.1:1'}").unwrap();
        assert_eq!(h1.protocol, CalloutProtocol::Http1);
    }

    #[test]
    fn a_wrong_entry_names_its_fault() {
        let bad = parse("{url: 'http://127.0.0.1:1', protocol: h3}").unwrap_err();
        assert!(
            bad.contains("invalid value: string \"h3\", expected http1 or http2"),
            "{bad}"
        );
        let missing = parse("{protocol: http2}").unwrap_err();
        assert!(missing.contains("missing field `url`"), "{missing}");
        let unknown = parse("{url: 'http://127.0.0.1:1', proto: http2}").unwrap_err();
        assert!(unknown.contains("unknown field `proto`"), "{unknown}");
    }
}
