//! A filter's unary gRPC callout (`proxy_grpc_call`, the test probe in mode `grpc auth`) and
//! gRPC stream (`proxy_grpc_stream`, mode `grpc_stream auth`) sent by `keel serve` over HTTP/2
//! to a real gRPC server (Python grpcio): answers, messages, metadata, error statuses and an
//! unreachable server reach the filter as Envoy delivers them, and the filter resumes the
//! request, which carries what it got (`x-grpc-answer`, `x-grpc-stream`) to the member; a call
//! the filter cancels in flight is reset at the server (mode `grpc_late_cancel`).

use std::time::Duration;

use crate::harness::{Backend, GrpcServer, Http, Keel, config, filters_dir};

/// keel with member `a`, the probe in mode `<mode> auth`, and callout upstream `auth` on
/// `port`.
fn keel_with_grpc(a: &Backend, mode: &str, port: u16) -> Keel {
    keel_with_probe(a, &format!("{mode} auth"), port)
}

/// keel with member `a`, the probe configured with `probe`, and callout upstream `auth` on
/// `port`.
fn keel_with_probe(a: &Backend, probe: &str, port: u16) -> Keel {
    let filters = format!(
        "filters:\n  - name: probe\n    wasm: {}\n    config: {probe}\n\
         callout_upstreams:\n  auth: http://127.0.0.1:{port}\n",
        filters_dir().join("test_probe.wasm").display()
    );
    Keel::start(&config(&[("a", a.url(), "active")], "", &filters))
}

/// What the member saw in header `name` for a request with `x-id: id`.
async fn seen(http: &Http, keel: &Keel, name: &str, id: &str) -> String {
    let r = http.get(&keel.url("/echo-headers"), &[("x-id", id)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let prefix = format!("{name}: ");
    r.body
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.body))
        .to_owned()
}

/// What the member saw in `x-grpc-answer` for a request with `x-id: id`.
async fn answer(http: &Http, keel: &Keel, id: &str) -> String {
    seen(http, keel, "x-grpc-answer", id).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_callout_reaches_a_real_grpc_server() {
    let a = Backend::start("a");
    let server = GrpcServer::start();
    let keel = keel_with_grpc(&a, "grpc", server.port);
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

/// A unary call the filter cancels (`proxy_grpc_cancel`) or closes (`proxy_grpc_close`) while
/// grpcio's `probe.Auth/Slow` holds it (the probe waits for `probe.Auth/Started`, which the
/// server answers once `Slow` has reached it): keel resets the call's HTTP/2 stream at once, as
/// Envoy's `AsyncRequestImpl::cancel` does (`source/extensions/common/wasm/context.cc`
/// `grpcCancel`, `grpcClose`: `request_->cancel()`), so the server sees it cancelled well
/// before its 2 s wait ends. keel used to let the call run to its end and drop the answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_grpc_call_is_reset_at_the_server() {
    let a = Backend::start("a");
    let server = GrpcServer::start();
    let http = Http::new();
    for how in ["cancel", "close"] {
        let keel = keel_with_probe(&a, &format!("grpc_late_cancel auth {how}"), server.port);
        assert_eq!(seen(&http, &keel, "x-grpc-late-cancel", how).await, "Ok");
        let line = server.line("slow ", Duration::from_secs(5));
        let waited: f64 = line
            .strip_prefix("slow cancelled after ")
            .and_then(|rest| rest.strip_suffix(" s"))
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("{how}: the server saw {line:?}"));
        assert!(waited < 1.0, "{how}: the server saw {line:?}");
    }
}

/// A gRPC stream to grpcio's bidirectional `probe.Echo/Chat`: the probe sends `one` and `two`
/// and closes its side; it gets the server's initial metadata (`x-initial`; with `:status`,
/// `content-type` and grpcio's `grpc-accept-encoding`: 4 entries), each answer, the trailing metadata (`x-trailer`) and the close
/// with OK, in Envoy's order (`source/common/grpc/async_client_impl.cc` `AsyncStreamImpl`,
/// `source/extensions/common/wasm/context.cc` `GrpcStreamClientHandler`). A server that ends
/// the stream with an error after one answer: that answer, then its status and message through
/// `on_grpc_close` and `proxy_get_status`. The server gone: UNAVAILABLE, as Envoy's router
/// answers a cluster it cannot reach.
#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_stream_reaches_a_real_grpc_server() {
    let a = Backend::start("a");
    let server = GrpcServer::start();
    let keel = keel_with_grpc(&a, "grpc_stream", server.port);
    let http = Http::new();
    let stream = |id: &'static str| seen(&http, &keel, "x-grpc-stream", id);
    assert_eq!(
        stream("hello").await,
        // (The member's echo drops the value's trailing space: the message is empty.)
        "i4:1,m:echo:one,m:echo:two,t:done,c:0 0"
    );
    let denied = stream("deny").await;
    assert!(
        denied.starts_with("i4:1,m:echo:one,t:-,c:7 7 denied mid-stream"),
        "{denied}"
    );
    drop(server);
    let gone = stream("hello").await;
    assert!(
        gone.starts_with("i0:-,t:-,c:14 14 upstream connect error"),
        "{gone}"
    );
}
