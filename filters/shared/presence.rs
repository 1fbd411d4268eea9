//! Reading a header map only when it has one of the few headers the logic looks at: one
//! `proxy_get_header_map_value` per name is much cheaper than the whole map, serialized by the
//! host, copied into the module and parsed.
//!
//! Compiled into the filters that need it (route_suffix) with `#[path]`, beside `adapter.rs`.

use proxy_wasm::types::MapType;

use crate::adapter::{self, HeaderMap};

#[link(wasm_import_module = "env")]
#[allow(unsafe_code)]
unsafe extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// `map` whole if it has a header called one of `names`, else empty: the same to logic that
/// reads no other header.
pub fn read_if_any(map: MapType, names: &[&str]) -> HeaderMap {
    if names.iter().any(|name| has(map, name)) {
        HeaderMap::read(map)
    } else {
        HeaderMap::empty()
    }
}

/// Whether `map` has a header called `name` (the value the host copied in is freed at once).
fn has(map: MapType, name: &str) -> bool {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the key is a live slice; both out-pointers point to live locals of the types the
    // ABI writes and are not kept past the call.
    #[allow(unsafe_code)]
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    // Status 0 is `Ok`.
    if status != 0 {
        return false;
    }
    // SAFETY: the host answered `Ok`, so `data` and `size` are the buffer it filled in.
    #[allow(unsafe_code)]
    drop(unsafe { adapter::take_host_buffer(data, size) });
    true
}
