//! A proxy-wasm test filter with no SDK: its stream callbacks return the raw action value its
//! plugin configuration names (`"<headers> <body> <trailers>"`, e.g. `"2 3 1"`), values the
//! SDKs of other languages return (C++ SDK and AssemblyScript `FilterHeadersStatus`:
//! ContinueAndEndStream 2, StopAllIterationAndBuffer 3, StopAllIterationAndWatermark 4; data:
//! StopIterationAndWatermark 2, StopIterationNoBuffer 3).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, Ordering};

static HEADERS: AtomicI32 = AtomicI32::new(0);
static BODY: AtomicI32 = AtomicI32::new(0);
static TRAILERS: AtomicI32 = AtomicI32::new(0);

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        ret_ptr: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
}

/// The ABI this module speaks.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The allocator the host hands data in (leaked: a test filter).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(size.max(1));
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

/// Contexts need no state.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

/// Reads the three action values from the plugin configuration (buffer 7).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(_root: u32, size: usize) -> u32 {
    let mut ptr = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: the host writes a pointer it allocated through proxy_on_memory_allocate and its
    // length; the slice is read only when the call succeeded.
    let text = unsafe {
        if proxy_get_buffer_bytes(7, 0, size, &mut ptr, &mut len) != 0 || ptr.is_null() {
            return 0;
        }
        String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned()
    };
    let mut values = text
        .split_whitespace()
        .map(|w| w.parse::<i32>().unwrap_or(0));
    for slot in [&HEADERS, &BODY, &TRAILERS] {
        slot.store(values.next().unwrap_or(0), Ordering::Relaxed);
    }
    1
}

/// Request headers: the configured headers value.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: u32, _eos: u32) -> i32 {
    HEADERS.load(Ordering::Relaxed)
}

/// Request body: the configured body value.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_body(_context: u32, _size: u32, _eos: u32) -> i32 {
    BODY.load(Ordering::Relaxed)
}

/// Request trailers: the configured trailers value.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_trailers(_context: u32, _trailers: u32) -> i32 {
    TRAILERS.load(Ordering::Relaxed)
}
