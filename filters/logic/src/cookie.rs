//! The request `Cookie` header: `name=value` pairs separated by `;`, read from raw bytes.
//!
//! Lenient like browsers and Tomcat's RFC 6265 parser: optional whitespace around names and
//! values, `"quoted"` values (the quotes are not part of the value), empty values, repeated names
//! (every occurrence is reported, in order), pieces without `=` skipped, any byte accepted (a
//! value is validated later, by whoever uses it). Each pair knows where its value sits in the
//! header, so that [`replace_values`] can change one value and keep every other byte.

use memchr::memchr;

use crate::syntax::{trimmed_range, unquote_range};

/// One `name=value` pair of a `Cookie` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePair<'a> {
    /// The cookie name, without surrounding whitespace.
    pub name: &'a [u8],
    /// The value, without surrounding whitespace and without the quotes of a quoted value.
    pub value: &'a [u8],
    /// Offset of `value` in the header.
    pub value_start: usize,
    /// Whether the value was quoted.
    pub quoted: bool,
}

impl CookiePair<'_> {
    /// Offset just past `value` in the header.
    pub fn value_end(&self) -> usize {
        self.value_start + self.value.len()
    }
}

/// Iterator over the pairs of one `Cookie` header; see [`pairs`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    header: &'a [u8],
    pos: usize,
}

/// The pairs of a `Cookie` header value, in order.
pub fn pairs(header: &[u8]) -> Pairs<'_> {
    Pairs { header, pos: 0 }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = CookiePair<'a>;

    fn next(&mut self) -> Option<CookiePair<'a>> {
        while self.pos < self.header.len() {
            let start = self.pos;
            let rest = &self.header[start..];
            let end = memchr(b';', rest).map_or(self.header.len(), |i| start + i);
            self.pos = end + 1;
            let piece = &self.header[start..end];
            let Some(eq) = memchr(b'=', piece) else {
                continue;
            };
            let (name_start, name_end) = trimmed_range(&piece[..eq]);
            if name_start == name_end {
                continue;
            }
            let raw_value = &piece[eq + 1..];
            let (mut value_start, mut value_end) = trimmed_range(raw_value);
            let mut quoted = false;
            if let Some((qs, qe)) = unquote_range(&raw_value[value_start..value_end]) {
                value_end = value_start + qe;
                value_start += qs;
                quoted = true;
            }
            let base = start + eq + 1;
            return Some(CookiePair {
                name: &piece[name_start..name_end],
                value: &self.header[base + value_start..base + value_end],
                value_start: base + value_start,
                quoted,
            });
        }
        None
    }
}

/// The values of every cookie called `name` in `header`, in order.
pub fn values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    pairs(header)
        .filter(move |p| p.name == name)
        .map(|p| p.value)
}

/// Rewrites the values of the cookies whose name satisfies `is_name`: `change` gets each value and
/// returns its replacement, or `None` to keep it. Quotes, whitespace, other cookies and every
/// separator stay byte for byte. Returns `None` when nothing changed.
pub fn replace_values(
    header: &[u8],
    mut is_name: impl FnMut(&[u8]) -> bool,
    mut change: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for pair in pairs(header) {
        if !is_name(pair.name) {
            continue;
        }
        if let Some(new_value) = change(pair.value) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(header.len()));
            buf.extend_from_slice(&header[copied..pair.value_start]);
            buf.extend_from_slice(&new_value);
            copied = pair.value_end();
        }
    }
    let mut buf = out?;
    buf.extend_from_slice(&header[copied..]);
    Some(buf)
}

/// Joins several `Cookie` header values into one, with `"; "` (RFC 9113 §8.2.3, the way an
/// HTTP/2 request's cookie fields become one HTTP/1.1 header).
pub fn join_headers<'a>(headers: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for header in headers {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(header);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(header: &[u8]) -> Vec<(&[u8], &[u8], bool)> {
        pairs(header).map(|p| (p.name, p.value, p.quoted)).collect()
    }

    #[test]
    fn several_cookies_with_whitespace() {
        assert_eq!(
            all(b"a=1; JSESSIONID=ABC.t1 ;\tb = 2 "),
            vec![
                (&b"a"[..], &b"1"[..], false),
                (&b"JSESSIONID"[..], &b"ABC.t1"[..], false),
                (&b"b"[..], &b"2"[..], false),
            ]
        );
    }

    #[test]
    fn repeated_names_all_reported_in_order() {
        let header = b"JSESSIONID=first; other=x; JSESSIONID=second";
        assert_eq!(
            values(header, b"JSESSIONID").collect::<Vec<_>>(),
            vec![&b"first"[..], b"second"]
        );
    }

    #[test]
    fn quoted_and_empty_values() {
        assert_eq!(
            all(b"a=\"q v\"; b=; c=\"\"; d=\""),
            vec![
                (&b"a"[..], &b"q v"[..], true),
                (&b"b"[..], &b""[..], false),
                (&b"c"[..], &b""[..], true),
                (&b"d"[..], &b"\""[..], false),
            ]
        );
    }

    #[test]
    fn junk_pieces_are_skipped() {
        assert_eq!(
            all(b";;novalue; =nameless;  ; x=1;;"),
            vec![(&b"x"[..], &b"1"[..], false)]
        );
        assert_eq!(all(b""), vec![]);
        assert_eq!(all(b"   "), vec![]);
    }

    #[test]
    fn value_keeps_inner_equals_and_non_utf8_bytes() {
        assert_eq!(
            all(b"a=b=c; \xff\xfe=\x80\x81"),
            vec![
                (&b"a"[..], &b"b=c"[..], false),
                (&b"\xff\xfe"[..], &b"\x80\x81"[..], false)
            ]
        );
    }

    #[test]
    fn names_are_case_sensitive() {
        assert_eq!(
            values(b"jsessionid=a; JSESSIONID=b", b"JSESSIONID").collect::<Vec<_>>(),
            vec![&b"b"[..]]
        );
    }

    #[test]
    fn replace_keeps_every_other_byte() {
        let header = b"a=1;  JSESSIONID = \"ABC.t1\" ;JSESSIONID=DEF.t1;z";
        let out = replace_values(
            header,
            |n| n == b"JSESSIONID",
            |v| (v == b"ABC.t1").then(|| b"ABC".to_vec()),
        );
        assert_eq!(
            out.as_deref(),
            Some(&b"a=1;  JSESSIONID = \"ABC\" ;JSESSIONID=DEF.t1;z"[..])
        );
        let out = replace_values(header, |n| n == b"JSESSIONID", |v| Some([v, b"!"].concat()));
        assert_eq!(
            out.as_deref(),
            Some(&b"a=1;  JSESSIONID = \"ABC.t1!\" ;JSESSIONID=DEF.t1!;z"[..])
        );
        assert_eq!(
            replace_values(header, |n| n == b"nope", |_| Some(Vec::new())),
            None
        );
        assert_eq!(replace_values(header, |_| true, |_| None), None);
    }

    #[test]
    fn join() {
        assert_eq!(join_headers([&b"a=1"[..], b"b=2"]), b"a=1; b=2");
        assert_eq!(join_headers([&b"a=1"[..]]), b"a=1");
    }
}
