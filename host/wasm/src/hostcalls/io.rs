//! What reaches beyond the instance: http callouts, gRPC calls and streams, foreign functions,
//! shared data and queues, and metrics.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::guest;
use crate::abi::status;
use crate::grpc_send::OpenStream;
use crate::grpc_stream::Reader;
use crate::memory;
use crate::metrics::CustomMetric;
use crate::shared::{self, SetResult};
use crate::state::{Call, HostState, NewCallout};
use crate::tokens::{self, Kind};
use crate::types::CallTrailers;

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// Builds the callout request from the guest's serialized headers, body and trailers;
/// `None` when `:method`, `:path` or `:authority` is missing or a header is not valid HTTP.
/// Names are matched in any case, as Envoy lowercases every key first (`context.cc`
/// `buildRequestHeaderMapFromPairs`).
fn callout_request(headers: &[(&[u8], &[u8])], body: Vec<u8>) -> Option<http::Request<Bytes>> {
    let find = |name: &[u8]| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    };
    let method = find(b":method")?;
    let path = find(b":path")?;
    let authority = find(b":authority")?;
    let scheme = find(b":scheme").unwrap_or(b"http");
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (key, value) in headers {
        if key.first() != Some(&b':') {
            builder = builder.header(*key, *value);
        }
    }
    builder.body(Bytes::from(body)).ok()
}

/// The filter's trailer pairs as a map (names in any case, as Envoy lowercases them); `None`
/// when one is not valid HTTP.
fn callout_trailers(pairs: &[(&[u8], &[u8])]) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        let name = http::HeaderName::from_bytes(key).ok()?;
        map.append(name, http::HeaderValue::from_bytes(value).ok()?);
    }
    Some(map)
}

fn http_call(caller: &mut Ctx<'_>, args: [i32; 8], timeout_ms: i32, ret_token: i32) -> R {
    let [
        up,
        up_len,
        headers,
        headers_len,
        body,
        body_len,
        trailers,
        trailers_len,
    ] = args;
    let upstream = guest!(memory::read(caller, up, up_len));
    let raw_headers = guest!(memory::read(caller, headers, headers_len));
    let body = guest!(memory::read(caller, body, body_len));
    // Envoy attaches them to the call when there are any (`context.cc` `httpCall`:
    // `message->trailers(...)`); the upstream's protocol decides whether they are sent (see
    // `crate::CallTrailers`).
    let raw_trailers = guest!(memory::read(caller, trailers, trailers_len));
    let Ok(upstream) = String::from_utf8(upstream) else {
        return Ok(status::BAD_ARGUMENT);
    };
    if !caller.data().callout_handler.has_upstream(&upstream) {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some(pairs) = crate::serial::deserialize_pairs(&raw_headers) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let Some(mut request) = callout_request(&pairs, body) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let Some(trailers) =
        crate::serial::deserialize_pairs(&raw_trailers).and_then(|pairs| callout_trailers(&pairs))
    else {
        return Ok(status::BAD_ARGUMENT);
    };
    if !trailers.is_empty() {
        request.extensions_mut().insert(CallTrailers(trailers));
    }
    // Envoy `context.cc` `httpCall`: a negative timeout is refused, 0 is no timeout (a paused
    // stream still ends at the pause timeout).
    let Ok(timeout_ms) = u64::try_from(timeout_ms) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let timeout = match timeout_ms {
        0 => NO_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    start(caller, ret_token, Kind::HttpCall, timeout, |handler| {
        Call::Http(handler.call(&upstream, request, timeout))
    })
}

/// Gives a new callout the next token of its `kind` (written to `ret_token`) and queues the
/// call `send` starts; the caller of the callback spawns it.
fn start(
    caller: &mut Ctx<'_>,
    ret_token: i32,
    kind: Kind,
    timeout: Duration,
    send: impl FnOnce(&dyn crate::types::CalloutHandler) -> Call,
) -> R {
    let token = caller.data().tokens.following(kind);
    guest!(memory::write_u32(caller, ret_token, token));
    let state = caller.data_mut();
    state.tokens.take(kind);
    let call = send(state.callout_handler.as_ref());
    state.callouts.push(NewCallout {
        token,
        call,
        timeout,
    });
    Ok(status::OK)
}

/// The upstream, service, method and metadata a gRPC call or stream names, read from the
/// guest's (pointer, length) pairs; `Err` is the status to answer: an unknown upstream is
/// `ParseFailure`, as in Envoy (`context.cc` `grpcCall`, `grpcStream`: no such cluster).
struct GrpcTarget {
    upstream: String,
    service: Vec<u8>,
    method: Vec<u8>,
    metadata: Vec<u8>,
}

fn grpc_target(caller: &Ctx<'_>, args: &[i32; 8]) -> Result<GrpcTarget, i32> {
    let mut buffers = Vec::with_capacity(4);
    for pair in args.chunks_exact(2) {
        buffers.push(
            memory::read(caller, pair[0], pair[1]).map_err(|_| status::INVALID_MEMORY_ACCESS)?,
        );
    }
    let Ok([upstream, service, method, metadata]) = <[Vec<u8>; 4]>::try_from(buffers) else {
        return Err(status::BAD_ARGUMENT);
    };
    match String::from_utf8(upstream) {
        Ok(upstream) if caller.data().callout_handler.has_upstream(&upstream) => Ok(GrpcTarget {
            upstream,
            service,
            method,
            metadata,
        }),
        _ => Err(status::PARSE_FAILURE),
    }
}

/// `proxy_grpc_call`: a unary call to the callout upstream named by `service` (Envoy also
/// takes a serialized `GrpcService`; keel takes the cluster-name form the SDKs send).
/// `target` as [`grpc_target`] reads it, `message` the (pointer, length) of the request.
fn grpc_call(
    caller: &mut Ctx<'_>,
    target: [i32; 8],
    [msg, msg_len]: [i32; 2],
    timeout_ms: i32,
    ret_token: i32,
) -> R {
    let message = guest!(memory::read(caller, msg, msg_len));
    let target = match grpc_target(caller, &target) {
        Ok(target) => target,
        Err(status) => return Ok(status),
    };
    let Some(pairs) = crate::serial::deserialize_pairs(&target.metadata) else {
        return Ok(status::BAD_ARGUMENT);
    };
    // The SDKs pass the timeout as an unsigned number of milliseconds; 0 is none.
    let timeout = match timeout_ms as u32 {
        0 => None,
        ms => Some(Duration::from_millis(u64::from(ms))),
    };
    let upstream = target.upstream;
    let Some(request) = crate::grpc::request(
        &upstream,
        &target.service,
        &target.method,
        &pairs,
        &message,
        timeout,
    ) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let timeout = timeout.unwrap_or(NO_TIMEOUT);
    let token = caller.data().tokens.following(Kind::GrpcCall);
    let mut handle = None;
    let answer = start(caller, ret_token, Kind::GrpcCall, timeout, |handler| {
        let (call, call_handle) =
            crate::grpc::cancellable(handler.grpc_call(&upstream, request, timeout));
        handle = Some(call_handle);
        Call::Grpc(call)
    })?;
    if let Some(handle) = handle {
        caller.data_mut().grpc_calls.insert(token, handle);
    }
    Ok(answer)
}

/// `proxy_grpc_stream`: opens a stream to the callout upstream named by `service`, with the
/// head of a unary call and no timeout (Envoy `context.cc` `grpcStream`, `startRaw`). Its
/// token is the root context's, as cpp-host opens it (`src/exports.cc` `grpc_stream`:
/// `contextOrEffectiveContext()->root_context()`), and its events go to the root context.
fn grpc_stream(caller: &mut Ctx<'_>, args: [i32; 8], ret_token: i32) -> R {
    let target = match grpc_target(caller, &args) {
        Ok(target) => target,
        Err(status) => return Ok(status),
    };
    let Some(pairs) = crate::serial::deserialize_pairs(&target.metadata) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let upstream = target.upstream;
    let Some(head) = crate::grpc::head(&upstream, &target.service, &target.method, &pairs) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let (open, body, overflow) = OpenStream::new(caller.data().grpc_send_budget.clone());
    let Ok(request) = head.body(body) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let token = caller.data().tokens.following(Kind::GrpcStream);
    let answer = start(caller, ret_token, Kind::GrpcStream, NO_TIMEOUT, |handler| {
        Call::GrpcStream(Reader::new(
            handler.grpc_stream(&upstream, request),
            Some(overflow),
        ))
    })?;
    if answer == status::OK {
        caller.data_mut().grpc_streams.insert(token, open);
    }
    Ok(answer)
}

/// `proxy_grpc_send` (Envoy `context.cc` `grpcSend`): one message on an open stream, then the
/// end of the request if `end_stream`; a token of another kind than a stream's is
/// `BadArgument`, a stream token that is no open stream `NotFound`. A stream whose request has
/// ended takes the call and sends nothing. A message over what the instance's streams may
/// queue resets the stream and is still `Ok`, as Envoy, which buffers without a bound, answers
/// (`crate::grpc_send`).
fn grpc_send(caller: &mut Ctx<'_>, token: i32, message: i32, message_len: i32, end: i32) -> R {
    let message = guest!(memory::read(caller, message, message_len));
    let token = token as u32;
    if tokens::kind(token) != Some(Kind::GrpcStream) {
        return Ok(status::BAD_ARGUMENT);
    }
    let state = caller.data_mut();
    let Some(stream) = state.grpc_streams.get_mut(&token) else {
        return Ok(status::NOT_FOUND);
    };
    let Some(framed) = crate::grpc_frames::frame(&message) else {
        return Ok(status::BAD_ARGUMENT);
    };
    if let Err(full) = stream.send(framed, end != 0) {
        let name = &state.plugin.name;
        log::warn!(target: "keel_wasm", "filter {name}: gRPC stream {token}: {full}");
    }
    Ok(status::OK)
}

/// `proxy_grpc_close` (Envoy `context.cc` `grpcClose`): ends the request side; the stream is
/// forgotten if the remote side has closed too, else its messages and its close still come.
/// `proxy_grpc_cancel` (`grpcCancel`): resets the stream, and nothing more of it comes. On a
/// unary call both cancel it: its request is reset at once (`request_->cancel()`, see
/// `crate::grpc::cancellable`) and no answer comes. A call or stream token that is no longer (or never was) in flight is
/// `NotFound`; any other token (an http call's, or one of no kind) `BadArgument`.
fn grpc_end(caller: &mut Ctx<'_>, token: i32, cancel: bool) -> i32 {
    let state = caller.data_mut();
    let token = token as u32;
    match tokens::kind(token) {
        Some(Kind::GrpcCall) if state.grpc_calls.remove(&token).is_some() => return status::OK,
        Some(Kind::GrpcCall) => return status::NOT_FOUND,
        Some(Kind::GrpcStream) => {}
        Some(Kind::HttpCall) | None => return status::BAD_ARGUMENT,
    }
    let streams = &mut state.grpc_streams;
    let Some(stream) = streams.get_mut(&token) else {
        return status::NOT_FOUND;
    };
    if cancel || stream.remote_closed {
        if !cancel {
            stream.close();
        }
        // Dropped without its end: the request body fails and the HTTP/2 stream is reset.
        streams.remove(&token);
    } else {
        stream.close();
        stream.local_closed = true;
    }
    status::OK
}

/// A callout with timeout 0 waits this long: a year, "no timeout" without overflowing a
/// deadline.
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

fn metric_of(state: &HostState, id: i32) -> Option<&CustomMetric> {
    state.metrics.get(&(id as u32))
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Ctx<'_>,
         up: i32,
         up_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         trailers: i32,
         trailers_len: i32,
         timeout: i32,
         ret_token: i32|
         -> R {
            super::start_phase::check(caller.data(), "proxy_http_call")?;
            http_call(
                &mut caller,
                [
                    up,
                    up_len,
                    headers,
                    headers_len,
                    body,
                    body_len,
                    trailers,
                    trailers_len,
                ],
                timeout,
                ret_token,
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut caller: Ctx<'_>,
         up: i32,
         up_len: i32,
         service: i32,
         service_len: i32,
         method: i32,
         method_len: i32,
         metadata: i32,
         metadata_len: i32,
         message: i32,
         message_len: i32,
         timeout: i32,
         ret_token: i32|
         -> R {
            super::start_phase::check(caller.data(), "proxy_grpc_call")?;
            let target = [
                up,
                up_len,
                service,
                service_len,
                method,
                method_len,
                metadata,
                metadata_len,
            ];
            grpc_call(
                &mut caller,
                target,
                [message, message_len],
                timeout,
                ret_token,
            )
        },
    )?;
    // (pointer, length) of the upstream, service, method and metadata, then the token's place.
    #[rustfmt::skip]
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut caller: Ctx<'_>, u: i32, ul: i32, s: i32, sl: i32, m: i32, ml: i32, d: i32, dl: i32,
         ret_token: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_grpc_stream")?;
            grpc_stream(&mut caller, [u, ul, s, sl, m, ml, d, dl], ret_token)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut caller: Ctx<'_>, token: i32, message: i32, message_len: i32, end: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_grpc_send")?;
            grpc_send(&mut caller, token, message, message_len, end)
        },
    )?;
    for (name, cancel) in [("proxy_grpc_close", false), ("proxy_grpc_cancel", true)] {
        linker.func_wrap("env", name, move |mut caller: Ctx<'_>, token: i32| -> R {
            super::start_phase::check(caller.data(), name)?;
            Ok(grpc_end(&mut caller, token, cancel))
        })?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: Ctx<'_>, ret_code: i32, ret_ptr: i32, ret_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_status")?;
            let (code, message) = caller
                .data()
                .call_status
                .clone()
                .unwrap_or((status::OK, String::new()));
            guest!(memory::write_u32(&mut caller, ret_code, code as u32));
            guest!(memory::copy_out(
                &mut caller,
                message.as_bytes(),
                ret_ptr,
                ret_len
            )?);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: Ctx<'_>,
         name: i32,
         name_len: i32,
         args: i32,
         args_len: i32,
         results: i32,
         results_len: i32|
         -> R {
            super::start_phase::check(caller.data(), "proxy_call_foreign_function")?;
            // cpp-host `src/exports.cc` `call_foreign_function`: both buffers are checked
            // first, then the name; the result goes to `results` (when not 0), its size to
            // `results_len` (when not 0). The functions: `crate::foreign`.
            let name = guest!(memory::read(&caller, name, name_len));
            let args = guest!(memory::read(&caller, args, args_len));
            let result = match crate::foreign::call(caller.data_mut(), &name, &args) {
                Ok(result) => result.unwrap_or_default(),
                Err(status) => return Ok(status),
            };
            if results != 0 {
                guest!(memory::copy_out(
                    &mut caller,
                    &result,
                    results,
                    results_len
                )?);
            } else if results_len != 0 {
                let len = u32::try_from(result.len()).unwrap_or(u32::MAX);
                guest!(memory::write_u32(&mut caller, results_len, len));
            }
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Ctx<'_>,
         key: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32,
         ret_cas: i32|
         -> R {
            super::start_phase::check(caller.data(), "proxy_get_shared_data")?;
            let key = guest!(memory::read(&caller, key, key_len));
            let Some((value, cas)) = shared::get(&caller.data().plugin.vm_id, &key) else {
                return Ok(status::NOT_FOUND);
            };
            guest!(memory::write_u32(&mut caller, ret_cas, cas));
            guest!(memory::copy_out(&mut caller, &value, ret_ptr, ret_len)?);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |caller: Ctx<'_>, key: i32, key_len: i32, value: i32, value_len: i32, cas: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_set_shared_data")?;
            let key = guest!(memory::read(&caller, key, key_len));
            let value = guest!(memory::read(&caller, value, value_len));
            Ok(
                match shared::set(&caller.data().plugin.vm_id, &key, value, cas as u32) {
                    SetResult::Ok => status::OK,
                    SetResult::CasMismatch => status::CAS_MISMATCH,
                },
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Ctx<'_>, name: i32, name_len: i32, ret_id: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_register_shared_queue")?;
            let name = guest!(memory::read(&caller, name, name_len));
            let state = caller.data();
            let id = shared::register_queue(&state.plugin.vm_id, &name, state.instance_id);
            guest!(memory::write_u32(&mut caller, ret_id, id));
            let state = caller.data_mut();
            if !state.queues.contains(&id) {
                state.queues.push(id);
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Ctx<'_>, vm: i32, vm_len: i32, name: i32, name_len: i32, ret_id: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_resolve_shared_queue")?;
            let vm = guest!(memory::read(&caller, vm, vm_len));
            let name = guest!(memory::read(&caller, name, name_len));
            let vm = if vm.is_empty() {
                caller.data().plugin.vm_id.clone()
            } else {
                String::from_utf8_lossy(&vm).into_owned()
            };
            let Some(id) = shared::resolve_queue(&vm, &name) else {
                return Ok(status::NOT_FOUND);
            };
            guest!(memory::write_u32(&mut caller, ret_id, id));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Ctx<'_>, id: i32, ret_ptr: i32, ret_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_dequeue_shared_queue")?;
            match shared::dequeue(id as u32) {
                Err(()) => Ok(status::NOT_FOUND),
                Ok(None) => Ok(status::EMPTY),
                Ok(Some(value)) => {
                    guest!(memory::copy_out(&mut caller, &value, ret_ptr, ret_len)?);
                    Ok(status::OK)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |caller: Ctx<'_>, id: i32, value: i32, value_len: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_enqueue_shared_queue")?;
            let value = guest!(memory::read(&caller, value, value_len));
            Ok(if shared::enqueue(id as u32, value) {
                status::OK
            } else {
                status::NOT_FOUND
            })
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Ctx<'_>, kind: i32, name: i32, name_len: i32, ret_id: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_define_metric")?;
            // Any bytes make a name (Envoy `context.cc` `defineMetric`); keel's exported name is
            // sanitized anyway.
            let name = guest!(memory::read(&caller, name, name_len));
            let name = String::from_utf8_lossy(&name);
            let Some((id, metric)) = crate::metrics::define(kind, &name, &caller.data().registry)
            else {
                return Ok(status::BAD_ARGUMENT);
            };
            guest!(memory::write_u32(&mut caller, ret_id, id));
            caller.data_mut().metrics.insert(id, metric);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: Ctx<'_>, id: i32, offset: i64| -> R {
            super::start_phase::check(caller.data(), "proxy_increment_metric")?;
            Ok(match metric_of(caller.data(), id) {
                None => status::NOT_FOUND,
                // Envoy `context.cc` `incrementMetric`: a counter takes only `offset > 0`.
                Some(CustomMetric::Counter(counter)) if offset > 0 => {
                    counter.inc_by(offset as u64);
                    status::OK
                }
                Some(CustomMetric::Gauge(gauge)) => {
                    gauge.add(offset);
                    status::OK
                }
                Some(_) => status::BAD_ARGUMENT,
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: Ctx<'_>, id: i32, value: i64| -> R {
            super::start_phase::check(caller.data(), "proxy_record_metric")?;
            Ok(match metric_of(caller.data(), id) {
                None => status::NOT_FOUND,
                // Envoy `context.cc` `recordMetric`: a counter *adds* the value.
                Some(CustomMetric::Counter(counter)) => {
                    counter.inc_by(value as u64);
                    status::OK
                }
                Some(CustomMetric::Gauge(gauge)) => {
                    gauge.set(value);
                    status::OK
                }
                Some(CustomMetric::Histogram(histogram)) => {
                    histogram.observe(value as u64 as f64);
                    status::OK
                }
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Ctx<'_>, id: i32, ret: i32| -> R {
            super::start_phase::check(caller.data(), "proxy_get_metric")?;
            let value = match metric_of(caller.data(), id) {
                None => return Ok(status::NOT_FOUND),
                Some(CustomMetric::Counter(counter)) => counter.get(),
                Some(CustomMetric::Gauge(gauge)) => gauge.get() as u64,
                Some(CustomMetric::Histogram(_)) => return Ok(status::BAD_ARGUMENT),
            };
            guest!(memory::write_u64(&mut caller, ret, value));
            Ok(status::OK)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::callout_request;

    #[test]
    fn callouts_need_method_path_and_authority() {
        let full: [(&[u8], &[u8]); 4] = [
            (b":method", b"GET"),
            (b":path", b"/s?id=1"),
            (b":authority", b"store"),
            (b"x-a", b"1"),
        ];
        let request = callout_request(&full, b"body".to_vec()).unwrap();
        assert_eq!(request.uri(), "http://store/s?id=1");
        assert_eq!(request.headers()["x-a"], "1");
        assert_eq!(&request.body()[..], b"body");
        for missing in 0..3 {
            let mut pairs = full.to_vec();
            pairs.remove(missing);
            assert!(
                callout_request(&pairs, Vec::new()).is_none(),
                "without {missing}"
            );
        }
    }
}
