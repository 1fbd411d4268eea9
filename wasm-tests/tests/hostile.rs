//! Hostile filters are contained: a trap, an endless loop, unbounded allocation and `proc_exit`
//! each get the filter's failure policy (fail closed → 503, fail open → the request goes on
//! without it), a log line and a metric; the instance is replaced by a fresh configured one, and
//! the next request is served. A pause never resumed is answered 408, as Envoy's idle timeout.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use keel_wasm::{FailurePolicy, FilterSpec, HeadersVerdict};
use wasm_tests::{chain, header, info, metric, request, response, spec};

/// A probe in a hostile mode; `name` is unique per test, since the failure counter is
/// process-wide (one series per filter name, shared by every chain).
fn hostile(name: &str, mode: &str, policy: FailurePolicy) -> FilterSpec {
    let mut spec = spec(name, "test_probe", mode);
    spec.failure_policy = policy;
    spec.limits.callback_deadline = Duration::from_millis(50);
    spec.limits.memory_bytes = 16 << 20;
    spec.limits.pause_timeout = Duration::from_millis(200);
    spec
}

/// Runs one request through a chain of [hostile, headers-probe] and returns the verdict and the
/// request headers after it.
async fn one_request(chain: &keel_wasm::FilterChain) -> (HeadersVerdict, http::HeaderMap) {
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    let verdict = stream.request_headers(&mut req, true).await;
    stream.finish();
    (verdict, req.headers)
}

async fn contained(mode: &str, kind: &str) {
    let (chain, registry) = chain(vec![
        hostile(&format!("closed-{mode}"), mode, FailurePolicy::FailClosed),
        spec("probe", "test_probe", "headers"),
    ]);
    for round in 1..=2u32 {
        let (verdict, headers) = one_request(&chain).await;
        match verdict {
            HeadersVerdict::Respond(local) => assert_eq!(local.status, 503, "{mode}"),
            other => panic!("{mode}: expected 503, got {other:?}"),
        }
        // The chain stopped at the failing filter: the probe after it did not run.
        assert!(!headers.contains_key("x-probe-count"), "{mode}");
        let failures = metric(
            &registry,
            "keel_wasm_failures_total",
            &[("filter", &format!("closed-{mode}")), ("kind", kind)],
        );
        assert!(
            failures >= Some(f64::from(round)),
            "{mode}: metric {failures:?} after round {round}"
        );
    }
}

#[tokio::test]
async fn a_trap_fails_closed_and_the_instance_is_replaced() {
    contained("trap", "trap").await;
}

#[tokio::test]
async fn an_endless_loop_hits_the_deadline() {
    contained("loop", "deadline").await;
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    contained("alloc", "memory").await;
}

#[tokio::test]
async fn proc_exit_marks_the_instance_failed() {
    contained("exit", "proc_exit").await;
}

#[tokio::test]
async fn fail_open_lets_the_request_go_on_without_the_filter() {
    let (chain, registry) = chain(vec![
        hostile("open-loop", "loop", FailurePolicy::FailOpen),
        spec("probe", "test_probe", "headers"),
    ]);
    for _ in 0..2 {
        let (verdict, headers) = one_request(&chain).await;
        assert_eq!(verdict, HeadersVerdict::Continue);
        assert_eq!(
            header(&headers, "x-probe-count"),
            "4/4",
            "the next filter ran"
        );
    }
    assert_eq!(
        metric(
            &registry,
            "keel_wasm_failures_total",
            &[("filter", "open-loop"), ("kind", "deadline")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_trap_in_the_response_path_fails_open() {
    let (chain, registry) = chain(vec![hostile(
        "open-trap-response",
        "trap_response",
        FailurePolicy::FailOpen,
    )]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    let mut res = response(200, &[("a", "1")]);
    assert_eq!(
        stream.response_headers(&mut res, None, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(res.status, 200);
    stream.finish();
    assert_eq!(
        metric(
            &registry,
            "keel_wasm_failures_total",
            &[("filter", "open-trap-response"), ("kind", "trap")]
        ),
        Some(1.0)
    );
    // The replacement instance serves the next request.
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
}

/// A pause never resumed ends as Envoy's stream idle timeout ends a stream: 408 "stream
/// timeout" (`source/common/http/conn_manager_impl.cc` `onIdleTimeout`), whatever the failure
/// policy — with `fail_open` the request used to go on without the filter's decision.
#[tokio::test(start_paused = true)]
async fn a_pause_never_resumed_times_out() {
    let (chain, registry) = chain(vec![hostile(
        "closed-pause",
        "pause",
        FailurePolicy::FailClosed,
    )]);
    let (verdict, _) = one_request(&chain).await;
    match verdict {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 408);
            assert_eq!(&local.body[..], b"stream timeout");
        }
        other => panic!("expected 408, got {other:?}"),
    }
    assert_eq!(
        metric(
            &registry,
            "keel_wasm_failures_total",
            &[("filter", "closed-pause"), ("kind", "pause_timeout")]
        ),
        Some(1.0)
    );

    let (open, _registry) = wasm_tests::chain(vec![hostile(
        "open-pause",
        "pause",
        FailurePolicy::FailOpen,
    )]);
    let (verdict, _) = one_request(&open).await;
    match verdict {
        HeadersVerdict::Respond(local) => assert_eq!(local.status, 408),
        other => panic!("fail_open: expected 408, got {other:?}"),
    }
}

/// Start-up callbacks have their own deadline (`start_deadline`, 60 s by default; Envoy has
/// none): an `on_configure` slower than the per-request deadline no longer fails the filter.
#[tokio::test]
async fn a_slow_on_configure_is_not_held_to_the_request_deadline() {
    let mut slow = hostile(
        "slow-configure",
        "slow_configure",
        FailurePolicy::FailClosed,
    );
    slow.limits.callback_deadline = Duration::from_millis(20);
    let (chain, _registry) = chain(vec![slow]);
    let (verdict, _) = one_request(&chain).await;
    assert_eq!(verdict, HeadersVerdict::Continue);

    let mut strict = hostile(
        "strict-configure",
        "slow_configure",
        FailurePolicy::FailClosed,
    );
    strict.limits.start_deadline = Duration::from_millis(20);
    let registry = prometheus::Registry::new();
    let refused = keel_wasm::FilterChain::new(
        vec![strict],
        1,
        &registry,
        std::sync::Arc::new(keel_wasm::NoCallouts),
    );
    assert!(
        refused.is_err(),
        "a start_deadline set by hand still applies"
    );
}

#[tokio::test]
async fn other_streams_keep_being_served_while_one_filter_fails() {
    let (good, _r1) = chain(vec![spec("probe", "test_probe", "headers")]);
    let (bad, _r2) = chain(vec![hostile(
        "side-trap",
        "trap",
        FailurePolicy::FailClosed,
    )]);
    for _ in 0..5 {
        let (verdict, _) = one_request(&bad).await;
        assert!(matches!(verdict, HeadersVerdict::Respond(_)));
        let (verdict, headers) = one_request(&good).await;
        assert_eq!(verdict, HeadersVerdict::Continue);
        assert_eq!(header(&headers, "x-prop-plugin"), "probe");
    }
}
