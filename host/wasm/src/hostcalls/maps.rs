//! Header maps (get/set pairs, size, get/add/replace/remove a value) and buffers (bodies, the
//! http-call response body, VM and plugin configuration).

use wasmtime::{Caller, Linker};

use super::guest;
use crate::abi::{buffer, map, status};
use crate::headers::MapRef;
use crate::memory;
use crate::state::{HostState, open};

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// What a call on a map the context does not have answers: `BadArgument` (Envoy
/// `context.cc` `getHeaderMapValue`, `addHeaderMapValue`, ...: a null map), `NotFound` in the
/// access-log phase.
fn no_map(state: &HostState) -> i32 {
    if state.stream.as_ref().is_some_and(|s| s.log_phase) {
        status::NOT_FOUND
    } else {
        status::BAD_ARGUMENT
    }
}

/// The map of that type, when the current context has it (now: see `StreamData::open`).
fn map_of(state: &mut HostState, map_type: i32) -> Option<MapRef<'_>> {
    match map_type {
        map::HTTP_CALL_RESPONSE_HEADERS => {
            return Some(MapRef::Pairs(&mut state.call_response.as_mut()?.headers));
        }
        // Only when the upstream sent trailers (see `crate::state::CallResponse`).
        map::HTTP_CALL_RESPONSE_TRAILERS => {
            return state
                .call_response
                .as_mut()?
                .trailers
                .as_mut()
                .map(MapRef::Pairs);
        }
        // Only while the stream's metadata callback of that type runs (Envoy `context.cc`
        // `getMap`: `grpc_receive_initial_metadata_`, `grpc_receive_trailing_metadata_`).
        map::GRPC_RECEIVE_INITIAL_METADATA | map::GRPC_RECEIVE_TRAILING_METADATA => {
            return match state.grpc_metadata.as_mut() {
                Some((kind, pairs)) if *kind == map_type => Some(MapRef::Pairs(pairs)),
                _ => None,
            };
        }
        _ => {}
    }
    let stream = state.current_stream()?;
    let tls = stream.info.tls;
    let bit = match map_type {
        map::REQUEST_HEADERS => open::REQUEST_HEADERS,
        map::REQUEST_TRAILERS => open::REQUEST_TRAILERS,
        map::RESPONSE_HEADERS => open::RESPONSE_HEADERS,
        map::RESPONSE_TRAILERS => open::RESPONSE_TRAILERS,
        _ => 0,
    };
    if stream.open & bit == 0 {
        return None;
    }
    match map_type {
        map::REQUEST_HEADERS => stream
            .request
            .as_mut()
            .map(|parts| MapRef::Request(parts, tls)),
        map::REQUEST_TRAILERS => stream.request_trailers.as_mut().map(MapRef::Trailers),
        map::RESPONSE_HEADERS => stream.response.as_mut().map(MapRef::Response),
        map::RESPONSE_TRAILERS => stream.response_trailers.as_mut().map(MapRef::Trailers),
        _ => None,
    }
}

fn note_rejected(state: &HostState, what: &str, key: &[u8]) {
    log::debug!(
        target: "keel_wasm::filter",
        "[{}] {what}: invalid header ignored ({} bytes of name)",
        state.plugin.name,
        key.len()
    );
}

/// The bytes of a buffer type for the current context.
fn buffer_of(state: &mut HostState, kind: i32) -> Option<&[u8]> {
    match kind {
        buffer::VM_CONFIGURATION => Some(&state.plugin.vm_config),
        buffer::PLUGIN_CONFIGURATION if state.configuring => Some(&state.plugin.plugin_config),
        buffer::HTTP_CALL_RESPONSE_BODY => state.call_response.as_ref().map(|r| &r.body[..]),
        buffer::GRPC_RECEIVE_BUFFER => state.grpc_message.as_deref(),
        buffer::REQUEST_BODY | buffer::RESPONSE_BODY => {
            let stream = state.current_stream()?;
            match &stream.body {
                Some((body_kind, bytes)) if *body_kind == kind => Some(bytes.as_slice()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Envoy's `Buffer::copyFrom` (`source/extensions/common/wasm/context.cc`, read at envoy
/// `031fa2b`): start 0 and size 0 prepends; start 0 and a size of at least the body's length
/// replaces it all; start at or past the end appends; anything else (a part of the body) is
/// `BadArgument` — `false` here, and the body is unchanged.
pub(crate) fn splice(body: &mut bytes::BytesMut, start: usize, size: usize, data: &[u8]) -> bool {
    let len = body.len();
    if start == 0 && size == 0 {
        let mut out = bytes::BytesMut::with_capacity(len + data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(body);
        *body = out;
    } else if start == 0 && size >= len {
        body.clear();
        body.extend_from_slice(data);
    } else if start >= len && start != 0 {
        body.extend_from_slice(data);
    } else {
        return false;
    }
    true
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Ctx<'_>, map_type: i32, ret_ptr: i32, ret_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_header_map_pairs")?;
            if map_type as u32 > map::MAX {
                return Ok(status::BAD_ARGUMENT);
            }
            // A map the context lacks reads as empty; an empty map is pointer 0, length 0, with
            // nothing allocated (cpp-host `src/exports.cc` `get_header_map_pairs`).
            // (An empty map serializes to its 4-byte count alone.)
            let len = map_of(caller.data_mut(), map_type).map_or(0, |map| map.serialized_len());
            if len <= 4 {
                guest!(memory::write_u32(&mut caller, ret_ptr, 0));
                guest!(memory::write_u32(&mut caller, ret_len, 0));
                return Ok(status::OK);
            }
            // One size pass, then the pairs are written straight into the guest's allocation.
            let filled = memory::copy_out_with(
                &mut caller,
                len,
                ret_ptr,
                ret_len,
                |out, state| match map_of(state, map_type) {
                    Some(map) => map.serialize_into(out),
                    None => false,
                },
            )?;
            if filled.is_err() {
                // The guest's allocator changed the map (it ran in between): copy it as it is now.
                let bytes = match map_of(caller.data_mut(), map_type) {
                    Some(map) => map.serialize(),
                    None => crate::serial::serialize_pairs(std::iter::empty()),
                };
                guest!(memory::copy_out(&mut caller, &bytes, ret_ptr, ret_len)?);
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Ctx<'_>, map_type: i32, ptr: i32, len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_set_header_map_pairs")?;
            guest!(memory::with_guest(&mut caller, ptr, len, |raw, state| {
                let Some(pairs) = crate::serial::deserialize_pairs(raw) else {
                    return Ok(status::BAD_ARGUMENT);
                };
                let missing = no_map(state);
                let Some(mut map) = map_of(state, map_type) else {
                    return Ok(missing);
                };
                if !map.set_all(&pairs) {
                    note_rejected(state, "set_header_map_pairs", b"");
                }
                Ok(status::OK)
            }))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut caller: Ctx<'_>, map_type: i32, ret: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_header_map_size")?;
            let missing = no_map(caller.data());
            let Some(map) = map_of(caller.data_mut(), map_type) else {
                return Ok(missing);
            };
            let size = u32::try_from(map.byte_size()).unwrap_or(u32::MAX);
            guest!(memory::write_u32(&mut caller, ret, size));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Ctx<'_>,
         map_type: i32,
         key: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> R {
            super::start_phase::check(caller.data(), "proxy_get_header_map_value")?;
            let mut value = std::mem::take(&mut caller.data_mut().scratch);
            value.clear();
            let missing = no_map(caller.data());
            let found = guest!(memory::with_guest(
                &mut caller,
                key,
                key_len,
                |key, state| {
                    map_of(state, map_type).map(|map| {
                        map.get(key)
                            .map(|found| value.extend_from_slice(found))
                            .is_some()
                    })
                }
            ));
            let copied = if found == Some(true) {
                memory::copy_out(&mut caller, &value, ret_ptr, ret_len)
            } else {
                Ok(Ok(()))
            };
            caller.data_mut().scratch = value;
            // Envoy `context.cc` `getHeaderMapValue`: for an ABI 0.1.0 module a missing value
            // (or a map missing in the access-log phase) is Ok and empty (pointer 0, length 0);
            // the SDK 0.1.x panics on NotFound.
            let empty_ok =
                caller.data().abi_0_1 && (found.is_some() || missing == status::NOT_FOUND);
            match found {
                Some(true) => {}
                _ if empty_ok => {
                    guest!(memory::write_u32(&mut caller, ret_ptr, 0));
                    guest!(memory::write_u32(&mut caller, ret_len, 0));
                    return Ok(status::OK);
                }
                None => return Ok(missing),
                Some(false) => return Ok(status::NOT_FOUND),
            }
            guest!(copied?);
            Ok(status::OK)
        },
    )?;
    for (name, replace) in [
        ("proxy_add_header_map_value", false),
        ("proxy_replace_header_map_value", true),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut caller: Ctx<'_>,
                  map_type: i32,
                  key: i32,
                  key_len: i32,
                  value: i32,
                  value_len: i32|
                  -> R {
                super::start_phase::check(caller.data(), name)?;
                let pair = (key, key_len);
                guest!(memory::with_guest2(
                    &mut caller,
                    pair,
                    (value, value_len),
                    |key, value, state| {
                        let missing = no_map(state);
                        let Some(mut map) = map_of(state, map_type) else {
                            return Ok(missing);
                        };
                        let written = if replace {
                            map.replace(key, value)
                        } else {
                            map.add(key, value)
                        };
                        if !written {
                            note_rejected(state, name, key);
                        }
                        Ok(status::OK)
                    }
                ))
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Ctx<'_>, map_type: i32, key: i32, key_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_remove_header_map_value")?;
            guest!(memory::with_guest(
                &mut caller,
                key,
                key_len,
                |key, state| {
                    let missing = no_map(state);
                    let Some(mut map) = map_of(state, map_type) else {
                        return Ok(missing);
                    };
                    map.remove(key);
                    Ok(status::OK)
                }
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Ctx<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_buffer_bytes")?;
            let start = start as u32 as usize;
            let max = max as u32 as usize;
            let Some(bytes) = buffer_of(caller.data_mut(), kind) else {
                return Ok(status::NOT_FOUND);
            };
            let from = start.min(bytes.len());
            let to = from.saturating_add(max).min(bytes.len());
            // Copied straight from the buffer into the guest's allocation.
            let filled =
                memory::copy_out_with(&mut caller, to - from, ret_ptr, ret_len, |out, state| {
                    match buffer_of(state, kind).and_then(|bytes| bytes.get(from..to)) {
                        Some(chunk) => {
                            out.copy_from_slice(chunk);
                            true
                        }
                        None => false,
                    }
                })?;
            guest!(filled);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut caller: Ctx<'_>, kind: i32, ret_len: i32, ret_flags: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_buffer_status")?;
            let Some(bytes) = buffer_of(caller.data_mut(), kind) else {
                return Ok(status::NOT_FOUND);
            };
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            guest!(memory::write_u32(&mut caller, ret_len, len));
            guest!(memory::write_u32(&mut caller, ret_flags, 0));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Ctx<'_>, kind: i32, start: i32, size: i32, data: i32, data_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_set_buffer_bytes")?;
            let data = guest!(memory::read(&caller, data, data_len));
            // No body, or a buffer that is not a body: Envoy's buffer there is immutable or
            // null (`Buffer::copyFrom`), `BadArgument`.
            let Some(stream) = caller.data_mut().current_stream() else {
                return Ok(status::BAD_ARGUMENT);
            };
            let spliced = match &mut stream.body {
                Some((body_kind, body)) if *body_kind == kind => splice(
                    body.make_mut(),
                    start as u32 as usize,
                    size as u32 as usize,
                    &data,
                ),
                _ => false,
            };
            Ok(if spliced {
                status::OK
            } else {
                status::BAD_ARGUMENT
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_configuration",
        |mut caller: Ctx<'_>, ret_ptr: i32, ret_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_configuration")?;
            let config = caller.data().plugin.plugin_config.clone();
            guest!(memory::copy_out(&mut caller, &config, ret_ptr, ret_len)?);
            Ok(status::OK)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::splice;
    use bytes::BytesMut;

    /// Envoy `source/extensions/common/wasm/context.cc` `Buffer::copyFrom` (envoy `031fa2b`).
    #[test]
    fn splice_follows_envoy_copy_from() {
        let run = |start, size, data: &[u8]| {
            let mut body = BytesMut::from(&b"hello"[..]);
            let ok = splice(&mut body, start, size, data);
            (ok, String::from_utf8_lossy(&body).into_owned())
        };
        assert_eq!(run(0, 0, b">"), (true, ">hello".into()));
        assert_eq!(run(0, 5, b"bye"), (true, "bye".into()));
        assert_eq!(run(0, 99, b"bye"), (true, "bye".into()));
        assert_eq!(run(5, 0, b"!"), (true, "hello!".into()));
        assert_eq!(run(99, 0, b"!"), (true, "hello!".into()));
        // A part of the body is BadArgument (keel used to replace it all, or the range).
        assert_eq!(run(0, 2, b"bye"), (false, "hello".into()));
        assert_eq!(run(1, 3, b"EL"), (false, "hello".into()));
    }
}
