//! keel in front of keel-ajp's own AJP test server: a request and its body through keel,
//! headers too large for the AJP packet answered 413 before the member is touched, and a
//! member that breaks the protocol answered 502 without reusing its connection, and a filter
//! reading the AJP connection's local end as `upstream.local_address`.
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

#[allow(dead_code)]
#[path = "proxy/harness.rs"]
mod harness;

use bytes::Bytes;
use harness::{Http, Keel, Scratch, config, filters_dir};
use http::{Method, StatusCode};
use keel_ajp::test_server::{Action, ServerConfig, TestServer};

const SECRET: &str = "keel-ajp-test";

fn keel_for(server: &TestServer, scratch: &Scratch) -> Keel {
    keel_with(server, scratch, "")
}

/// keel in front of `server` with `top_extra` at the top of its configuration.
fn keel_with(server: &TestServer, scratch: &Scratch, top_extra: &str) -> Keel {
    let secret = scratch.write("ajp-secret", SECRET);
    Keel::start(&config(
        &[("t1", format!("ajp://{}", server.addr()), "active")],
        &format!("  ajp:\n    secret_file: {}\n", secret.display()),
        top_extra,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn request_and_body_through_keel() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let scratch = Scratch::new();
    let keel = keel_for(&server, &scratch);
    let http = Http::new();
    let r = http
        .send(Method::POST, &keel.url("/a/b?x=%20"), &[], "hello over ajp")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "hello over ajp");
    let req = server
        .requests()
        .into_iter()
        .find(|r| r.method == Method::POST)
        .expect("the POST reached the member");
    assert_eq!(req.req_uri, "/a/b");
    assert_eq!(req.attribute(0x05), Some("x=%20"));
    assert_eq!(req.attribute(0x06), Some("t1"));
    assert_eq!(req.attribute(0x0C), Some(SECRET));
    assert_eq!(req.remote_addr, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_too_large_for_the_packet_is_431_or_414_before_the_member() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let scratch = Scratch::new();
    let keel = keel_for(&server, &scratch);
    let before = server.requests().len();
    let http = Http::new();
    // Header fields too large: 431 (was 413, which is about bodies).
    let big = "b".repeat(9000);
    let r = http
        .send(Method::GET, &keel.url("/"), &[("x-big", &big)], "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A URI that does not fit by itself (an 8 KB `;jsessionid=`): 414.
    let path = format!("/app;jsessionid={}", "s".repeat(8200));
    let r = http
        .send(Method::GET, &keel.url(&path), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(server.requests().len(), before, "the member never saw them");
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_violation_is_502() {
    let server = TestServer::start(ServerConfig::new(Some(SECRET), |_| {
        vec![Action::Raw(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"))]
    }))
    .await
    .unwrap();
    let scratch = Scratch::new();
    let keel = keel_for(&server, &scratch);
    let r = Http::new()
        .send(Method::POST, &keel.url("/"), &[], "x")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread")]
async fn explicitly_no_secret_works_with_a_connector_without_one() {
    let server = TestServer::echo(None).await.unwrap();
    let keel = Keel::start(&config(
        &[("t1", format!("ajp://{}", server.addr()), "active")],
        "  ajp:\n    secret_required: false\n",
        "",
    ));
    let r = Http::new()
        .send(Method::POST, &keel.url("/"), &[], "no secret")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "no secret");
    let req = server
        .requests()
        .into_iter()
        .find(|r| r.method == Method::POST)
        .unwrap();
    assert_eq!(req.attribute(0x0C), None, "no secret attribute");
}

/// The value of `name{member="t1"}` in a Prometheus text page.
fn sample(page: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{member=\"t1\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{page}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_counters_are_on_metrics() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let scratch = Scratch::new();
    let keel = keel_with(
        &server,
        &scratch,
        "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n",
    );
    let http = Http::new();
    for _ in 0..3 {
        let r = http
            .send(Method::POST, &keel.url("/"), &[], "x")
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    let bearer = format!("Bearer {}", harness::TOKEN);
    let metrics = format!("http://{}/metrics", keel.admin.unwrap());
    let page = http
        .get(&metrics, &[("authorization", bearer.as_str())])
        .await
        .body;
    assert!(
        page.contains("# TYPE keel_ajp_connects_total counter"),
        "{page}"
    );
    let connects = sample(&page, "keel_ajp_connects_total");
    let reused = sample(&page, "keel_ajp_reused_total");
    assert!(connects >= 1, "{page}");
    assert!(connects + reused >= 3, "three requests: {page}");
    assert_eq!(sample(&page, "keel_ajp_protocol_errors_total"), 0);
    assert_eq!(sample(&page, "keel_ajp_secret_rejections_total"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_closed_unanswered_is_retried_on_the_same_member() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let served_by = |route: &'static str| {
        Action::Headers(
            StatusCode::OK,
            vec![(
                http::HeaderName::from_static("x-served-by"),
                http::HeaderValue::from_static(route),
            )],
        )
    };
    // t1 answers its first request and keeps the connection; the next request on it finds the
    // connection closed before any answer (Tomcat's idle close racing the request); a new
    // connection is answered.
    let n = Arc::new(AtomicUsize::new(0));
    let t1 = TestServer::start(ServerConfig::new(Some(SECRET), move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 1 {
            vec![Action::Close]
        } else {
            vec![served_by("t1"), Action::End { reuse: true }]
        }
    }))
    .await
    .unwrap();
    let t2 = TestServer::start(ServerConfig::new(Some(SECRET), move |_| {
        vec![served_by("t2"), Action::End { reuse: true }]
    }))
    .await
    .unwrap();
    let scratch = Scratch::new();
    let secret = scratch.write("ajp-secret", SECRET);
    // No active checks: only the requests touch t1's pooled connection. One worker: pools are
    // per worker, and the client's second connection could land on the other one.
    let keel = Keel::start(&format!(
        "listeners:\n  - address: 127.0.0.1:0\nworkers: 1\nbalancer:\n  members:\n    - route: t1\n      url: ajp://{}\n    - route: t2\n      url: ajp://{}\n  health:\n    enabled: false\n  ajp:\n    secret_file: {}\nadmin:\n  address: 127.0.0.1:0\n  token_file: {{token_file}}\n",
        t1.addr(),
        t2.addr(),
        secret.display()
    ));
    let http = Http::new();
    let to_t1 = [("x-keel-route", "t1")];
    assert_eq!(http.get(&keel.url("/"), &to_t1).await.served_by(), "t1");
    let r = http.get(&keel.url("/"), &to_t1).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.served_by(),
        "t1",
        "a GET goes once more to the same member on a new connection (httpd, mod_jk): the \
         session stays where it is"
    );
    assert_eq!(t1.connections(), 2);

    let bearer = format!("Bearer {}", harness::TOKEN);
    let status = http
        .get(
            &format!("http://{}/status", keel.admin.unwrap()),
            &[("authorization", bearer.as_str())],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["members"][0]["route"], "t1");
    assert_eq!(v["members"][0]["in_error"], false, "not t1's fault: {v}");
    assert_eq!(v["members"][0]["errors"], 0, "{v}");
}

/// `upstream.local_address` (Envoy `source/extensions/filters/common/expr/context.cc`: the
/// upstream connection's local address) for an AJP member: the probe (mode `accounting`) copies
/// it into the response, and it is the peer address the member saw on its connection; and
/// `upstream.cx_pool_ready_duration`, the wait for that connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_reads_the_local_end_of_the_ajp_connection() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let scratch = Scratch::new();
    let filters = format!(
        "filters:\n  - name: probe\n    wasm: {}\n    config: accounting\n",
        filters_dir().join("test_probe.wasm").display()
    );
    let keel = keel_with(&server, &scratch, &filters);
    let r = Http::new().get(&keel.url("/"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let header = |name: &str| r.header(name);
    let local: std::net::SocketAddr = header("x-acct-upstream-local_address")
        .parse()
        .unwrap_or_else(|e| panic!("upstream.local_address: {e}"));
    let peers = server.seen().peers.lock().unwrap().clone();
    assert!(
        peers.contains(&local),
        "{local} among the member's peers {peers:?}"
    );
    // `upstream.cx_pool_ready_duration` (`UpstreamConnectionPoolReadyDuration`): the wait for
    // the connection (here a new one, connected and checked with CPING), in nanoseconds.
    let waited: u64 = header("x-acct-upstream-cx_pool_ready_duration")
        .parse()
        .unwrap_or_else(|e| panic!("upstream.cx_pool_ready_duration: {e}"));
    assert!(waited > 0 && waited < 5_000_000_000, "{waited} ns");
}
