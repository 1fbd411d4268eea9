//! The store key `<id>-<node>`: the only session ids the `session` filter looks up.
//!
//! `id` is exactly 32 upper-case hex digits (128 bits, issued by the store), `node` a store node
//! id of 1–32 `[A-Za-z0-9_]`. The cookie holds `<id>-<node>.<route>`; an id of any other form
//! (Tomcat's, a bare id, `;jsessionid=` garbage) is "no session" and never reaches the store. Keys
//! the store answers with (`keel-store-key`) are checked by the same rule before a cookie carries
//! them.

use crate::session_id::{self, SessionId};

/// The length of the id part.
const ID_LEN: usize = 32;
/// The longest node id.
const MAX_NODE_LEN: usize = 32;

/// A validated store key `<32 HEX>-<node>` (ASCII by construction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKey(String);

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

fn is_node_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl StoreKey {
    /// Parses `<32 HEX>-<node>` exactly (no route); `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let (id, rest) = bytes.split_at_checked(ID_LEN)?;
        let node = rest.strip_prefix(b"-")?;
        let ok = id.iter().all(|&b| is_upper_hex(b))
            && !node.is_empty()
            && node.len() <= MAX_NODE_LEN
            && node.iter().all(|&b| is_node_byte(b));
        // Every byte checked is ASCII, so the conversion cannot fail.
        ok.then(|| {
            core::str::from_utf8(bytes)
                .ok()
                .map(|s| StoreKey(s.to_owned()))
        })
        .flatten()
    }

    /// The key of a session id the client holds (`<id>-<node>[.<route>]`); `None` when it is not
    /// of the form keel issues.
    pub fn from_session_id(id: &SessionId<'_>) -> Option<Self> {
        Self::parse(id.without_route())
    }

    /// `<id>-<node>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits: the session's identity (what `keel-session-id` carries; it stays the
    /// same when the session moves to another node).
    pub fn id(&self) -> &str {
        &self.0[..ID_LEN]
    }

    /// The node that holds the record.
    pub fn node(&self) -> &str {
        &self.0[ID_LEN + 1..]
    }

    /// The cookie value `<id>-<node>[.<route>]`; the route is left out when it is not a valid
    /// route name (or the result would be too long).
    pub fn cookie_value(&self, route: Option<&str>) -> Vec<u8> {
        route
            .filter(|route| session_id::is_valid_route(route.as_bytes()))
            .and_then(|route| {
                session_id::format(
                    self.id().as_bytes(),
                    Some(self.node().as_bytes()),
                    Some(route.as_bytes()),
                )
            })
            .unwrap_or_else(|| self.0.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789ABCDEF0123456789ABCDEF";

    #[test]
    fn keel_ids_only() {
        let key = StoreKey::parse(format!("{HEX}-n1").as_bytes()).expect("valid");
        assert_eq!((key.id(), key.node()), (HEX, "n1"));
        for bad in [
            HEX.to_owned(),
            format!("{HEX}-"),
            format!("{HEX}-n1.t1"),
            format!("{HEX}-n-1"),
            format!("{}-n1", HEX.to_lowercase()),
            format!("{}-n1", &HEX[1..]),
            format!("{HEX}0-n1"),
            format!("{HEX}-{}", "n".repeat(33)),
            format!("{HEX}-n1 "),
            format!("{HEX}-n1\r\nx"),
            "4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1".to_owned(),
            String::new(),
        ] {
            assert_eq!(StoreKey::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(StoreKey::parse(format!("{HEX}-{}", "N_9".repeat(10)).as_bytes()).is_some());
    }

    #[test]
    fn from_a_cookie_value() {
        let raw = format!("{HEX}-n2.tomcat1");
        let id = SessionId::parse(raw.as_bytes()).expect("valid id");
        let key = StoreKey::from_session_id(&id).expect("keel form");
        assert_eq!(key.as_str(), format!("{HEX}-n2"));
        let tomcat = SessionId::parse(b"0123456789ABCDEF0123456789ABCDEF.t1").expect("valid id");
        assert_eq!(StoreKey::from_session_id(&tomcat), None);
    }

    #[test]
    fn cookie_values() {
        let key = StoreKey::parse(format!("{HEX}-n1").as_bytes()).expect("valid");
        assert_eq!(
            key.cookie_value(Some("tomcat2")),
            format!("{HEX}-n1.tomcat2").as_bytes()
        );
        assert_eq!(key.cookie_value(None), format!("{HEX}-n1").as_bytes());
        assert_eq!(
            key.cookie_value(Some("bad route")),
            format!("{HEX}-n1").as_bytes()
        );
        assert_eq!(key.cookie_value(Some("")), format!("{HEX}-n1").as_bytes());
    }
}
