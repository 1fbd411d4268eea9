//! A response `Set-Cookie` header, parsed just enough to read and rewrite its value.
//!
//! `name=value` comes first, then `; attribute[=value]` pieces. Rewriting changes only the bytes
//! of the value: the name, the quotes of a quoted value, whitespace and every attribute (Path,
//! Domain, Expires with its comma, Max-Age, Secure, HttpOnly, SameSite, Partitioned, unknown
//! ones) stay byte for byte.

use memchr::memchr;

use crate::syntax::{trim_ows, trimmed_range, unquote_range};

/// A parsed `Set-Cookie` header, borrowing the header's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetCookie<'a> {
    raw: &'a [u8],
    /// The cookie name, without surrounding whitespace.
    pub name: &'a [u8],
    /// The value, without surrounding whitespace and quotes.
    pub value: &'a [u8],
    value_start: usize,
    /// Offset of the first `;` (or the end): where the attributes start.
    attrs_start: usize,
}

impl<'a> SetCookie<'a> {
    /// Parses a `Set-Cookie` value; `None` when it has no `name=` (such a header is left alone).
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let attrs_start = memchr(b';', raw).unwrap_or(raw.len());
        let pair = &raw[..attrs_start];
        let eq = memchr(b'=', pair)?;
        let name = trim_ows(&pair[..eq]);
        if name.is_empty() {
            return None;
        }
        let raw_value = &pair[eq + 1..];
        let (mut start, mut end) = trimmed_range(raw_value);
        if let Some((qs, qe)) = unquote_range(&raw_value[start..end]) {
            end = start + qe;
            start += qs;
        }
        let value_start = eq + 1 + start;
        Some(SetCookie {
            raw,
            name,
            value: &raw[value_start..eq + 1 + end],
            value_start,
            attrs_start,
        })
    }

    /// The header bytes after the value: `"; Path=/; HttpOnly"` (and a closing quote, if any).
    pub fn rest(&self) -> &'a [u8] {
        &self.raw[self.value_start + self.value.len()..]
    }

    /// The attributes, in order: (name, value) with whitespace trimmed; flags have no value.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.raw[self.attrs_start..]
            .split(|&b| b == b';')
            .map(trim_ows)
            .filter(|piece| !piece.is_empty())
            .map(|piece| match piece.iter().position(|&b| b == b'=') {
                Some(eq) => (trim_ows(&piece[..eq]), Some(trim_ows(&piece[eq + 1..]))),
                None => (piece, None),
            })
    }

    /// The value of the first attribute called `name` (ASCII case-insensitive); `Some(None)` for a
    /// flag such as `HttpOnly`.
    pub fn attribute(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.attributes()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The same header with the value replaced by `value`; every other byte is kept.
    pub fn with_value(&self, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + value.len());
        out.extend_from_slice(&self.raw[..self.value_start]);
        out.extend_from_slice(value);
        out.extend_from_slice(self.rest());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &[u8] = b"JSESSIONID=ABC.tomcat1; Path=/shop; Domain=.example.com; \
Expires=Wed, 09 Jun 2027 10:18:14 GMT; Max-Age=3600; Secure; HttpOnly; SameSite=Lax; \
Priority=High; x-unknown";

    #[test]
    fn parses_name_value_and_every_attribute() {
        let c = SetCookie::parse(FULL).expect("parses");
        assert_eq!(c.name, b"JSESSIONID");
        assert_eq!(c.value, b"ABC.tomcat1");
        let attrs: Vec<_> = c.attributes().collect();
        assert_eq!(attrs.len(), 9);
        assert_eq!(c.attribute(b"path"), Some(Some(&b"/shop"[..])));
        assert_eq!(
            c.attribute(b"Expires"),
            Some(Some(&b"Wed, 09 Jun 2027 10:18:14 GMT"[..]))
        );
        assert_eq!(c.attribute(b"HttpOnly"), Some(None));
        assert_eq!(c.attribute(b"x-unknown"), Some(None));
        assert_eq!(c.attribute(b"Partitioned"), None);
    }

    #[test]
    fn rewrite_keeps_every_attribute_byte_for_byte() {
        let c = SetCookie::parse(FULL).expect("parses");
        let out = c.with_value(b"ABC.tomcat2");
        let expected = [&b"JSESSIONID=ABC.tomcat2"[..], &FULL[22..]].concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn odd_spacing_and_quotes_survive() {
        let raw = b"  JSESSIONID =  \"ABC.t1\"  ;path=/;;  secure  ";
        let c = SetCookie::parse(raw).expect("parses");
        assert_eq!(c.name, b"JSESSIONID");
        assert_eq!(c.value, b"ABC.t1");
        assert_eq!(
            c.with_value(b"ABC.t2"),
            b"  JSESSIONID =  \"ABC.t2\"  ;path=/;;  secure  "
        );
        assert_eq!(c.attribute(b"Secure"), Some(None));
    }

    #[test]
    fn empty_value_and_no_attributes() {
        let c = SetCookie::parse(b"JSESSIONID=; Max-Age=0").expect("parses");
        assert_eq!(c.value, b"");
        let c = SetCookie::parse(b"a=b").expect("parses");
        assert_eq!(c.value, b"b");
        assert_eq!(c.rest(), b"");
        assert_eq!(c.attributes().count(), 0);
        assert_eq!(c.with_value(b"c"), b"a=c");
    }

    #[test]
    fn not_a_cookie() {
        for raw in [&b""[..], b"novalue", b"=x; Path=/", b"  =x", b"; a=b"] {
            assert_eq!(SetCookie::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let raw = b"JSESSIONID=ABC.t1; x=\xff\xfe";
        let c = SetCookie::parse(raw).expect("parses");
        assert_eq!(c.with_value(b"ABC.t2"), b"JSESSIONID=ABC.t2; x=\xff\xfe");
    }
}
