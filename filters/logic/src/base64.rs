//! Standard, padded base64 (RFC 4648 §4): how Envoy's `envoy.http.stateful_session.header`
//! expects the host `ip:port` in the routing header.
//!
//! Written out rather than taken from a crate: the filter encodes a handful of short addresses
//! once, at configuration time, and these twenty lines keep the module free of a dependency
//! whose engine and configuration types it would not use.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `input` in standard base64 with `=` padding.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn host_addresses() {
        assert_eq!(encode(b"127.0.0.1:8081"), "MTI3LjAuMC4xOjgwODE=");
        assert_eq!(encode(b"[::1]:8080"), "Wzo6MV06ODA4MA==");
        assert_eq!(encode(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
