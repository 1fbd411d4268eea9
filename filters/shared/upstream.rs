//! The backend that served the response: the `upstream.address` property, read through the ABI
//! import itself. The SDK's `get_property` builds the path from a `Vec<&str>` into a new buffer
//! on every call; here the path is a constant.
//!
//! Compiled into the filters that need it (route_suffix, session) with `#[path]`, beside
//! `adapter.rs`.

use crate::adapter::take_host_buffer;

// The same import the SDK declares, with the same wasm signature (i32, i32, i32, i32) -> i32, so
// the module still imports it once.
#[link(wasm_import_module = "env")]
#[allow(unsafe_code)]
unsafe extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// The property path: its segments joined by NUL, as the ABI takes it.
const UPSTREAM_ADDRESS: &[u8] = b"upstream\0address";

/// The `upstream.address` property's bytes (`ip:port`), or `None` when the host has none.
pub fn address() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the path is a live constant of `path_size` bytes, read only during the call; both
    // out-pointers point to live locals of the types the ABI writes (a guest pointer, a 32-bit
    // size) and are not kept past the call.
    #[allow(unsafe_code)]
    let status = unsafe {
        proxy_get_property(
            UPSTREAM_ADDRESS.as_ptr(),
            UPSTREAM_ADDRESS.len(),
            &mut data,
            &mut size,
        )
    };
    // Status 0 is `Ok` (1, `NotFound`: no upstream yet).
    if status != 0 {
        return None;
    }
    // SAFETY: the host answered `Ok`, so `data` and `size` are the buffer it filled in.
    #[allow(unsafe_code)]
    let value = unsafe { take_host_buffer(data, size) };
    Some(value)
}
