//! Modules that are not built the way keel's own filters are, run as Envoy runs them:
//! * a Rust SDK 0.1.x filter (`test_legacy`: proxy-wasm ABI 0.1.0, a WASI command whose root
//!   context is set in `_start`), which cpp-host starts through `_start` (`src/wasm.cc`
//!   `getFunctions` looks `_start` up when there is no `_initialize`; `startVm` calls it) and
//!   whose headers callbacks take no `end_of_stream` (`on_request_headers_abi_01_`), and for
//!   which a missing header is Ok and empty (Envoy `context.cc` `getHeaderMapValue`: the SDK
//!   0.1.x panics on NotFound);
//! * a module with no SDK (`test_raw`) returning the action values of the C++ and
//!   AssemblyScript SDKs, which Envoy maps (cpp-host `src/context.cc`
//!   `convertVmCallResultToFilter{Headers,Data,Trailers}Status`) instead of failing the filter.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keel_wasm::{BodyVerdict, FailurePolicy, HeadersVerdict, TrailersVerdict};
use wasm_tests::{
    Answer, ScriptedCallouts, chain, chain_with, header, info, metric, request, response, spec,
};

#[tokio::test]
async fn a_rust_sdk_0_1_filter_starts_through_start_and_filters() {
    let (chain, _registry) = chain(vec![spec("legacy", "test_legacy", "configured")]);
    let mut stream = chain.stream(info());
    let mut req = request("/legacy/path", &[]);
    assert_eq!(
        stream.request_headers(&mut req, false).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-legacy"), "configured");
    let mut res = response(200, &[]);
    assert_eq!(
        stream.response_headers(&mut res, None, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&res.headers, "x-legacy-response"), "/legacy/path");
    stream.finish();
}

#[tokio::test]
async fn a_rust_sdk_0_1_filter_pauses_for_a_callout_and_resumes() {
    let callouts = Arc::new(ScriptedCallouts::default());
    callouts.answer(
        "legacy",
        Answer::Reply(200, "ok", Duration::from_millis(10)),
    );
    let (chain, _registry) = chain_with(vec![spec("legacy", "test_legacy", "c")], callouts.clone());
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-legacy-pause", "1")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-legacy-callout"), "200");
    assert_eq!(callouts.completed(), ["/auth?id=legacy"]);
}

fn raw(name: &str, actions: &str) -> keel_wasm::FilterSpec {
    let mut spec = spec(name, "test_raw", actions);
    spec.failure_policy = FailurePolicy::FailOpen;
    spec.limits.pause_timeout = Duration::from_millis(100);
    spec
}

#[tokio::test]
async fn continue_and_end_stream_on_headers_continues() {
    let (chain, registry) = chain(vec![raw("raw-2", "2 0 0")]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    assert_eq!(
        stream.request_headers(&mut req, false).await,
        HeadersVerdict::Continue
    );
    let failures = metric(
        &registry,
        "keel_wasm_failures_total",
        &[("filter", "raw-2")],
    );
    assert_eq!(failures, None, "not a filter failure");
}

#[tokio::test(start_paused = true)]
async fn stop_all_iteration_values_on_headers_pause() {
    for (name, value) in [
        ("raw-3", "3 0 0"),
        ("raw-4", "4 0 0"),
        ("raw-9", "9 0 0"),
        ("raw-neg", "-1 0 0"),
    ] {
        let (chain, _registry) = chain(vec![raw(name, value)]);
        let mut stream = chain.stream(info());
        let mut req = request("/", &[]);
        // Paused until the pause timeout: the stream is answered 408, fail_open or not.
        match stream.request_headers(&mut req, false).await {
            HeadersVerdict::Respond(local) => assert_eq!(local.status, 408, "{name}"),
            other => panic!("{name}: expected a pause, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn stop_iteration_values_on_the_body_hold_it() {
    for (name, value) in [("raw-b2", "0 2 0"), ("raw-b3", "0 3 0")] {
        let (chain, _registry) = chain(vec![raw(name, value)]);
        let mut stream = chain.stream(info());
        let mut req = request("/", &[]);
        assert_eq!(
            stream.request_headers(&mut req, false).await,
            HeadersVerdict::Continue
        );
        assert!(
            matches!(
                stream.request_body(Bytes::from_static(b"abc"), false).await,
                BodyVerdict::Hold
            ),
            "{name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn any_non_zero_trailers_value_stops_iteration() {
    let (chain, _registry) = chain(vec![raw("raw-t", "0 0 5")]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    assert_eq!(
        stream.request_headers(&mut req, false).await,
        HeadersVerdict::Continue
    );
    let mut trailers = http::HeaderMap::new();
    match stream.request_trailers(&mut trailers).await {
        TrailersVerdict::Respond(local) => assert_eq!(local.status, 408),
        other => panic!("expected a pause, got {other:?}"),
    }
}
