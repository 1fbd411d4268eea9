//! `compress` and `uncompress` (Envoy `source/extensions/common/wasm/foreign.cc`): zlib's
//! `compress` and `uncompress`, the zlib format (RFC 1950) at zlib's default level (keel's
//! deflate stream is flate2's, not byte for byte zlib's); a stream that does not decompress is
//! `SerializationFailure`, as there.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use crate::abi::status;

/// zlib's `compress` (`Z_DEFAULT_COMPRESSION`).
pub(super) fn compress(input: &[u8]) -> Result<Vec<u8>, i32> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(input)
        .and_then(|()| encoder.finish())
        .map_err(|_| status::SERIALIZATION_FAILURE)
}

/// zlib's `uncompress`: one whole zlib stream (bytes after it are ignored, a stream cut short is
/// a failure). Envoy grows its buffer until the result fits; keel stops at `max_result`, the
/// most the filter's memory could take, so that a small input cannot make the host allocate
/// without bound.
pub(super) fn uncompress(input: &[u8], max_result: usize) -> Result<Vec<u8>, i32> {
    let mut decoder = ZlibDecoder::new(input);
    let mut out = Vec::new();
    let limit = u64::try_from(max_result)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    match (&mut decoder).take(limit).read_to_end(&mut out) {
        Ok(_) if out.len() <= max_result => Ok(out),
        _ => Err(status::SERIALIZATION_FAILURE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zlib.compress(b"hello")` (zlib 1.3, level 6): what real zlib writes decompresses.
    const HELLO: &[u8] = &[
        0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15,
    ];

    #[test]
    fn zlib_streams_round_trip_and_interoperate() {
        assert_eq!(uncompress(HELLO, 1 << 20), Ok(b"hello".to_vec()));
        let packed = compress(b"hello hello hello").unwrap();
        // A zlib header: deflate with a 32 KiB window, a check value that divides by 31.
        assert_eq!(packed[0], 0x78);
        assert_eq!((u16::from(packed[0]) * 256 + u16::from(packed[1])) % 31, 0);
        assert_eq!(
            uncompress(&packed, 1 << 20),
            Ok(b"hello hello hello".to_vec())
        );
    }

    /// foreign.cc: anything but a whole zlib stream is SerializationFailure (a stream cut
    /// short included: zlib's `uncompress` answers Z_DATA_ERROR for it).
    #[test]
    fn what_does_not_decompress_is_a_serialization_failure() {
        let failure = Err(status::SERIALIZATION_FAILURE);
        assert_eq!(uncompress(b"not zlib", 1 << 20), failure);
        assert_eq!(uncompress(&HELLO[..HELLO.len() - 3], 1 << 20), failure);
        assert_eq!(uncompress(b"", 1 << 20), failure);
    }

    /// More than the filter's memory could hold is refused, not allocated.
    #[test]
    fn a_result_over_the_limit_is_refused() {
        let big = compress(&[0u8; 4096]).unwrap();
        assert_eq!(uncompress(&big, 4096).map(|v| v.len()), Ok(4096));
        assert_eq!(uncompress(&big, 4095), Err(status::SERIALIZATION_FAILURE));
    }
}
