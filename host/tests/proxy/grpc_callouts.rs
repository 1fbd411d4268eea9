//! A filter's unary gRPC callout (`proxy_grpc_call`, the test probe in mode `grpc auth`) sent by
//! `keel serve` over HTTP/2 to a real gRPC server (Python grpcio): its answer, an error status
//! and an unreachable server reach the filter as Envoy delivers them, and the filter resumes the
//! request, which carries what it got (`x-grpc-answer`) to the member.

use crate::harness::{Backend, GrpcServer, Http, Keel, config, filters_dir};

/// keel with member `a`, the probe in mode `grpc auth`, and callout upstream `auth` on `port`.
fn keel_with_grpc(a: &Backend, port: u16) -> Keel {
    let filters = format!(
        "filters:\n  - name: probe\n    wasm: {}\n    config: grpc auth\n\
         callout_upstreams:\n  auth: http://127.0.0.1:{port}\n",
        filters_dir().join("test_probe.wasm").display()
    );
    Keel::start(&config(&[("a", a.url(), "active")], "", &filters))
}

/// What the member saw in `x-grpc-answer` for a request with `x-id: id`.
async fn answer(http: &Http, keel: &Keel, id: &str) -> String {
    let r = http.get(&keel.url("/echo-headers"), &[("x-id", id)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find_map(|line| line.strip_prefix("x-grpc-answer: "))
        .unwrap_or_else(|| panic!("no x-grpc-answer in {:?}", r.body))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_callout_reaches_a_real_grpc_server() {
    let a = Backend::start("a");
    let server = GrpcServer::start();
    let keel = keel_with_grpc(&a, server.port);
    let http = Http::new();
    // Status OK: the message (the probe sent "ping"), through on_grpc_receive.
    assert_eq!(answer(&http, &keel, "hello").await, "0 echo:ping");
    // The server's status and message, through on_grpc_close and proxy_get_status.
    assert_eq!(
        answer(&http, &keel, "deny").await,
        "7 7 denied by the test server"
    );
    // The server gone: UNAVAILABLE, as Envoy's router answers a cluster it cannot reach.
    drop(server);
    let gone = answer(&http, &keel, "hello").await;
    assert!(gone.starts_with("14 14 upstream connect error"), "{gone}");
}
