//! Envoy's generated `x-request-id`: its connection manager gives every request that has none
//! (or an empty one) a UUID v4 before any filter runs, and forwards it upstream
//! (`source/common/http/conn_manager_utility.cc` `mutateRequestHeaders`, `generate_request_id`
//! true by default; with `use_remote_address` false, its default, no request is an edge
//! request, so a client's id is kept). The bytes come, as Envoy's
//! (`source/common/common/random_generator.cc` `RandomGeneratorImpl::uuid`), from the OS
//! CSPRNG read 2 KiB at a time per thread: one read every 128 requests, whose 128 ids are
//! written into one buffer that the requests' headers share (no allocation per request).

use std::cell::RefCell;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// The header Envoy sets (`Http::Headers::get().RequestId`); a static name, which the map
/// does not copy.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How many ids one read of the OS random source makes (16 random bytes each).
const BATCH: usize = 128;

/// The length of an id's text.
const ID_LEN: usize = 36;

/// Ids made ahead, per thread: the text of [`BATCH`] of them in one shared buffer, handed out as
/// slices of it (a reference count each, no allocation per request).
struct Batch {
    text: Bytes,
    /// The next unused id; [`BATCH`] when a new batch must be made.
    next: usize,
}

thread_local! {
    static IDS: RefCell<Batch> = const { RefCell::new(Batch { text: Bytes::new(), next: BATCH }) };
}

/// The next id of this thread's batch; `None` when the OS random source fails.
fn next_id() -> Option<Bytes> {
    IDS.with_borrow_mut(|batch| {
        if batch.next >= BATCH {
            let mut random = [0u8; BATCH * 16];
            getrandom::fill(&mut random).ok()?;
            let mut text = Vec::with_capacity(BATCH * ID_LEN);
            for bytes in random.chunks_exact(16) {
                let mut id = [0u8; 16];
                id.copy_from_slice(bytes);
                text.extend_from_slice(&uuid_v4(id));
            }
            batch.text = Bytes::from_owner(text);
            batch.next = 0;
        }
        let at = batch.next * ID_LEN;
        batch.next += 1;
        Some(batch.text.slice(at..at + ID_LEN))
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
    let Some(id) = next_id() else {
        log::warn!("x-request-id: the OS random number generator failed; none generated");
        return;
    };
    if let Ok(value) = HeaderValue::from_maybe_shared(id) {
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

    /// Ids over several batches: each a valid UUID v4 text, none seen twice.
    #[test]
    fn ids_stay_unique_across_batches() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * BATCH + 5 {
            let id = next_id().unwrap_or_else(|| panic!("OS randomness"));
            assert_eq!(id.len(), ID_LEN);
            assert_eq!(
                (id[8], id[13], id[14], id[18], id[23]),
                (b'-', b'-', b'4', b'-', b'-')
            );
            assert!(matches!(id[19], b'8' | b'9' | b'a' | b'b'), "variant 10");
            assert!(seen.insert(id), "an id came twice");
        }
    }
}
