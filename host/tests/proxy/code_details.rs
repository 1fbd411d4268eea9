//! `response.code_details` in `keel serve`: a filter (the test probe in mode `accounting`) reads
//! `via_upstream` on a member's answer and, on keel's own 502 for a member that refuses the
//! connection, the details Envoy's router gives an early reset by a connection failure
//! (`source/common/router/router.cc` `onUpstreamReset`:
//! `upstream_reset_before_response_started{<Http::Utility::resetReasonToString>}`, spaces as
//! `_`), as its reply goes through the filters' response callbacks.

use crate::harness::{Backend, Http, Keel, filters_dir};

/// keel with one member at `url`, no health checks (the member's state is what the requests
/// find), and the probe in mode `accounting`.
fn keel_with_probe(url: &str) -> Keel {
    Keel::start(&format!(
        "listeners:\n  - address: 127.0.0.1:0\nbalancer:\n  members:\n    - route: a\n      \
         url: {url}\n  health:\n    enabled: false\n\
         filters:\n  - name: probe\n    wasm: {}\n    config: accounting\n",
        filters_dir().join("test_probe.wasm").display()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_reads_why_keel_answered() {
    let mut a = Backend::start("a");
    let keel = keel_with_probe(&a.url());
    let http = Http::new();
    let r = http.get(&keel.url("/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers
            .get("x-acct-response-code_details")
            .and_then(|v| v.to_str().ok()),
        Some("via_upstream")
    );
    a.kill();
    let r = http.get(&keel.url("/"), &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(
        r.headers
            .get("x-acct-response-code_details")
            .and_then(|v| v.to_str().ok()),
        Some("upstream_reset_before_response_started{remote_connection_failure}")
    );
}
