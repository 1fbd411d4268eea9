//! The probe's foreign-function mode beyond zlib: `declare` (`declare_property` on the root
//! and on a stream, the `set_property`/`get_property` answers it governs, and
//! `set_envoy_filter_state`). Each answer goes into a request
//! header for the test to check; their arguments are protobuf messages written here by hand.

use proxy_wasm::hostcalls;

/// A length-delimited protobuf field (lengths below 2^14 are all the probe writes).
fn field(out: &mut Vec<u8>, number: u8, value: &[u8]) {
    out.push(number << 3 | 2);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push((len as u8) | 0x80);
        out.push((len >> 7) as u8);
    }
    out.extend_from_slice(value);
}

/// `DeclarePropertyArguments` (name 1, readonly 2).
fn declaration(name: &[u8], readonly: bool) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, name);
    if readonly {
        out.extend_from_slice(&[0x10, 0x01]);
    }
    out
}

fn declare(name: &[u8], readonly: bool) -> String {
    let answer =
        hostcalls::call_foreign_function("declare_property", Some(&declaration(name, readonly)));
    format!("{answer:?}")
}

/// Mode `declare`, in the root's `on_configure`: `probe_ro` read-only, `probe_twice` twice;
/// the answers, comma-separated.
pub(crate) fn declare_on_root() -> String {
    [
        declare(b"probe_ro", true),
        declare(b"probe_twice", false),
        declare(b"probe_twice", false),
        format!(
            "{:?}",
            hostcalls::call_foreign_function("declare_property", Some(b"\x0a\x05ab"))
        ),
    ]
    .join(",")
}

/// `proxy_set_property` through the raw import: its status (the SDK panics on any but Ok).
fn set(path: &[u8], value: &[u8]) -> u32 {
    // SAFETY: pointers to live slices, read by the host during the call.
    unsafe {
        super::raw::proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
    }
}

fn get(path: Vec<&str>) -> String {
    super::text(hostcalls::get_property(path).ok().flatten())
}

/// Mode `declare`, on request headers: `(header, answer)` pairs.
pub(crate) fn declare_on_stream() -> Vec<(&'static str, String)> {
    let ro = format!("{},{}", set(b"probe_ro", b"one"), set(b"probe_ro", b"two"));
    let rw = format!("{},{}", set(b"probe_rw", b"one"), set(b"probe_rw", b"two"));
    let nested = set(b"probe\0nested", b"deep").to_string();
    // A stream's declaration stays with the stream context: set_property looks at the root's.
    let stream = format!(
        "{},{}",
        declare(b"probe_stream", true),
        declare(b"probe_stream", true)
    );
    let stream_set = format!(
        "{},{}",
        set(b"probe_stream", b"one"),
        set(b"probe_stream", b"two")
    );
    let mut state = Vec::new();
    field(&mut state, 1, b"envoy.tcp_proxy.cluster");
    field(&mut state, 2, b"elsewhere");
    let envoy_state = hostcalls::call_foreign_function("set_envoy_filter_state", Some(&state));
    vec![
        ("x-envoy-filter-state", format!("{envoy_state:?}")),
        ("x-set-ro", ro),
        ("x-get-ro", get(vec!["probe_ro"])),
        ("x-set-rw", rw),
        ("x-get-rw", get(vec!["probe_rw"])),
        ("x-set-nested", nested),
        ("x-get-nested", get(vec!["probe", "nested"])),
        ("x-declare-stream", stream),
        ("x-set-stream", stream_set),
    ]
}
