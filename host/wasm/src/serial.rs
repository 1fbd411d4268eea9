//! The wire formats between host and guest: serialized header maps and property paths.
//!
//! A header map is `u32 count`, then `count × (u32 key length, u32 value length)`, then each
//! `key \0 value \0`; all integers little endian (spec v0.2.1, SDK `utils::serialize_map`).

use crate::abi::{MAX_PAIRS_BYTES, MAX_PAIRS_COUNT};

/// Serializes pairs in the proxy-wasm header-map layout.
pub fn serialize_pairs<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let mut count = 0usize;
    let mut size = 4usize;
    for (key, value) in pairs.clone() {
        count += 1;
        size += 8 + key.len() + value.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len32(count).to_le_bytes());
    for (key, value) in pairs.clone() {
        out.extend_from_slice(&len32(key.len()).to_le_bytes());
        out.extend_from_slice(&len32(value.len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Writes the count of a serialized map at the start of `out` (at least 4 bytes).
pub(crate) fn write_pairs_header(out: &mut [u8], count: usize) {
    out[..4].copy_from_slice(&len32(count).to_le_bytes());
}

pub(crate) fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Parses a serialized header map from the guest; `None` when it is malformed or over the limits
/// of cpp-host (1 MiB, 1024 pairs). An empty input is an empty map.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    if bytes.len() > MAX_PAIRS_BYTES {
        return None;
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    if count > MAX_PAIRS_COUNT {
        return None;
    }
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for index in 0..count {
        let key_len = usize::try_from(read_u32(bytes, 4 + index * 8)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, 8 + index * 8)?).ok()?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data += key_len;
        if *bytes.get(data)? != 0 {
            return None;
        }
        data += 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data += value_len;
        if *bytes.get(data)? != 0 {
            return None;
        }
        data += 1;
        pairs.push((key, value));
    }
    Some(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Splits a property path (segments joined by `\0`, as the SDK serializes it) into segments.
pub fn split_property_path(path: &[u8]) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = path.split(|byte| *byte == 0).collect();
    if parts.last().is_some_and(|last| last.is_empty()) {
        parts.pop();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden bytes: two pairs ("a", "1") and ("bb", "22"), as the SDK lays them out.
    const TWO_PAIRS: &[u8] = &[
        0x02, 0x00, 0x00, 0x00, // count = 2
        0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // "a" (1), "1" (1)
        0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // "bb" (2), "22" (2)
        b'a', 0x00, b'1', 0x00, // a\0 1\0
        b'b', b'b', 0x00, b'2', b'2', 0x00, // bb\0 22\0
    ];

    #[test]
    fn serializes_to_the_golden_bytes() {
        let pairs: [(&[u8], &[u8]); 2] = [(b"a", b"1"), (b"bb", b"22")];
        assert_eq!(serialize_pairs(pairs.iter().copied()), TWO_PAIRS);
    }

    #[test]
    fn deserializes_the_golden_bytes() {
        let pairs = deserialize_pairs(TWO_PAIRS).unwrap();
        assert_eq!(
            pairs,
            vec![(&b"a"[..], &b"1"[..]), (&b"bb"[..], &b"22"[..])]
        );
    }

    // An empty map is a zero count; an empty input (what a guest passes for "no map") is empty.
    #[test]
    fn empty_map_is_four_zero_bytes_and_empty_input_is_empty() {
        let none: [(&[u8], &[u8]); 0] = [];
        assert_eq!(serialize_pairs(none.iter().copied()), vec![0, 0, 0, 0]);
        assert_eq!(deserialize_pairs(&[0, 0, 0, 0]).unwrap(), vec![]);
        assert_eq!(deserialize_pairs(&[]).unwrap(), vec![]);
    }

    #[test]
    fn empty_values_and_pseudo_headers_round_trip() {
        let pairs: [(&[u8], &[u8]); 2] = [(b":path", b"/"), (b"x-empty", b"")];
        let bytes = serialize_pairs(pairs.iter().copied());
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(&bytes[4..12], &[5, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&bytes[12..20], &[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[20..], b":path\0/\0x-empty\0\0");
        assert_eq!(deserialize_pairs(&bytes).unwrap(), pairs.to_vec());
    }

    #[test]
    fn malformed_maps_are_rejected_at_every_cut() {
        for cut in 1..TWO_PAIRS.len() {
            assert!(
                deserialize_pairs(&TWO_PAIRS[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        let mut missing_nul = TWO_PAIRS.to_vec();
        missing_nul[21] = b'x';
        assert!(deserialize_pairs(&missing_nul).is_none());
        let huge_count = [0xff, 0xff, 0xff, 0x7f];
        assert!(deserialize_pairs(&huge_count).is_none());
        let mut too_many = vec![0u8; 4 + 1025 * 8 + 1025 * 2];
        too_many[..4].copy_from_slice(&1025u32.to_le_bytes());
        assert!(deserialize_pairs(&too_many).is_none());
    }

    #[test]
    fn property_paths_split_on_nul() {
        assert_eq!(
            split_property_path(b"request\0path"),
            vec![&b"request"[..], &b"path"[..]]
        );
        assert_eq!(
            split_property_path(b"plugin_name"),
            vec![&b"plugin_name"[..]]
        );
        assert_eq!(split_property_path(b"a\0b\0"), vec![&b"a"[..], &b"b"[..]]);
    }
}
