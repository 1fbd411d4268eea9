//! The properties Envoy computes for a stream rather than reads from a head: header and total
//! sizes, the request's duration, `response.code_details` and `response.grpc_status`
//! (`source/extensions/filters/common/expr/context.cc`, encoded as
//! `source/extensions/common/wasm/context.cc` `serializeValue` writes them), through the probe
//! filter's `accounting` mode.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use keel_wasm::{BodyVerdict, CodeDetails, HeadersVerdict, Stream, TrailersVerdict, UpstreamInfo};
use wasm_tests::{
    chain, continued_get, header, info, local_header, metric, request, response, spec,
};

/// Envoy's `HeaderMapImpl::byteSize()` of a request head as the filter sees it: every key and
/// value, the pseudo-headers included, `host` shown as `:authority`.
fn request_bytes(parts: &http::request::Parts) -> u64 {
    let pseudo = ":authority".len() + ":path".len() + ":method".len() + ":scheme".len();
    let values = "keel.test".len() + parts.uri.path().len() + parts.method.as_str().len() + 4;
    let headers: usize = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != http::header::HOST)
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (pseudo + values + headers) as u64
}

/// The same for a response head (`:status` and its three digits first) or trailers.
fn map_bytes(map: &http::HeaderMap, status: bool) -> u64 {
    let head = if status { ":status".len() + 3 } else { 0 };
    let pairs: usize = map
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (head + pairs) as u64
}

/// A member's 200 with a body to come through the response headers callbacks, every filter
/// continuing.
async fn member_answers(stream: &mut Stream) {
    let upstream = UpstreamInfo::new("127.1.2.3:8081".parse().unwrap(), "tomcat1");
    let mut res = response(200, &[]);
    assert_eq!(
        stream
            .response_headers(&mut res, Some(&upstream), false)
            .await,
        HeadersVerdict::Continue
    );
}

/// `expr/context.cc`: `request.headers_bytes` and `response.headers_bytes` are the heads'
/// `byteSize()`, `*.total_size` adds the body bytes (and the response trailers);
/// `request.duration` exists only once the request is complete (`requestComplete()`, set
/// before `Context::log`), as int64 nanoseconds; `response.code_details` is `via_upstream` for
/// a backend's answer (router); `response.grpc_status` is the trailers' `grpc-status`, else the
/// one the HTTP status maps to (`source/common/grpc/common.cc` `getGrpcStatus`: 200 → UNKNOWN).
#[tokio::test]
async fn sizes_duration_details_and_grpc_status_of_a_proxied_stream() {
    // A plugin name of its own: the gauges on_log sets are process-wide, and other tests run
    // the accounting probe at the same time.
    let (chain, registry) = chain(vec![spec("proxied", "test_probe", "accounting")]);
    let mut stream = chain.stream(info());
    let mut req = request("/x", &[("content-length", "3")]);
    assert_eq!(
        stream.request_headers(&mut req, false).await,
        HeadersVerdict::Continue
    );
    // :authority keel.test (19), :path /x (7), :method GET (10), :scheme http (11),
    // content-length 3 (15).
    assert_eq!(header(&req.headers, "x-acct-request-headers_bytes"), "62");
    assert_eq!(header(&req.headers, "x-acct-request-total_size"), "62");
    assert_eq!(header(&req.headers, "x-acct-request-duration"), "-");
    assert_eq!(
        stream.request_body(Bytes::from_static(b"abc"), true).await,
        BodyVerdict::Forward(Bytes::from_static(b"abc"))
    );

    let upstream = UpstreamInfo::new("127.1.2.3:8081".parse().unwrap(), "tomcat1");
    let mut res = response(200, &[("content-type", "text/plain")]);
    assert_eq!(
        stream
            .response_headers(&mut res, Some(&upstream), false)
            .await,
        HeadersVerdict::Continue
    );
    // :status 200 (10), content-type text/plain (22).
    assert_eq!(header(&res.headers, "x-acct-response-headers_bytes"), "32");
    assert_eq!(header(&res.headers, "x-acct-response-total_size"), "32");
    assert_eq!(header(&res.headers, "x-acct-response-grpc_status"), "2");
    assert_eq!(
        header(&res.headers, "x-acct-response-code_details"),
        "via_upstream"
    );
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"hello"), false)
            .await,
        BodyVerdict::Forward(Bytes::from_static(b"hello"))
    );
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "7".parse().unwrap());
    assert_eq!(
        stream.response_trailers(&mut trailers).await,
        TrailersVerdict::Continue(Bytes::new())
    );
    stream.finish();

    let log = |name: &str| {
        metric(
            &registry,
            &format!("keel_wasmcustom_probe_log_proxied_{name}"),
            &[],
        )
    };
    // on_log sees the heads as the filter left them (with its own x-acct-* headers).
    assert_eq!(
        log("request_total_size"),
        Some((3 + request_bytes(&req)) as f64)
    );
    assert_eq!(
        log("response_total_size"),
        Some((5 + map_bytes(&res.headers, true) + map_bytes(&trailers, false)) as f64)
    );
    assert_eq!(
        log("response_grpc_status"),
        Some(7.0),
        "the trailers' status"
    );
    let duration = log("request_duration").expect("request.duration in on_log");
    assert!(
        duration > 0.0 && duration < 60e9,
        "nanoseconds since the request began: {duration}"
    );
}

/// A fail-closed filter's reply (`source/extensions/common/wasm/context.cc` `failStream`: 503,
/// details `wasm_fail_stream`) goes through the response callbacks of the filter before it,
/// which reads its details and the gRPC status its 503 maps to (UNAVAILABLE, `getGrpcStatus`).
#[tokio::test]
async fn a_failed_filter_reply_says_wasm_fail_stream() {
    let (chain, _registry) = chain(vec![
        spec("accounting", "test_probe", "accounting"),
        spec("trap", "test_probe", "trap"),
    ]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    let local = match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => local,
        other => panic!("expected the fail-closed 503, got {other:?}"),
    };
    assert_eq!(local.status, 503);
    assert_eq!(
        local_header(&local, "x-acct-response-code_details"),
        "wasm_fail_stream"
    );
    assert_eq!(local.details, "wasm_fail_stream");
    assert_eq!(local_header(&local, "x-acct-response-grpc_status"), "14");
    stream.finish();
}

/// keel's own answers (a 502/503/504 of the proxy) carry the details Envoy's router gives the
/// same failure (`envoy/stream_info/stream_info.h` `ResponseCodeDetailValues`): the filters
/// read them from the head keel hands them.
#[tokio::test]
async fn keels_own_reply_carries_the_routers_details() {
    let (chain, _registry) = chain(vec![spec("accounting", "test_probe", "accounting")]);
    let (mut stream, _) = continued_get(&chain, "/", true).await;
    let mut res = response(503, &[]);
    let details = "upstream_reset_before_response_started{remote_connection_failure}";
    res.extensions.insert(CodeDetails(details));
    assert_eq!(
        stream.response_headers(&mut res, None, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(
        header(&res.headers, "x-acct-response-code_details"),
        details
    );
    stream.finish();
}

/// A filter's `send_local_response` details are kept with their whitespace made `_`
/// (`context.cc` `sendLocalResponse`: `StringUtil::replaceAllEmptySpace`).
#[tokio::test]
async fn a_filter_reply_keeps_the_filters_details() {
    let (chain, _registry) = chain(vec![
        spec("accounting", "test_probe", "accounting"),
        spec("local", "test_probe", "local_details"),
    ]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    let local = match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => local,
        other => panic!("expected the probe's 403, got {other:?}"),
    };
    assert_eq!(local.status, 403);
    assert_eq!(local.details, "denied_by_probe");
    assert_eq!(
        local_header(&local, "x-acct-response-code_details"),
        "denied_by_probe"
    );
    stream.finish();
}

/// `response.size` is what went to the client (`expr/context.cc`: `bytesSent()`), not what the
/// member sent: behind a filter that holds the body and adds a byte (the probe's `body_buffer`,
/// first on the response), on_log reads one byte more than the member's 8.
#[tokio::test]
async fn response_size_counts_what_the_client_gets() {
    // A plugin name of its own: on_log's gauges are process-wide.
    let (chain, registry) = chain(vec![
        spec("sent", "test_probe", "accounting"),
        spec("buffer", "test_probe", "body_buffer"),
    ]);
    let (mut stream, _) = continued_get(&chain, "/x", true).await;
    member_answers(&mut stream).await;
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"hello"), false)
            .await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream.response_body(Bytes::from_static(b"abc"), true).await,
        BodyVerdict::Forward(Bytes::from_static(b"helloabc!"))
    );
    stream.finish();
    assert_eq!(
        metric(
            &registry,
            "keel_wasmcustom_probe_log_sent_response_size",
            &[]
        ),
        Some(9.0)
    );
}

/// `response.backend_latency` (Envoy `source/extensions/filters/common/expr/context.cc`
/// `BackendLatency`): `lastUpstreamRxByteReceived - firstUpstreamTxByteSent`, int64 nanoseconds,
/// known once the member's response is complete: on_log reads exactly the time between the
/// attempt the host reports and the end of the response it reports.
#[tokio::test]
async fn backend_latency_runs_from_the_attempt_to_the_end_of_the_response() {
    // A plugin name of its own: on_log's gauges are process-wide.
    let (chain, registry) = chain(vec![spec("latency", "test_probe", "accounting")]);
    let (mut stream, _) = continued_get(&chain, "/x", true).await;
    let sent = std::time::Instant::now();
    stream.upstream_attempts(1, None, Some(sent));
    member_answers(&mut stream).await;
    stream.upstream_received(sent + std::time::Duration::from_millis(250));
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"done"), true)
            .await,
        BodyVerdict::Forward(Bytes::from_static(b"done"))
    );
    stream.finish();
    assert_eq!(
        metric(
            &registry,
            "keel_wasmcustom_probe_log_latency_response_backend_latency",
            &[]
        ),
        Some(250e6)
    );
}

/// Without a member's answer (here a filter's local reply) there is no upstream timing and
/// Envoy's `BackendLatency` returns nothing: the property is `NotFound`, in on_log too.
#[tokio::test]
async fn no_backend_latency_without_an_upstream_answer() {
    let (chain, registry) = chain(vec![
        spec("nolatency", "test_probe", "accounting"),
        spec("local", "test_probe", "local_details"),
    ]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    assert!(matches!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Respond(_)
    ));
    stream.finish();
    let metric = |name: &str| metric(&registry, name, &[]);
    assert_eq!(
        metric("keel_wasmcustom_probe_log_nolatency_response_backend_latency_absent"),
        Some(1.0)
    );
    assert_eq!(
        metric("keel_wasmcustom_probe_log_nolatency_response_backend_latency"),
        None
    );
}
