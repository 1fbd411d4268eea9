//! Session ids and store keys: `<id>-<node>`, `id` exactly 32 upper-case hex digits (128 bits
//! from the OS CSPRNG, made by the store on create), `node` a configured node id. Anything
//! else is refused before it can reach memcached; the memcached keys (`keel:<id>`,
//! `keel:bak:<id>`) are built only from a parsed [`SessionKey`].

use std::fmt;

use crate::meta::{Key, KeyError};
use crate::random::{self, RandomError};

/// The length of an id in hex digits.
pub const ID_LEN: usize = 32;

/// A parsed, validated `<id>-<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    id: String,
    node: String,
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// Not `<32 upper-case hex digits>-<[A-Za-z0-9_]{1,32}>`.
    #[error("not a session key (<32 upper-case hex digits>-<node id>)")]
    Malformed,
    /// Well formed, but the node id is not configured.
    #[error("unknown node id {0:?}")]
    UnknownNode(String),
}

impl SessionKey {
    /// Parses `<id>-<node>`; the node must be one of `known`.
    pub fn parse<'a>(
        s: &str,
        mut known: impl Iterator<Item = &'a str>,
    ) -> Result<Self, SessionKeyError> {
        let (id, node) = s.split_once('-').ok_or(SessionKeyError::Malformed)?;
        if !is_id(id) || !is_node_id(node) {
            return Err(SessionKeyError::Malformed);
        }
        if !known.any(|k| k == node) {
            return Err(SessionKeyError::UnknownNode(node.to_owned()));
        }
        Ok(SessionKey {
            id: id.to_owned(),
            node: node.to_owned(),
        })
    }

    /// A new random id on `node` (the caller knows the node is configured).
    pub(crate) fn generate(node: &str) -> Result<Self, RandomError> {
        let mut b = [0u8; ID_LEN / 2];
        random::fill(&mut b)?;
        let id = b.iter().map(|x| format!("{x:02X}")).collect();
        Ok(SessionKey {
            id,
            node: node.to_owned(),
        })
    }

    /// The same id on another node (relocation).
    pub(crate) fn on_node(&self, node: &str) -> Self {
        SessionKey {
            id: self.id.clone(),
            node: node.to_owned(),
        }
    }

    /// The 32 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `keel:<id>`, the primary record's memcached key.
    pub(crate) fn primary_key(&self) -> Result<Key, KeyError> {
        Key::new(format!("keel:{}", self.id))
    }

    /// `keel:bak:<id>`, the backup copy's memcached key.
    pub(crate) fn backup_key(&self) -> Result<Key, KeyError> {
        Key::new(format!("keel:bak:{}", self.id))
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.id, self.node)
    }
}

/// Whether `s` is 32 upper-case hex digits.
fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// Whether `s` is a valid node id: `[A-Za-z0-9_]{1,32}`.
pub fn is_node_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789ABCDEF0123456789ABCDEF";

    fn parse(s: &str) -> Result<SessionKey, SessionKeyError> {
        SessionKey::parse(s, ["n1", "n2"].into_iter())
    }

    #[test]
    fn parses_id_and_known_node() {
        let k = parse(&format!("{ID}-n2")).expect("valid");
        assert_eq!((k.id(), k.node()), (ID, "n2"));
        assert_eq!(k.to_string(), format!("{ID}-n2"));
        assert_eq!(k.primary_key().expect("key").as_str(), format!("keel:{ID}"));
        assert_eq!(
            k.backup_key().expect("key").as_str(),
            format!("keel:bak:{ID}")
        );
    }

    #[test]
    fn refuses_everything_else() {
        let lower = ID.to_lowercase();
        for bad in [
            String::new(),
            ID.to_owned(),
            format!("{ID}-"),
            format!("{lower}-n1"),
            format!("{ID}0-n1"),
            format!("{}-n1", &ID[1..]),
            format!("{ID}-n1 x"),
            format!("{ID}-n1\r\nmd x"),
            format!("{ID}-n1%00"),
            format!("{ID}-n1-n2"),
            format!("../{ID}-n1"),
            format!("{ID}-{}", "a".repeat(33)),
            "A".repeat(4096),
        ] {
            assert_eq!(parse(&bad), Err(SessionKeyError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse(&format!("{ID}-n3")),
            Err(SessionKeyError::UnknownNode("n3".into()))
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = SessionKey::generate("n1").expect("rng");
        let b = SessionKey::generate("n1").expect("rng");
        assert_ne!(a, b);
        assert_eq!(parse(&a.to_string()), Ok(a));
    }
}
