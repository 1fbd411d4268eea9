//! Reading DER (definite lengths, one-byte tags): the few structures keel reads around keys
//! (`crate::foreign`) and in a listener's certificate (the host's `server::certificate`).

/// `SEQUENCE`.
pub const SEQUENCE: u8 = 0x30;
/// `SET`.
pub const SET: u8 = 0x31;
/// `INTEGER`.
pub const INTEGER: u8 = 0x02;
/// `BIT STRING`.
pub const BIT_STRING: u8 = 0x03;
/// `OCTET STRING`.
pub const OCTET_STRING: u8 = 0x04;
/// `OBJECT IDENTIFIER`.
pub const OID: u8 = 0x06;

/// One element: its tag, its content, and all its bytes (tag and length included).
pub struct Element<'a> {
    /// The tag byte.
    pub tag: u8,
    /// What the length covers.
    pub content: &'a [u8],
    /// The tag, the length and the content.
    pub whole: &'a [u8],
}

/// The first element of `input` and what follows it (`None` if it is not DER: a multi-byte
/// tag, an indefinite or too long length, or fewer bytes than the length says).
pub fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, rest)
    };
    let content = rest.get(..length)?;
    let header = input.len() - rest.len();
    let element = Element {
        tag,
        content,
        whole: &input[..header + length],
    };
    Some((element, &rest[length..]))
}

/// The elements of a constructed content, in order (stops at the first malformed one).
pub fn elements(mut content: &[u8]) -> impl Iterator<Item = Element<'_>> {
    std::iter::from_fn(move || {
        let (element, rest) = element(content)?;
        content = rest;
        Some(element)
    })
}
