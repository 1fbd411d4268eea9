//! Byte-level helpers shared by the parsers: optional whitespace, HTTP tokens, quoting.
//!
//! Everything works on `&[u8]`: header values a client sent are not necessarily UTF-8.

/// Optional whitespace as HTTP defines it (RFC 9110 `OWS`): space and horizontal tab.
pub fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// `bytes` without leading and trailing optional whitespace.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let (start, end) = trimmed_range(bytes);
    &bytes[start..end]
}

/// The range of `bytes` that [`trim_ows`] keeps, as offsets into `bytes`.
pub fn trimmed_range(bytes: &[u8]) -> (usize, usize) {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |i| i + 1);
    (start, end)
}

/// A `tchar` of RFC 9110: what header names and cookie names are made of.
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// True when `bytes` is a non-empty HTTP token (RFC 9110 `token`).
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// When `value` is `"…"` (at least the two quotes), the offsets of what is between them.
pub fn unquote_range(value: &[u8]) -> Option<(usize, usize)> {
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        Some((1, value.len() - 1))
    } else {
        None
    }
}

/// ASCII-case-insensitive comparison of a header name (its bytes, as the host gave them) with a
/// lowercase constant.
pub fn name_is(name: &[u8], lowercase: &str) -> bool {
    name.eq_ignore_ascii_case(lowercase.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"\r\nx\r\n"), b"\r\nx\r\n");
        assert_eq!(trimmed_range(b"  ab "), (2, 4));
        assert_eq!(trimmed_range(b"   "), (3, 3));
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"JSESSIONID"));
        assert!(is_token(b"x-keel-route"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a=b"));
        assert!(!is_token(b"a;b"));
        assert!(!is_token(b":path"));
        assert!(!is_token("é".as_bytes()));
    }

    #[test]
    fn quotes() {
        assert_eq!(unquote_range(b"\"abc\""), Some((1, 4)));
        assert_eq!(unquote_range(b"\"\""), Some((1, 1)));
        assert_eq!(unquote_range(b"\""), None);
        assert_eq!(unquote_range(b"abc"), None);
        assert_eq!(unquote_range(b"\"abc"), None);
    }
}
