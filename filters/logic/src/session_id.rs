//! The session id `<id>[-<node>][.<route>]` (Tomcat `32HEX.tomcat1`, memcached-session-manager
//! `ABC-n1.tomcat1`, or a bare id): the validity rule, parsing and formatting.
//!
//! Validity: 1 to [`MAX_LEN`] bytes of `[A-Za-z0-9_.-]`. Anything else is "no session": it never
//! reaches a header, a log line or a store key. The base id ends at the first `-` or `.`; a `-`
//! starts the node, which ends at the next `.`; the route is everything after that `.` (as in
//! mod_proxy_balancer, which takes the route after the first `.`). An empty base id, node or route
//! makes the whole id invalid, so that parsing and formatting are exact inverses.

/// The longest session id accepted, in bytes.
pub const MAX_LEN: usize = 128;

/// `ID_BYTES[b]`: whether `b` may stand in a session id (one load per byte on the hot path).
const ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.' || byte == b'-';
        b += 1;
    }
    table
};

/// A byte a session id may contain: `[A-Za-z0-9_.-]`.
pub fn is_id_byte(byte: u8) -> bool {
    ID_BYTES[usize::from(byte)]
}

/// The validity rule alone: 1–128 bytes of `[A-Za-z0-9_.-]`.
pub fn is_valid(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|&b| is_id_byte(b))
}

/// True when `route` can be a route name: a non-empty run of id bytes, at most 64 bytes.
pub fn is_valid_route(route: &[u8]) -> bool {
    !route.is_empty() && route.len() <= 64 && route.iter().all(|&b| is_id_byte(b))
}

/// A parsed, valid session id, borrowing the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId<'a> {
    /// The whole id, as parsed.
    bytes: &'a [u8],
    /// `<id>[-<node>]`: everything before the route.
    prefix: &'a [u8],
    /// Length of the base id inside `prefix`.
    base_len: usize,
    route: Option<&'a [u8]>,
}

impl<'a> SessionId<'a> {
    /// Parses `bytes`; `None` when they are not a valid session id ("no session"). One pass:
    /// each byte is checked and the separators are found on the way.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > MAX_LEN {
            return None;
        }
        // The first `-` or `.` (where the base id ends) and the first `.` (where the route
        // starts; a `-` after it belongs to the route).
        let (mut separator, mut dot) = (None, None);
        for (at, &byte) in bytes.iter().enumerate() {
            if !is_id_byte(byte) {
                return None;
            }
            if byte == b'.' && dot.is_none() {
                dot = Some(at);
                separator.get_or_insert(at);
            } else if byte == b'-' {
                separator.get_or_insert(at);
            }
        }
        let base_len = separator.unwrap_or(bytes.len());
        // The prefix `<id>[-<node>]` ends where the route starts.
        let prefix_len = dot.unwrap_or(bytes.len());
        // An empty base id, an empty node (`-` right before `.` or the end), an empty route.
        if base_len == 0
            || (base_len < prefix_len && base_len + 1 == prefix_len)
            || prefix_len + 1 == bytes.len()
        {
            return None;
        }
        Some(SessionId {
            bytes,
            prefix: &bytes[..prefix_len],
            base_len,
            route: dot.map(|dot| &bytes[dot + 1..]),
        })
    }

    /// The base id (what the backend or keel issued).
    pub fn base(&self) -> &'a [u8] {
        &self.prefix[..self.base_len]
    }

    /// The memcached node id (`-n1`), if any.
    pub fn node(&self) -> Option<&'a [u8]> {
        (self.prefix.len() > self.base_len).then(|| &self.prefix[self.base_len + 1..])
    }

    /// The route (Tomcat's jvmRoute), if any.
    pub fn route(&self) -> Option<&'a [u8]> {
        self.route
    }

    /// The route as text (id bytes are ASCII, so this is `Some` whenever there is a route).
    pub fn route_str(&self) -> Option<&'a str> {
        self.route.and_then(|r| core::str::from_utf8(r).ok())
    }

    /// `<id>[-<node>]`: the id without its route, as a backend without jvmRoute knows it.
    pub fn without_route(&self) -> &'a [u8] {
        self.prefix
    }

    /// The whole id: the bytes it was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The id's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid id has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same id naming `route` instead (`<id>[-<node>].<route>`); `None` when the result would
    /// not be a valid session id (bad route, or longer than [`MAX_LEN`]).
    pub fn with_route(&self, route: &[u8]) -> Option<Vec<u8>> {
        if !is_valid_route(route) {
            return None;
        }
        let mut out = Vec::with_capacity(self.prefix.len() + 1 + route.len());
        out.extend_from_slice(self.prefix);
        out.push(b'.');
        out.extend_from_slice(route);
        is_valid(&out).then_some(out)
    }
}

/// Formats `<id>[-<node>][.<route>]` from its parts; `None` when a part cannot appear in a valid
/// id (empty, a separator inside the base id, a `.` inside the node, too long).
pub fn format(base: &[u8], node: Option<&[u8]>, route: Option<&[u8]>) -> Option<Vec<u8>> {
    if base.is_empty() || base.iter().any(|&b| b == b'-' || b == b'.') {
        return None;
    }
    let mut out = base.to_vec();
    if let Some(node) = node {
        if node.is_empty() || node.contains(&b'.') {
            return None;
        }
        out.push(b'-');
        out.extend_from_slice(node);
    }
    if let Some(route) = route {
        if route.is_empty() {
            return None;
        }
        out.push(b'.');
        out.extend_from_slice(route);
    }
    is_valid(&out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (base, node, route).
    type Parts<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

    fn parts(s: &[u8]) -> Option<Parts<'_>> {
        SessionId::parse(s).map(|id| (id.base(), id.node(), id.route()))
    }

    #[test]
    fn id_bytes_are_letters_digits_underscore_dot_dash() {
        let allowed: Vec<u8> = (0..=255u8).filter(|&b| is_id_byte(b)).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend(b"_.-");
        expected.sort_unstable();
        assert_eq!(allowed, expected);
    }

    #[test]
    fn tomcat_id_with_jvm_route() {
        let raw = b"4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1";
        let id = SessionId::parse(raw).expect("valid");
        assert_eq!(id.base(), b"4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F");
        assert_eq!(id.node(), None);
        assert_eq!(id.route(), Some(&b"tomcat1"[..]));
        assert_eq!(id.route_str(), Some("tomcat1"));
        assert_eq!(id.without_route(), b"4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F");
        assert_eq!(id.as_bytes(), raw);
        assert_eq!(id.len(), raw.len());
    }

    #[test]
    fn msm_id_with_node_and_route() {
        assert_eq!(
            parts(b"ABC-n1.tomcat1"),
            Some((&b"ABC"[..], Some(&b"n1"[..]), Some(&b"tomcat1"[..])))
        );
        assert_eq!(
            parts(b"ABC-n1"),
            Some((&b"ABC"[..], Some(&b"n1"[..]), None))
        );
        let id = SessionId::parse(b"ABC-n1.tomcat1").expect("valid");
        assert_eq!(id.without_route(), b"ABC-n1");
        assert_eq!(
            id.with_route(b"tomcat2").as_deref(),
            Some(&b"ABC-n1.tomcat2"[..])
        );
    }

    #[test]
    fn bare_id() {
        assert_eq!(parts(b"ABC"), Some((&b"ABC"[..], None, None)));
        let id = SessionId::parse(b"ABC").expect("valid");
        assert_eq!(id.with_route(b"t2").as_deref(), Some(&b"ABC.t2"[..]));
    }

    #[test]
    fn route_after_the_first_dot_keeps_dots_and_dashes() {
        assert_eq!(
            parts(b"ABC.tomcat-1.eu"),
            Some((&b"ABC"[..], None, Some(&b"tomcat-1.eu"[..])))
        );
        assert_eq!(
            parts(b"ABC-n-1.r"),
            Some((&b"ABC"[..], Some(&b"n-1"[..]), Some(&b"r"[..])))
        );
    }

    #[test]
    fn invalid_ids_are_no_session() {
        for bad in [
            &b""[..],
            b".tomcat1",
            b"-n1.tomcat1",
            b"ABC.",
            b"ABC-",
            b"ABC-.t1",
            b"ABC-n1.",
            b"AB C",
            b"ABC;x",
            b"ABC%2E",
            b"ABC/..",
            b"\"ABC\"",
            b"ABC\x00",
            b"ABC\r\nSet-Cookie: x",
            "ÄBC".as_bytes(),
            b"\xff\xfe",
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
        let long = vec![b'A'; MAX_LEN + 1];
        assert!(SessionId::parse(&long).is_none());
        let max = vec![b'A'; MAX_LEN];
        assert!(SessionId::parse(&max).is_some());
    }

    #[test]
    fn with_route_refuses_results_that_would_be_invalid() {
        let id = SessionId::parse(&[b'A'; 125]).expect("valid");
        assert_eq!(id.with_route(b"ab").map(|v| v.len()), Some(128));
        assert_eq!(id.with_route(b"abc"), None);
        let id = SessionId::parse(b"ABC.t1").expect("valid");
        assert_eq!(id.with_route(b""), None);
        assert_eq!(id.with_route(b"t 2"), None);
    }

    #[test]
    fn format_builds_and_rejects() {
        assert_eq!(
            format(b"ABC", Some(b"n1"), Some(b"tomcat1")).as_deref(),
            Some(&b"ABC-n1.tomcat1"[..])
        );
        assert_eq!(format(b"ABC", None, None).as_deref(), Some(&b"ABC"[..]));
        assert_eq!(format(b"", None, None), None);
        assert_eq!(format(b"A-B", None, None), None);
        assert_eq!(format(b"A.B", None, None), None);
        assert_eq!(format(b"A", Some(b"n.1"), None), None);
        assert_eq!(format(b"A", Some(b""), None), None);
        assert_eq!(format(b"A", None, Some(b"")), None);
        assert_eq!(format(b"A", None, Some(b"r;")), None);
    }
}
