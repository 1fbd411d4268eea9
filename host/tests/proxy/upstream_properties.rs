//! The `upstream.*` properties a filter reads in `keel serve`, as Envoy's
//! `source/extensions/filters/common/expr/context.cc` gives them: `request_attempt_count` is the
//! number of upstream attempts (the router's `attemptCount`), `local_address` the local end of
//! the upstream connection that answered, `locality` an empty message (keel's members have
//! none), `transport_failure_reason` empty, `num_endpoints` the number of members, the TLS
//! fields absent (a plaintext upstream), and `response.backend_latency` the time
//! from the attempt to the end of the member's response. The probe (mode `accounting`) copies
//! the first four into the response and the latency into a gauge in on_log.

use std::time::Duration;

use crate::harness::{Backend, Http, Keel, eventually, filters_dir, metric_value};

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_reads_the_attempts_and_the_upstream_connection() {
    let mut a = Backend::start("a");
    let b = Backend::start("b");
    let b_port = b.url().rsplit(':').next().unwrap_or_default().to_owned();
    let keel = Keel::start(&format!(
        "listeners:\n  - address: 127.0.0.1:0\nbalancer:\n  members:\n    - route: a\n      \
         url: {}\n    - route: b\n      url: {}\n  health:\n    enabled: false\n\
         filters:\n  - name: probe\n    wasm: {}\n    config: accounting\n",
        a.url(),
        b.url(),
        filters_dir().join("test_probe.wasm").display()
    ));
    // With `a` gone, the request that picks it first fails over to `b`: two attempts.
    a.kill();
    let http = Http::new();
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let r = http.get(&keel.url("/"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let header = |name: &str| r.header(name).to_owned();
        attempts.push(header("x-acct-upstream-request_attempt_count"));
        let local: std::net::SocketAddr = header("x-acct-upstream-local_address")
            .parse()
            .unwrap_or_else(|e| panic!("upstream.local_address: {e}"));
        assert!(local.ip().is_loopback(), "{local}");
        assert_ne!(local.port().to_string(), b_port, "the local end, not b's");
        // `expr/context.cc` `UpstreamLocality`: the host's locality message, serialized
        // (`wasm/context.cc` `serializeValue`, `kMessage`): a member without one is Ok and no
        // bytes; a plaintext upstream has no TLS fields (`UpstreamWrapper`: no
        // `upstreamSslConnection()`), NotFound (status 1).
        assert_eq!(header("x-acct-upstream-locality"), "0:");
        // `UpstreamTransportFailureReason`: the transport's failure text, empty for a
        // connection that did not fail; `UpstreamNumEndpoints`: the cluster's membership total,
        // a (killed) and b.
        assert_eq!(header("x-acct-upstream-transport_failure_reason"), "0:");
        assert_eq!(header("x-acct-upstream-num_endpoints"), "2");
        // `UpstreamConnectionPoolReadyDuration`: nanoseconds from asking the pool to having a
        // connection (a new connection's connect included), well under the test's seconds.
        let waited: u64 = header("x-acct-upstream-cx_pool_ready_duration")
            .parse()
            .unwrap_or_else(|e| panic!("upstream.cx_pool_ready_duration: {e}"));
        assert!(waited < 5_000_000_000, "{waited} ns");
        assert_eq!(header("x-acct-upstream-tls_version"), "1:");
        assert_eq!(header("x-acct-upstream-subject_peer_certificate"), "1:");
    }
    assert!(
        attempts.iter().all(|n| n == "1" || n == "2"),
        "{attempts:?}"
    );
    assert!(
        attempts.iter().any(|n| n == "2"),
        "one request tried a, then b: {attempts:?}"
    );
}

/// `response.backend_latency` (`expr/context.cc` `BackendLatency`: last upstream byte received
/// minus first upstream byte sent) covers a member that waits 300 ms before it answers; with
/// the member gone, keel's own 503 had no upstream answer and the property is absent.
#[tokio::test(flavor = "multi_thread")]
async fn backend_latency_covers_the_members_delay_and_is_absent_without_an_answer() {
    let mut a = Backend::start("a");
    let keel = Keel::start(&format!(
        "listeners:\n  - address: 127.0.0.1:0\nbalancer:\n  members:\n    - route: a\n      \
         url: {}\n  health:\n    enabled: false\nadmin:\n  address: 127.0.0.1:0\n  \
         token_file: {{token_file}}\nfilters:\n  - name: probe\n    wasm: {}\n    \
         config: accounting\n",
        a.url(),
        filters_dir().join("test_probe.wasm").display()
    ));
    let http = Http::new();
    let r = http.get(&keel.url("/slow/300"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let gauge = "keel_wasmcustom_probe_log_probe_response_backend_latency";
    let latency = eventually(
        "on_log's backend latency",
        Duration::from_secs(5),
        || async { Some(metric_value(&keel.metrics(&http).await, gauge)).filter(|v| *v > 0.0) },
    )
    .await;
    assert!(
        (300e6..10e9).contains(&latency),
        "at least the member's 300 ms, in nanoseconds: {latency}"
    );

    a.kill();
    let r = http.get(&keel.url("/"), &[]).await;
    assert!(r.status == 502 || r.status == 503, "{r:?}");
    let absent = "keel_wasmcustom_probe_log_probe_response_backend_latency_absent";
    eventually(
        "on_log without a backend latency",
        Duration::from_secs(5),
        || async { (metric_value(&keel.metrics(&http).await, absent) == 1.0).then_some(()) },
    )
    .await;
}
