//! What keel's generated `x-request-id` looks like, for the tests that see it.

/// A random UUID in its text form (RFC 9562: version 4, variant 10, lowercase hex), as keel
/// generates one.
pub fn is_uuid_v4(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}
