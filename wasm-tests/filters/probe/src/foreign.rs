//! The probe's foreign-function modes beyond zlib: `signature` (`sign` and `verify_signature`
//! with the OpenSSL-made keys of keel-wasm's `src/foreign/testdata`) and `declare`
//! (`declare_property` on the root and on a stream, the `set_property`/`get_property` answers
//! it governs, and `set_envoy_filter_state`). Each answer goes into a request
//! header for the test to check; their arguments are protobuf messages written here by hand.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

const TEXT: &[u8] = include_bytes!("../../../../host/wasm/src/foreign/testdata/text.txt");
const RSA_PEM: &[u8] = include_bytes!("../../../../host/wasm/src/foreign/testdata/rsa.pem");
const RSA_PUB_PEM: &[u8] = include_bytes!("../../../../host/wasm/src/foreign/testdata/rsa.pub.pem");
const RSA_SIG: &[u8] = include_bytes!("../../../../host/wasm/src/foreign/testdata/rsa.sha256.sig");

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

fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A `SignResult` or `VerifySignatureResult` as `result:<field 2 or 3 as text or hex>`.
fn result(answer: Result<Option<Vec<u8>>, Status>, hex_field: Option<u64>) -> String {
    let bytes = match answer {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => return format!("{status:?}"),
    };
    let (mut ok, mut rest) = (false, String::new());
    let mut input = bytes.as_slice();
    while let Some(tag) = varint(&mut input) {
        match tag & 7 {
            0 => ok = varint(&mut input).unwrap_or(0) != 0,
            2 => {
                let len = varint(&mut input).unwrap_or(0) as usize;
                let (value, tail) = input.split_at(len.min(input.len()));
                input = tail;
                rest = if Some(tag >> 3) == hex_field {
                    value.iter().map(|b| format!("{b:02x}")).collect()
                } else {
                    String::from_utf8_lossy(value).into_owned()
                };
            }
            _ => break,
        }
    }
    format!("{ok}:{rest}")
}

/// Mode `signature`: `(header, answer)` pairs.
pub(crate) fn signature() -> Vec<(&'static str, String)> {
    let mut sign = Vec::new();
    field(&mut sign, 1, b"sha256");
    field(&mut sign, 3, TEXT);
    field(&mut sign, 4, RSA_PEM);
    let signed = hostcalls::call_foreign_function("sign", Some(&sign));

    let verify = |signature: &[u8]| {
        let mut args = Vec::new();
        field(&mut args, 1, b"SHA256");
        field(&mut args, 3, signature);
        field(&mut args, 4, TEXT);
        field(&mut args, 5, RSA_PUB_PEM);
        result(
            hostcalls::call_foreign_function("verify_signature", Some(&args)),
            None,
        )
    };
    let mut tampered = RSA_SIG.to_vec();
    tampered[0] ^= 0x80;

    let mut both = sign.clone();
    field(&mut both, 2, b"a DER key too");

    vec![
        ("x-sign", result(signed, Some(2))),
        ("x-verify", verify(RSA_SIG)),
        ("x-verify-tampered", verify(&tampered)),
        (
            "x-sign-both-keys",
            result(hostcalls::call_foreign_function("sign", Some(&both)), None),
        ),
    ]
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
