//! A short, stable fingerprint of a session id for log lines: correlates requests of one session
//! without writing the id (a bearer secret) into the logs.

/// 32-bit FNV-1a of `bytes`. Not a secret-keeping hash: it only keeps ids out of logs.
pub fn fingerprint(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fingerprint(b""), 0x811c_9dc5);
        assert_eq!(fingerprint(b"a"), 0xe40c_292c);
        assert_eq!(fingerprint(b"foobar"), 0xbf9c_f968);
    }
}
