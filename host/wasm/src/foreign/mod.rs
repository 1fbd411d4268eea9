//! `proxy_call_foreign_function`: the functions of Envoy's `source/extensions/common/wasm/
//! foreign.cc`, by name.
//!
//! * `clear_route_cache` does nothing (keel picks the member after the request filters ran:
//!   there is no route to forget) and returns nothing;
//! * `compress`, `uncompress`: [`zlib`];
//! * `sign`, `verify_signature`: [`signature`] (keys read by [`keys`]);
//! * `declare_property`: `crate::filter_state`;
//! * `set_envoy_filter_state`: Envoy looks up an object factory registered for the path and
//!   answers `NotFound` without one (`context.cc` `setEnvoyFilterState`); its factories make
//!   objects for Envoy's own filters (tcp_proxy, the router's upstream SNI, ...), which keel
//!   does not have, so keel registers none: well-formed arguments are `NotFound`, others
//!   `BadArgument`;
//! * any other name is `NotFound`, `expr_create`, `expr_evaluate` and `expr_delete` included
//!   (Envoy has them in builds with its CEL parser, see the README).
//!
//! The arguments of the protobuf-speaking ones are read by [`wire`].

mod keys;
mod signature;
pub(crate) mod wire;
mod zlib;

use crate::abi::status;
use crate::state::HostState;

/// What a foreign function gives back: the bytes to hand the filter (none for
/// `clear_route_cache` and `declare_property`), or the status to answer.
pub(crate) fn call(
    state: &mut HostState,
    name: &[u8],
    args: &[u8],
) -> Result<Option<Vec<u8>>, i32> {
    match name {
        b"clear_route_cache" => Ok(None),
        b"compress" => zlib::compress(args).map(Some),
        b"uncompress" => zlib::uncompress(args, state.memory_limit).map(Some),
        b"sign" => signature::sign(args).map(Some),
        b"verify_signature" => signature::verify(args).map(Some),
        b"declare_property" => crate::filter_state::declare(state, args).map(|()| None),
        b"set_envoy_filter_state" => set_envoy_filter_state(args),
        _ => Err(status::NOT_FOUND),
    }
}

/// `SetEnvoyFilterStateArguments` (`ext/set_envoy_filter_state.proto`: path 1, value 2, span
/// 3): parsed as Envoy parses it, then no factory for any path.
fn set_envoy_filter_state(args: &[u8]) -> Result<Option<Vec<u8>>, i32> {
    wire::fields(args, |number, value| match number {
        1 | 2 => value.as_str().map(|_| ()),
        _ => Ok(()),
    })
    .map_err(|wire::Malformed| status::BAD_ARGUMENT)?;
    Err(status::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_envoy_filter_state_has_no_factory_and_checks_its_arguments() {
        // path "envoy.tcp_proxy.cluster", value "c".
        let mut args = vec![0x0a, 23];
        args.extend_from_slice(b"envoy.tcp_proxy.cluster");
        args.extend_from_slice(&[0x12, 0x01, b'c']);
        assert_eq!(set_envoy_filter_state(&args), Err(status::NOT_FOUND));
        assert_eq!(
            set_envoy_filter_state(&[0x0a, 0x01, 0xff]),
            Err(status::BAD_ARGUMENT)
        );
        assert_eq!(set_envoy_filter_state(&[0x0a]), Err(status::BAD_ARGUMENT));
    }
}
