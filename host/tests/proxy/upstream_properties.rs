//! The `upstream.*` properties a filter reads in `keel serve`, as Envoy's
//! `source/extensions/filters/common/expr/context.cc` gives them: `request_attempt_count` is the
//! number of upstream attempts (the router's `attemptCount`), `local_address` the local end of
//! the upstream connection that answered. The probe (mode `accounting`) copies both into the
//! response.

use crate::harness::{Backend, Http, Keel, filters_dir};

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
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        attempts.push(header("x-acct-upstream-request_attempt_count"));
        let local: std::net::SocketAddr = header("x-acct-upstream-local_address")
            .parse()
            .unwrap_or_else(|e| panic!("upstream.local_address: {e}"));
        assert!(local.ip().is_loopback(), "{local}");
        assert_ne!(local.port().to_string(), b_port, "the local end, not b's");
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
