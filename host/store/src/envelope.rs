//! The value stored in memcached (the store's own business; the filter never sees it):
//! `[u8 version = 1][u8 route length][route bytes][state bytes]`.

use bytes::{BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;

/// Whether `route` can be stored and sent back in a header: `[A-Za-z0-9_.-]{1,255}`.
pub fn is_route(route: &str) -> bool {
    (1..=255).contains(&route.len())
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Wraps `state` and `route` (checked with [`is_route`] by the caller).
pub fn encode(route: Option<&str>, state: &[u8]) -> Bytes {
    let route = route.unwrap_or("").as_bytes();
    let mut b = BytesMut::with_capacity(2 + route.len() + state.len());
    b.put_u8(VERSION);
    b.put_u8(u8::try_from(route.len()).unwrap_or(0));
    b.put_slice(route.get(..255).unwrap_or(route));
    b.put_slice(state);
    b.freeze()
}

/// Unwraps a stored value: `(route, state)`; `None` for anything that is not a version-1
/// envelope with a valid route.
pub fn decode(value: &Bytes) -> Option<(Option<String>, Bytes)> {
    let (&version, rest) = value.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if version != VERSION {
        return None;
    }
    let len = usize::from(len);
    let route = rest.get(..len)?;
    let route = if len == 0 {
        None
    } else {
        let r = std::str::from_utf8(route).ok()?;
        if !is_route(r) {
            return None;
        }
        Some(r.to_owned())
    };
    Some((route, value.slice(2 + len..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_and_round_trip() {
        let v = encode(Some("tomcat1"), b"\x00state");
        assert_eq!(&v[..], b"\x01\x07tomcat1\x00state");
        assert_eq!(
            decode(&v),
            Some((Some("tomcat1".into()), Bytes::from_static(b"\x00state")))
        );
        let v = encode(None, b"");
        assert_eq!(&v[..], b"\x01\x00");
        assert_eq!(decode(&v), Some((None, Bytes::new())));
    }

    #[test]
    fn refuses_other_versions_and_short_values() {
        for bad in [
            &b""[..],
            b"\x01",
            b"\x02\x00x",
            b"\x01\x05ab",
            b"\x01\x02a b",
        ] {
            assert_eq!(decode(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn routes() {
        assert!(is_route("tomcat-1.a_b"));
        for bad in ["", "a b", "a\r\n", "é", &"a".repeat(256)] {
            assert!(!is_route(bad), "{bad:?}");
        }
    }
}
