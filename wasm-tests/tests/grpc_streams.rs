//! gRPC streams (`proxy_grpc_stream`, `proxy_grpc_send`, `proxy_grpc_close`,
//! `proxy_grpc_cancel`) at the keel-wasm level, with the probe in mode `grpc_stream store` and
//! the scripted `probe.Echo/Chat` stream of `ScriptedCallouts`: the callbacks come in Envoy's
//! order (`source/common/grpc/async_client_impl.cc` `AsyncStreamImpl`: initial metadata, each
//! message, trailing metadata, then the close; `source/extensions/common/wasm/context.cc`
//! `GrpcStreamClientHandler`), with Envoy's status codes (`context.cc` `grpcSend`, `grpcClose`,
//! `grpcCancel`) and cpp-host's tokens (a kind each); a root that waits for its `proxy_done`
//! gets its stream.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keel_wasm::HeadersVerdict;
use wasm_tests::{ScriptedCallouts, chain_with, eventually, header, info, metric, request, spec};

fn stream_chain(
    config: &str,
) -> (
    keel_wasm::FilterChain,
    Arc<ScriptedCallouts>,
    prometheus::Registry,
) {
    let callouts = Arc::new(ScriptedCallouts::default());
    let (chain, registry) =
        chain_with(vec![spec("caller", "test_probe", config)], callouts.clone());
    (chain, callouts, registry)
}

/// What the probe recorded for a stream whose request had `x-id: id` (it pauses until the
/// stream's close resumes it).
async fn recorded(chain: &keel_wasm::FilterChain, id: &str) -> http::request::Parts {
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", id)]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    req
}

/// The echo stream: initial metadata (with the server's `x-initial`), each message echoed
/// (each split across two DATA frames), the trailing metadata, then the close with status OK;
/// `proxy_get_status` answers it during `on_grpc_close`. The probe closed its side before the
/// close, so closing again in `on_grpc_close` is still `Ok` (Envoy `grpcClose`: the stream is
/// forgotten after the callback, `onGrpcCloseWrapper`'s cleanup). A token that is no stream:
/// `NotFound` for send, close and cancel.
#[tokio::test]
async fn a_stream_delivers_metadata_messages_trailers_and_close_in_order() {
    let (chain, callouts, _registry) = stream_chain("grpc_stream store");
    let req = recorded(&chain, "echo").await;
    assert_eq!(
        header(&req.headers, "x-grpc-stream"),
        "i3:1,m:echo:one,m:echo:two,t:done,c:0 0 "
    );
    assert_eq!(header(&req.headers, "x-grpc-after-close"), "Ok(())");
    assert_eq!(
        header(&req.headers, "x-grpc-bad"),
        "[Err(NotFound), Err(NotFound), Err(NotFound)]"
    );
    assert_eq!(
        callouts.seen.lock().unwrap().as_slice(),
        ["/probe.Echo/Chat"]
    );
    // The probe's close ended the request cleanly (END_STREAM, not a reset).
    assert_eq!(callouts.completed(), ["Chat:end"]);
}

/// Tokens as cpp-host gives them (`include/proxy-wasm/wasm.h` `nextHttpCallId`,
/// `nextGrpcCallId`, `nextGrpcStreamId`: one sequence per kind, by 4 from 0, 1 and 2), and what
/// the gRPC hostcalls answer for each kind (Envoy `context.cc` `grpcSend`: `BadArgument` for any
/// token but a stream's; `grpcClose`, `grpcCancel`: `NotFound` for a call or stream token not in
/// flight, `BadArgument` for any other).
#[tokio::test]
async fn tokens_are_numbered_by_kind_and_a_wrong_kind_is_a_bad_argument() {
    let (chain, _callouts, _registry) = stream_chain("grpc_tokens store");
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "tokens")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-tokens"), "4 8 5 9 6 10");
    let answers = header(&req.headers, "x-token-answers");
    let answers: Vec<&str> = answers.split(' ').collect();
    assert_eq!(
        answers,
        [
            "send(http)=BadArgument",
            "close(http)=BadArgument",
            "cancel(http)=BadArgument",
            "send(call)=BadArgument",
            "send(7)=BadArgument",
            "close(7)=BadArgument",
            "cancel(7)=BadArgument",
            "send(no-call)=BadArgument",
            "close(no-call)=NotFound",
            "cancel(no-call)=NotFound",
            "send(no-stream)=NotFound",
            "close(no-stream)=NotFound",
            "cancel(no-stream)=NotFound",
            "send(stream)=Ok",
            "close(call)=Ok",
            "cancel(closed-call)=NotFound",
            "cancel(stream)=Ok",
            "send(cancelled-stream)=NotFound",
            "cancel(call)=Ok",
            "close(stream)=Ok",
            "cancel(closed-stream)=Ok",
        ]
    );
}

/// What a filter sends to an upstream that reads none of it is queued, but not without a bound:
/// past the filter's memory limit (8 MiB here) keel resets the stream, which closes with empty
/// trailing metadata and INTERNAL with the cause (Envoy's `onReset`, `source/common/grpc/
/// async_client_impl.cc`), and every send still answers `Ok`, as Envoy's `grpcSend` does
/// (`context.cc`; Envoy buffers without a bound: `keel_wasm::grpc_send` says where).
#[tokio::test]
async fn a_stream_that_queues_past_the_memory_limit_is_reset() {
    let callouts = Arc::new(ScriptedCallouts::default());
    let mut probe = spec("caller", "test_probe", "grpc_flood store");
    probe.limits.memory_bytes = 8 << 20;
    let (chain, _registry) = chain_with(vec![probe], callouts.clone());
    let req = recorded(&chain, "stall").await;
    assert_eq!(header(&req.headers, "x-grpc-sends"), "40 Ok(())");
    // 31 messages of 256 KiB (and their 5-byte prefixes) fit in 8 MiB, the 32nd does not. The
    // reset came before the response head was read: no initial metadata.
    assert_eq!(
        header(&req.headers, "x-grpc-stream"),
        "t:-,c:13 13 keel reset the gRPC stream: the messages the filter's streams had queued \
         for upstreams that did not take them went over its memory limit (8388608 bytes)"
    );
}

/// A trailers-only error: empty initial metadata, the head as trailing metadata, the close
/// with the server's status and message (Envoy `AsyncStreamImpl::onHeaders`).
#[tokio::test]
async fn a_trailers_only_answer_closes_with_its_status() {
    let (chain, _callouts, _registry) = stream_chain("grpc_stream store");
    let req = recorded(&chain, "deny").await;
    assert_eq!(
        header(&req.headers, "x-grpc-stream"),
        "i0:-,t:-,c:7 7 denied"
    );
}

/// A message announced over keel's 4 MiB limit is refused before any of it is kept: empty
/// trailing metadata and RESOURCE_EXHAUSTED (Envoy `AsyncStreamImpl::onData`, `streamError`);
/// an upstream that cannot be reached: UNAVAILABLE with the router's text.
#[tokio::test]
async fn an_oversized_message_or_no_upstream_closes_the_stream() {
    let (chain, _callouts, _registry) = stream_chain("grpc_stream store");
    let huge = recorded(&chain, "huge").await;
    assert_eq!(
        header(&huge.headers, "x-grpc-stream"),
        "i3:1,t:-,c:8 8 a gRPC message of 5242880 bytes, over keel's limit of 4194304"
    );
    let down = recorded(&chain, "unreachable").await;
    let log = header(&down.headers, "x-grpc-stream");
    assert!(
        log.starts_with("i0:-,t:-,c:14 14 upstream connect error"),
        "{log}"
    );
}

/// An unknown upstream: `proxy_grpc_stream` answers `ParseFailure`, as the unary call does
/// (Envoy `context.cc` `grpcStream`: no such cluster).
#[tokio::test]
async fn an_unknown_upstream_is_a_parse_failure() {
    let (chain, _callouts, _registry) = stream_chain("grpc_stream nowhere");
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "echo")]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 502);
            assert_eq!(&local.body[..], b"grpc stream failed: ParseFailure\n");
        }
        other => panic!("expected the probe's 502, got {other:?}"),
    }
}

/// `proxy_grpc_cancel` resets the stream (the request body fails, no END_STREAM) and nothing
/// more of it reaches the filter; the token is gone: a send or a second cancel is `NotFound`
/// (Envoy `context.cc` `grpcCancel`: `resetStream`, then `grpc_stream_.erase`).
#[tokio::test]
async fn a_cancelled_stream_is_reset_and_calls_back_no_more() {
    let (chain, callouts, registry) = stream_chain("grpc_stream store cancel");
    let req = recorded(&chain, "echo").await;
    assert_eq!(
        header(&req.headers, "x-grpc-cancel"),
        "[Ok(()), Err(NotFound), Err(NotFound)]"
    );
    assert!(
        eventually(async || callouts.completed() == ["Chat:reset"]).await,
        "{:?}",
        callouts.completed()
    );
    // The echo of `one` and the server's close would have come by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_grpc_callbacks", &[]),
        None
    );
}

/// A root that opens a stream from `on_done` and answers "not done yet" is waited for while the
/// stream is open: its message and its close reach the root, whose `proxy_done` is then `Ok`
/// (cpp-host `src/wasm.cc` `WasmBase::startShutdown`, `done`: the VM lives on until
/// `proxy_done`; the stream belongs to the root context, `src/exports.cc` `grpc_stream`).
#[tokio::test]
async fn a_root_waiting_for_proxy_done_gets_its_stream() {
    let (chain, callouts, registry) = stream_chain("root_stream_flush");
    drop(chain);
    let flushed =
        eventually(async || metric(&registry, "keel_wasmcustom_probe_flushed", &[]).is_some())
            .await;
    assert!(flushed, "the root's stream did not close after on_done");
    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_flushed", &[]),
        Some(0.0),
        "proxy_done while the root waits is Ok"
    );
    // `echo:batch`; the request ended with the message (`end_stream`), not with a reset.
    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_flush_echo", &[]),
        Some(10.0)
    );
    assert_eq!(callouts.completed(), ["Chat:end"]);
}
