//! http callouts: the filter pauses, the response reaches the root context and the SDK moves it
//! to the stream (`set_effective_context`), which resumes; a reset arrives with no headers, a
//! timeout as a 504 and an unreachable upstream as a 503 (as Envoy's router answers); an unknown
//! upstream is `BadArgument`; several streams in flight on one
//! instance each get their own answer.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keel_wasm::HeadersVerdict;
use wasm_tests::{
    Answer, ScriptedCallouts, chain_with, header, info, local_header, metric, request, response,
    spec,
};

fn callout_chain(config: &str) -> (keel_wasm::FilterChain, Arc<ScriptedCallouts>) {
    let callouts = Arc::new(ScriptedCallouts::default());
    let (chain, _registry) =
        chain_with(vec![spec("caller", "test_probe", config)], callouts.clone());
    (chain, callouts)
}

/// The probe names the path `:Path`: Envoy lowercases the names of an http call's headers
/// (`context.cc` `buildRequestHeaderMapFromPairs`), keel matches them in any case (it used to
/// refuse the call, BadArgument).
#[tokio::test]
async fn a_callout_response_resumes_the_paused_request() {
    let (chain, callouts) = callout_chain("callout store");
    callouts.answer("1", Answer::Reply(200, "found", Duration::from_millis(20)));
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "1")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-callout-status"), "200");
    assert_eq!(header(&req.headers, "x-callout-headers"), "2");
    assert_eq!(header(&req.headers, "x-callout-body"), "found");
    assert_eq!(header(&req.headers, "x-callout-get-status"), "0 ");
    assert_eq!(callouts.seen.lock().unwrap().as_slice(), ["/lookup?id=1"]);
}

#[tokio::test]
async fn a_failed_callout_arrives_with_no_headers() {
    let (chain, callouts) = callout_chain("callout store deny");
    callouts.answer("2", Answer::Fail(Duration::from_millis(5)));
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "2")]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 403);
            assert_eq!(&local.body[..], b"denied\n");
            // Envoy `context.cc` `onHttpCallFailure`: status BrokenConnection (11), "reset",
            // for the call's response callback.
            assert_eq!(local_header(&local, "x-callout-get-status"), "11 reset");
            // And there is no response map: Envoy `context.cc` `getHeaderMapValue` finds no
            // `http_call_response_` map and answers `BadArgument` (it used to be `NotFound`).
            assert_eq!(local_header(&local, "x-callout-status"), "BadArgument");
        }
        other => panic!("expected the filter's 403, got {other:?}"),
    }
}

/// A timeout is a 504 response, as Envoy's async client (through the router) delivers it
/// (`source/common/http/async_client_impl.cc`; the router's "upstream request timeout"), not
/// a failure with no headers.
#[tokio::test(start_paused = true)]
async fn a_callout_that_never_answers_times_out() {
    let (chain, callouts) = callout_chain("callout store");
    callouts.answer("3", Answer::Hang);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "3")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-callout-status"), "504");
    assert_eq!(header(&req.headers, "x-callout-headers"), "3");
    assert_eq!(
        header(&req.headers, "x-callout-body"),
        "upstream request timeout"
    );
}

/// An upstream that cannot be reached is a 503 response with the router's text (Envoy's
/// async client goes through the router); only a reset once connected is a failure.
#[tokio::test]
async fn an_unreachable_upstream_answers_503() {
    let (chain, callouts) = callout_chain("callout store");
    callouts.answer("5", Answer::Unreachable);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "5")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-callout-status"), "503");
    assert!(
        header(&req.headers, "x-callout-body").starts_with("upstream connect error"),
        "{:?}",
        req.headers
    );
}

#[tokio::test]
async fn an_unknown_upstream_is_a_bad_argument() {
    let (chain, _callouts) = callout_chain("callout nowhere");
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "4")]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 502);
            assert_eq!(&local.body[..], b"dispatch failed: BadArgument\n");
        }
        other => panic!("expected the filter's 502, got {other:?}"),
    }
}

#[tokio::test]
async fn several_streams_in_flight_on_one_instance_resume_correctly() {
    let (chain, callouts) = callout_chain("callout store");
    callouts.answer("a", Answer::Reply(200, "body-a", Duration::from_millis(60)));
    callouts.answer("b", Answer::Reply(200, "body-b", Duration::from_millis(5)));
    callouts.answer("c", Answer::Reply(404, "body-c", Duration::from_millis(30)));
    let run = |id: &'static str| {
        let mut stream = chain.stream(info());
        async move {
            let mut req = request("/", &[("x-id", id)]);
            let verdict = stream.request_headers(&mut req, true).await;
            stream.finish();
            (
                verdict,
                header(&req.headers, "x-callout-body"),
                header(&req.headers, "x-callout-status"),
            )
        }
    };
    let (a, b, c) = tokio::join!(run("a"), run("b"), run("c"));
    assert_eq!(
        a,
        (
            HeadersVerdict::Continue,
            "body-a".to_owned(),
            "200".to_owned()
        )
    );
    assert_eq!(
        b,
        (
            HeadersVerdict::Continue,
            "body-b".to_owned(),
            "200".to_owned()
        )
    );
    assert_eq!(
        c,
        (
            HeadersVerdict::Continue,
            "body-c".to_owned(),
            "404".to_owned()
        )
    );
    assert_eq!(callouts.seen.lock().unwrap().len(), 3);
}

/// Envoy runs `proxy_http_call` on the root context (cpp-host `src/exports.cc` `http_call`:
/// `contextOrEffectiveContext()->root_context()`), which keeps the request until it is answered
/// (Envoy `source/extensions/common/wasm/context.cc` `Context::~Context` cancels only the
/// requests of the context being destroyed): a callout the stream does not wait for is still
/// answered after the stream ended.
#[tokio::test]
async fn a_callout_in_flight_outlives_its_stream() {
    let (chain, callouts) = callout_chain("fire");
    callouts.answer("f", Answer::Reply(200, "late", Duration::from_millis(50)));
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "f")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    stream.finish();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(callouts.completed(), ["/request?id=f"]);
    // The instance took the late answer (the SDK drops it: the context is gone) and goes on.
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "g")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
}

/// A callout dispatched from `on_log` is sent and answered, as in Envoy, where `on_log` runs
/// before the stream context is destroyed and the request lives on the root context (same
/// sources as above).
#[tokio::test]
async fn a_callout_made_in_on_log_is_sent() {
    let (chain, callouts) = callout_chain("log_callout");
    callouts.answer("l", Answer::Reply(204, "", Duration::from_millis(20)));
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "l")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    stream.finish();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(callouts.completed(), ["/log?id=l"]);
}

/// A unary gRPC call (`proxy_grpc_call`) goes to the callout upstream as Envoy's raw async gRPC
/// client sends it (`POST /probe.Auth/Check`, one framed message, the filter's metadata); status
/// OK delivers the response message through `on_grpc_receive` (buffer 5), any other status
/// comes through `on_grpc_close` with `proxy_get_status` answering code and message (Envoy
/// `context.cc` `onGrpcReceive`, `onGrpcClose`); the SDK resumes the stream either way.
#[tokio::test]
async fn a_grpc_call_delivers_its_message_or_its_status() {
    let (chain, callouts) = callout_chain("grpc store");
    callouts.answer("ok", Answer::Grpc(0, "allowed", Duration::from_millis(10)));
    callouts.answer(
        "no",
        Answer::Grpc(7, "not this one", Duration::from_millis(5)),
    );
    callouts.answer("down", Answer::Unreachable);
    for (id, expected) in [
        ("ok", "0 allowed"),
        ("no", "7 7 not this one"),
        // As Envoy's router answers an unreachable cluster (503): UNAVAILABLE.
        (
            "down",
            "14 14 upstream connect error or disconnect/reset before headers. reset reason: \
             connection failure",
        ),
    ] {
        let mut stream = chain.stream(info());
        let mut req = request("/", &[("x-id", id)]);
        assert_eq!(
            stream.request_headers(&mut req, true).await,
            HeadersVerdict::Continue
        );
        assert_eq!(header(&req.headers, "x-grpc-answer"), expected, "{id}");
    }
    assert_eq!(
        callouts.completed(),
        ["/probe.Auth/Check", "/probe.Auth/Check"]
    );
}

/// `proxy_grpc_cancel` on a unary call: `Ok`, then `NotFound` (the token is gone); the call is
/// dropped at once, before its answer (5 ms later) comes, so that its request is reset, and
/// nothing reaches the filter (Envoy `context.cc` `grpcCancel`: `request_->cancel()`, then
/// `grpc_call_request_.erase`).
#[tokio::test]
async fn a_cancelled_grpc_call_calls_back_no_more() {
    let callouts = Arc::new(ScriptedCallouts::default());
    let (chain, registry) = chain_with(
        vec![spec("caller", "test_probe", "grpc store cancel")],
        callouts.clone(),
    );
    callouts.answer("ok", Answer::Grpc(0, "allowed", Duration::from_millis(5)));
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "ok")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(
        header(&req.headers, "x-grpc-cancel"),
        "[Ok(()), Err(NotFound)]"
    );
    assert_eq!(
        callouts.seen.lock().unwrap().as_slice(),
        ["/probe.Auth/Check"]
    );
    // Ten times the answer's delay: the call did not run to its end (it used to, keel only
    // dropping the answer), and the response phase has nothing to deliver.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        callouts.completed().is_empty(),
        "{:?}",
        callouts.completed()
    );
    let mut res = response(200, &[]);
    assert_eq!(
        stream.response_headers(&mut res, None, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_grpc_callbacks", &[]),
        None
    );
}

/// The instance that made a unary call is let go (its chain is dropped) while the call is in
/// flight: the call goes with it, its request reset (Envoy `context.cc` `Context::~Context`
/// cancels every call in flight).
#[tokio::test]
async fn a_grpc_call_in_flight_is_cancelled_when_its_instance_goes() {
    let callouts = Arc::new(ScriptedCallouts::default());
    let (chain, _registry) = chain_with(
        vec![spec("caller", "test_probe", "grpc store")],
        callouts.clone(),
    );
    callouts.answer("slow", Answer::Grpc(0, "late", Duration::from_millis(100)));
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-id", "slow")]);
    // The probe pauses for the answer; the stream and the chain go before it comes.
    let paused = tokio::time::timeout(
        Duration::from_millis(20),
        stream.request_headers(&mut req, true),
    )
    .await;
    assert!(paused.is_err(), "the probe did not wait for its call");
    drop(stream);
    drop(chain);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        callouts.seen.lock().unwrap().as_slice(),
        ["/probe.Auth/Check"]
    );
    assert!(
        callouts.completed().is_empty(),
        "{:?}",
        callouts.completed()
    );
}
