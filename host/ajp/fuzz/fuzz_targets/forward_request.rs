//! Fuzzes the container-side parser of forward requests (used by the test server) on
//! arbitrary payloads: never a panic.
#![no_main]

use bytes::Bytes;
use keel_ajp::container::parse_forward_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_forward_request(Bytes::copy_from_slice(data));
});
