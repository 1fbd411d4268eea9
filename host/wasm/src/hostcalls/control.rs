//! Logging, time, timers, stream control (`continue`, `close`, local responses), the effective
//! context and properties.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use wasmtime::{Caller, Linker};

use super::{escape_controls, guest};
use crate::abi::{status, stream_type};
use crate::memory;
use crate::state::{HostState, Remote, RemoteAction};
use crate::types::LocalResponse;

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

fn level(level: i32) -> log::Level {
    match level {
        0 => log::Level::Trace,
        1 => log::Level::Debug,
        2 => log::Level::Info,
        3 => log::Level::Warn,
        _ => log::Level::Error,
    }
}

/// Logs a filter's message under target `keel_wasm::filter`, prefixed with the filter's name.
/// Warnings and errors are also kept as the filter's last word (named when `on_configure`
/// fails); a message at a disabled level costs nothing more.
pub(crate) fn log_message(state: &mut HostState, lvl: log::Level, message: &[u8]) {
    let enabled = log::log_enabled!(target: "keel_wasm::filter", lvl);
    if !enabled && lvl > log::Level::Warn {
        return;
    }
    let text = escape_controls(&String::from_utf8_lossy(message));
    if enabled {
        log::log!(target: "keel_wasm::filter", lvl, "[{}] {}", state.plugin.name, text);
    }
    if lvl <= log::Level::Warn {
        state.last_log = Some(text);
    }
}

/// Where a stream-control call lands (cpp-host acts on the effective context,
/// `src/exports.cc` `contextOrEffectiveContext`).
enum Target {
    /// The stream being called: its callback's deferred actions.
    Installed,
    /// A paused stream of this instance that the callback made effective (a root callback, or
    /// one stream's callout response acting on another): it takes the action when it wakes.
    Parked(u32),
    /// A root context, or a stream that is not paused: Envoy does nothing and answers Ok
    /// (`context.cc` `continueStream`, `closeStream`, `sendLocalResponse`).
    Nowhere,
}

fn target(state: &mut HostState) -> Target {
    let effective = state.effective_context;
    if state.stream.is_some() && effective == state.stream_context {
        Target::Installed
    } else if state.parked_stream(effective).is_some() {
        Target::Parked(effective)
    } else {
        Target::Nowhere
    }
}

/// A local reply's details as Envoy keeps them (`context.cc` `sendLocalResponse`:
/// `StringUtil::replaceAllEmptySpace`, every whitespace byte becomes `_`).
fn code_details(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| {
            if c.is_ascii_whitespace() || c == '\x0b' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn continue_stream(caller: &mut Ctx<'_>, which: i32) -> i32 {
    let state = caller.data_mut();
    let (request, response) = match which {
        stream_type::REQUEST => (true, false),
        stream_type::RESPONSE => (false, true),
        2 | 3 => return status::OK,
        _ => return status::BAD_ARGUMENT,
    };
    match target(state) {
        Target::Installed => {
            state.actions.continue_request |= request;
            state.actions.continue_response |= response;
        }
        Target::Parked(context) => state.remote.push(Remote {
            context,
            action: RemoteAction::Continue { request, response },
        }),
        Target::Nowhere => {}
    }
    status::OK
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Ctx<'_>, lvl: i32, ptr: i32, len: i32| -> R {
            // Past critical (5), or negative: cpp-host answers BadArgument before reading the
            // message (`src/exports.cc` `log`).
            if !(0..=5).contains(&lvl) {
                return Ok(status::BAD_ARGUMENT);
            }
            guest!(memory::with_guest(
                &mut caller,
                ptr,
                len,
                |message, state| {
                    log_message(state, level(lvl), message);
                }
            ));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Ctx<'_>, ret: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_log_level")?;
            // The most verbose level keel's logger takes for filter lines, but never above Error:
            // a filter's error lines (why on_configure failed) must reach keel even when no
            // logger is installed. Filters that adopt this level skip formatting what keel drops.
            let levels = [
                (log::Level::Trace, 0),
                (log::Level::Debug, 1),
                (log::Level::Info, 2),
                (log::Level::Warn, 3),
            ];
            let level = levels
                .iter()
                .find(|(level, _)| log::log_enabled!(target: "keel_wasm::filter", *level))
                .map_or(4, |(_, code)| *code);
            guest!(memory::write_u32(&mut caller, ret, level));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Ctx<'_>, ret: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_current_time_nanoseconds")?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
            guest!(memory::write_u64(&mut caller, ret, nanos));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Ctx<'_>, period: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_set_tick_period_milliseconds")?;
            let period = period as u32;
            caller.data_mut().tick_period =
                (period > 0).then(|| Duration::from_millis(u64::from(period)));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Ctx<'_>, which: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_continue_stream")?;
            Ok(continue_stream(&mut caller, which))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_request",
        |mut caller: Ctx<'_>| -> R {
            super::start_phase::check(caller.data(), "proxy_continue_request")?;
            Ok(continue_stream(&mut caller, stream_type::REQUEST))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_response",
        |mut caller: Ctx<'_>| -> R {
            super::start_phase::check(caller.data(), "proxy_continue_response")?;
            Ok(continue_stream(&mut caller, stream_type::RESPONSE))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Ctx<'_>, which: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_close_stream")?;
            let state = caller.data_mut();
            if !(0..=3).contains(&which) {
                return Ok(status::BAD_ARGUMENT);
            }
            match target(state) {
                Target::Installed => state.actions.close = true,
                Target::Parked(context) => state.remote.push(Remote {
                    context,
                    action: RemoteAction::Reply(crate::stream::closed_by_filter()),
                }),
                Target::Nowhere => {}
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap("env", "proxy_clear_route_cache", |caller: Ctx<'_>| -> R {
        super::start_phase::check(caller.data(), "proxy_clear_route_cache")?;
        Ok(status::OK)
    })?;
    // Ok only while the root's `on_done` waits for it (cpp-host `src/wasm.cc` `WasmBase::done`:
    // a root not pending done is NotFound).
    linker.func_wrap("env", "proxy_done", |mut caller: Ctx<'_>| -> R {
        super::start_phase::check(caller.data(), "proxy_done")?;
        let state = caller.data_mut();
        Ok(if std::mem::take(&mut state.done_pending) {
            status::OK
        } else {
            status::NOT_FOUND
        })
    })?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Ctx<'_>, context: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_set_effective_context")?;
            let context = context as u32;
            let state = caller.data_mut();
            if context == state.root_context || state.live_contexts.contains(&context) {
                state.effective_context = context;
                Ok(status::OK)
            } else {
                Ok(status::BAD_ARGUMENT)
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Ctx<'_>,
         code: i32,
         details: i32,
         details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         grpc_status: i32|
         -> R {
            super::start_phase::check(caller.data(), "proxy_send_local_response")?;
            let body = guest!(memory::read(&caller, body, body_len));
            let raw = guest!(memory::read(&caller, headers, headers_len));
            let details = guest!(memory::read(&caller, details, details_len));
            let Some(pairs) = crate::serial::deserialize_pairs(&raw) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Ok(status_code) = u16::try_from(code)
                .map_err(|_| ())
                .and_then(|c| StatusCode::from_u16(c).map_err(|_| ()))
            else {
                return Ok(status::BAD_ARGUMENT);
            };
            let mut list = Vec::with_capacity(pairs.len());
            for (key, value) in pairs {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(key), HeaderValue::from_bytes(value))
                {
                    list.push((name, value));
                }
            }
            let state = caller.data_mut();
            // A gRPC status the filter gave is kept for a gRPC request's trailers-only reply
            // (Envoy `context.cc` `sendLocalResponse`: 0..=16 only; -1 is none).
            let grpc = state
                .current_stream()
                .is_some_and(|stream| stream.is_grpc());
            if grpc && (0..=16).contains(&grpc_status) {
                list.push((
                    HeaderName::from_static("grpc-status"),
                    HeaderValue::from(grpc_status),
                ));
            }
            let response = LocalResponse {
                status: status_code,
                headers: list,
                body: Bytes::from(body),
                details: Cow::Owned(code_details(&details)),
            };
            match target(state) {
                Target::Installed => state.actions.local_response = Some(response),
                Target::Parked(context) => state.remote.push(Remote {
                    context,
                    action: RemoteAction::Reply(response),
                }),
                Target::Nowhere => {}
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Ctx<'_>, path: i32, path_len: i32, ret_ptr: i32, ret_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_property")?;
            let value = guest!(memory::with_guest(
                &mut caller,
                path,
                path_len,
                |raw, state| { crate::properties::get(state, raw) }
            ));
            match value {
                Ok(value) => {
                    guest!(memory::copy_out(&mut caller, &value, ret_ptr, ret_len)?);
                    Ok(status::OK)
                }
                Err(code) => Ok(code),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Ctx<'_>, path: i32, path_len: i32, value: i32, value_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_set_property")?;
            let raw = guest!(memory::read(&caller, path, path_len));
            let value = guest!(memory::read(&caller, value, value_len));
            Ok(crate::filter_state::set(caller.data_mut(), &raw, value))
        },
    )?;
    Ok(())
}
