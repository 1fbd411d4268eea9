//! Applying the logic's response header edits (`HeaderEdit`) through the host.
//!
//! Compiled into the filters that edit response headers (route_suffix, session) with `#[path]`,
//! beside `adapter.rs`.

use keel_filter_logic::route_suffix::HeaderEdit;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// Applies `edit` to the response headers: in their callback, or while the response is paused.
pub fn apply_to_response(edit: &HeaderEdit) {
    let map = MapType::HttpResponseHeaders;
    // The SDK answers Ok or traps (as for every header-map call), so there is no error to handle.
    match edit {
        HeaderEdit::ReplaceAll { name, values } => {
            let _ = hostcalls::set_map_value_bytes(map, name, None);
            for value in values {
                let _ = hostcalls::add_map_value_bytes(map, name, value);
            }
        }
        HeaderEdit::Add { name, value } => {
            let _ = hostcalls::add_map_value_bytes(map, name, value);
        }
    }
}
