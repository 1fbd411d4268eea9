//! Envoy's generated `x-request-id`: its connection manager gives every request that has none
//! (or an empty one) a UUID v4 before any filter runs, and forwards it upstream
//! (`source/common/http/conn_manager_utility.cc` `mutateRequestHeaders`, `generate_request_id`
//! true by default; with `use_remote_address` false, its default, no request is an edge
//! request, so a client's id is kept). The bytes come, as Envoy's
//! (`source/common/common/random_generator.cc` `RandomGeneratorImpl::uuid`), from the OS
//! CSPRNG read 2 KiB at a time per thread: one read every 128 requests.

use std::cell::RefCell;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// The header Envoy sets (`Http::Headers::get().RequestId`); a static name, which the map
/// does not copy.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Random bytes read ahead, per thread.
struct Pool {
    bytes: [u8; 2048],
    /// The next unused byte; `bytes.len()` when the pool must be filled again.
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; 2048], next: 2048 }) };
}

/// 16 random bytes from this thread's pool; `None` when the OS random source fails.
fn random16() -> Option<[u8; 16]> {
    POOL.with_borrow_mut(|pool| {
        if pool.next + 16 > pool.bytes.len() {
            getrandom::fill(&mut pool.bytes).ok()?;
            pool.next = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool.bytes[pool.next..pool.next + 16]);
        pool.next += 16;
        Some(out)
    })
}

/// The RFC 9562 text form of a random (version 4, variant 10) UUID built from `bytes`.
fn uuid_v4(mut bytes: [u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [b'-'; 36];
    // The byte groups 4-2-2-2-6 start at these text offsets.
    let starts = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, at) in bytes.iter().zip(starts) {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
    }
    text
}

/// Sets `x-request-id` to a new UUID v4 unless the request has a non-empty one. Without OS
/// randomness the request goes on without one, with a warning.
pub fn ensure(headers: &mut HeaderMap) {
    if headers
        .get(X_REQUEST_ID)
        .is_some_and(|value| !value.is_empty())
    {
        return;
    }
    let Some(bytes) = random16() else {
        log::warn!("x-request-id: the OS random number generator failed; none generated");
        return;
    };
    // The text lives in its one allocation, shared by every copy of the head (a copied slice
    // would be allocated again on its first clone).
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from_owner(uuid_v4(bytes))) {
        headers.insert(X_REQUEST_ID, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9562 §5.4 (and Envoy's `uuid()`): version nibble 4, variant bits 10, hyphens at 8,
    /// 13, 18, 23, lowercase hex; the bytes in order.
    #[test]
    fn a_uuid_v4_has_its_version_variant_and_layout() {
        let text = uuid_v4([0xff; 16]);
        assert_eq!(&text, b"ffffffff-ffff-4fff-bfff-ffffffffffff");
        let text = uuid_v4([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ]);
        assert_eq!(&text, b"01234567-89ab-4def-8123-456789abcdef");
    }

    /// A client's id is kept; an absent or empty one is replaced by a fresh one each time.
    #[test]
    fn only_a_missing_or_empty_id_is_generated() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("client-id"));
        ensure(&mut headers);
        assert_eq!(headers[X_REQUEST_ID], "client-id");

        headers.insert(X_REQUEST_ID, HeaderValue::from_static(""));
        ensure(&mut headers);
        let first = headers[X_REQUEST_ID].clone();
        assert_eq!(first.len(), 36);
        assert_eq!(first.as_bytes()[14], b'4');

        headers.remove(X_REQUEST_ID);
        ensure(&mut headers);
        assert_ne!(headers[X_REQUEST_ID], first, "each request gets its own");
    }
}
