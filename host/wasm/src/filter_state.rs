//! Filter state: what `proxy_set_property` writes and `proxy_get_property` reads back, and the
//! declarations (`declare_property`) that make a name read-only. Envoy keeps each value as a
//! `CelState` under `"wasm." + path` in the stream's filter state (`source/extensions/common/
//! wasm/context.cc` `setProperty`, `findValue`; `source/extensions/filters/common/expr/
//! cel_state.h`):
//!
//! * the first set creates it from the root context's declaration of that path (else the
//!   default: writable bytes), and a read-only one takes one value: a second set is
//!   `BadArgument` (`CelState::setValue`), for every filter of the chain;
//! * a read walks the path: its first segment names the state, so a value set under a path of
//!   several segments is never found, and a further segment is `NotFound` (keel does not walk
//!   into Protobuf or FlatBuffers values, see the README);
//! * a declaration is kept by the context that made it (`Context::declareProperty` on
//!   `current_context_`); only the root context's count for `setProperty`, and a second
//!   declaration of a name on the same context is `BadArgument`.

use std::collections::HashMap;

use crate::abi::status;
use crate::foreign::wire::{self, Malformed};
use crate::state::HostState;

/// One value of the filter state (Envoy's `CelState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    value: Vec<u8>,
    readonly: bool,
}

/// The stream's filter state, by path (shared by the filters of the chain).
pub(crate) type FilterState = HashMap<Vec<u8>, State>;

/// `proxy_set_property` on the effective context's stream: `Ok`, `BadArgument` for a second
/// value of a read-only property, `NotFound` without a stream (a root context).
pub(crate) fn set(state: &mut HostState, path: &[u8], value: Vec<u8>) -> i32 {
    let readonly = state.declared.get(path).copied().unwrap_or(false);
    let Some(stream) = state.current_stream() else {
        return status::NOT_FOUND;
    };
    match stream.filter_state.get_mut(path) {
        Some(existing) if existing.readonly => status::BAD_ARGUMENT,
        Some(existing) => {
            existing.value = value;
            status::OK
        }
        None => {
            stream
                .filter_state
                .insert(path.to_vec(), State { value, readonly });
            status::OK
        }
    }
}

/// The value a property path names in the filter state: the whole path must be one segment
/// (the SDK sends segments separated by `\0`).
pub(crate) fn get<'a>(filter_state: &'a FilterState, path: &[u8]) -> Option<&'a [u8]> {
    if path.contains(&0) {
        return None;
    }
    filter_state.get(path).map(|state| state.value.as_slice())
}

/// `declare_property` (Envoy `foreign.cc` `DeclarePropertyFactory`): its
/// `DeclarePropertyArguments` (`ext/declare_property.proto`: name 1, readonly 2, type 3,
/// schema 4, span 5), declared on the current context. Arguments that do not parse, and a name
/// this context declared before, are `BadArgument`.
pub(crate) fn declare(state: &mut HostState, arguments: &[u8]) -> Result<(), i32> {
    let (name, readonly) = declaration(arguments).map_err(|Malformed| status::BAD_ARGUMENT)?;
    let current = state.stream_context;
    if current != 0 && state.effective_context == current {
        // A stream context's declaration: kept there, where `set_property` never looks.
        if state
            .stream_declared
            .iter()
            .any(|(context, declared)| *context == current && *declared == name)
        {
            return Err(status::BAD_ARGUMENT);
        }
        state.stream_declared.push((current, name));
        return Ok(());
    }
    if state.declared.contains_key(&name) {
        return Err(status::BAD_ARGUMENT);
    }
    state.declared.insert(name, readonly);
    Ok(())
}

/// The name and the read-only flag. The type, schema and life span are parsed past: a value
/// read whole is its bytes whatever its type (`CelState::exprValue` with `last`), and keel
/// keeps every value for the stream (README).
fn declaration(arguments: &[u8]) -> Result<(Vec<u8>, bool), Malformed> {
    let (mut name, mut readonly) = ("", false);
    wire::fields(arguments, |number, value| {
        match number {
            1 => name = value.as_str()?.unwrap_or(name),
            2 => readonly = value.as_bool().unwrap_or(readonly),
            _ => {}
        }
        Ok(())
    })?;
    Ok((name.as_bytes().to_vec(), readonly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_reads_its_name_and_flag_and_skips_the_rest() {
        // name "p", readonly true, type Protobuf (3), schema "type.googleapis.com/x",
        // span DownstreamConnection (2), and an unknown field 9.
        let mut bytes = vec![0x0a, 0x01, b'p', 0x10, 0x01, 0x18, 0x03, 0x22, 0x15];
        bytes.extend_from_slice(b"type.googleapis.com/x");
        bytes.extend_from_slice(&[0x28, 0x02, 0x48, 0x07]);
        assert_eq!(declaration(&bytes), Ok((b"p".to_vec(), true)));
        assert_eq!(declaration(&[]), Ok((Vec::new(), false)));
        assert_eq!(
            declaration(&[0x0a, 0x01, 0xff]),
            Err(Malformed),
            "not UTF-8"
        );
        assert_eq!(
            declaration(&[0x0a, 0x02, b'p']),
            Err(Malformed),
            "cut short"
        );
    }

    #[test]
    fn only_a_single_segment_path_reads_the_state() {
        let mut states = FilterState::new();
        let value = |v: &[u8]| State {
            value: v.to_vec(),
            readonly: false,
        };
        states.insert(b"a".to_vec(), value(b"one"));
        states.insert(b"a\0b".to_vec(), value(b"two"));
        assert_eq!(get(&states, b"a"), Some(&b"one"[..]));
        assert_eq!(get(&states, b"a\0b"), None);
        assert_eq!(get(&states, b"b"), None);
    }
}
