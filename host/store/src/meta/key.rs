//! Keys the codec is willing to put on the wire. memcached keys end at a space or a line end
//! and its flags follow them, so a key with a space, CR, LF or any control byte is command
//! (or flag) injection. The store builds keys only from validated session ids; this check is
//! the defence in depth behind that.

use std::fmt;

/// The longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const MAX_KEY_LEN: usize = 250;

/// A memcached key: 1..=250 bytes, each printable ASCII other than space (0x21..=0x7E).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An empty key.
    #[error("empty memcached key")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("memcached key of {0} bytes is longer than 250")]
    TooLong(usize),
    /// A byte outside printable ASCII, or a space.
    #[error(
        "memcached key has byte {byte:#04x} at offset {at} (only printable ASCII without space)"
    )]
    BadByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
}

impl Key {
    /// Checks `key`; see the type doc.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(key.len()));
        }
        if let Some((at, &byte)) = key
            .as_bytes()
            .iter()
            .enumerate()
            .find(|(_, b)| !(0x21..=0x7E).contains(*b))
        {
            return Err(KeyError::BadByte { byte, at });
        }
        Ok(Key(key))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_ascii_up_to_250() {
        assert!(Key::new("keel:0123").is_ok());
        assert!(Key::new("~".repeat(250)).is_ok());
        assert_eq!(Key::new("a".repeat(251)), Err(KeyError::TooLong(251)));
        assert_eq!(Key::new(""), Err(KeyError::Empty));
    }

    #[test]
    fn refuses_space_control_and_non_ascii() {
        for (k, byte, at) in [
            ("a b", b' ', 1),
            ("a\r\nmd x", b'\r', 1),
            ("\0", 0, 0),
            ("x\x7f", 0x7f, 1),
            ("é", 0xc3, 0),
        ] {
            assert_eq!(Key::new(k), Err(KeyError::BadByte { byte, at }), "{k:?}");
        }
    }
}
