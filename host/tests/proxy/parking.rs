//! Idle HTTP/1 connections parked between requests (`host/src/server/http1.rs`): a keep-alive
//! connection that carries no request for a second gives hyper's state back
//! (`keel_client_connections_parked` counts it) and goes on serving on the same socket — its
//! next request, a head that began before it was parked, and an upgrade; over TLS too.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{Backend, Http, Keel, config, eventually, read_some, whole_answer};

const PARKED: &str = "keel_client_connections_parked";

async fn parked(keel: &Keel, http: &Http, what: &str) {
    eventually(what, Duration::from_secs(10), || async {
        (keel.metric(http, PARKED).await >= 1.0).then_some(())
    })
    .await;
}

async fn answer(tcp: &mut TcpStream) -> String {
    String::from_utf8_lossy(&read_some(tcp, whole_answer).await).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_connection_serves_its_next_request_a_head_begun_before_and_an_upgrade() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let keel = Keel::start(&config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        "",
        "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n",
    ));
    let http = Http::new();
    let mut tcp = TcpStream::connect(keel.addr).await.unwrap();
    let get_b = b"GET / HTTP/1.1\r\nHost: keel\r\nx-keel-route: b\r\n\r\n";
    tcp.write_all(get_b).await.unwrap();
    let first = answer(&mut tcp).await;
    assert!(
        first.starts_with("http/1.1 200") && first.contains("x-served-by: b"),
        "{first}"
    );

    parked(&keel, &http, "the idle connection to be parked").await;
    tcp.write_all(get_b).await.unwrap();
    let next = answer(&mut tcp).await;
    assert!(
        next.starts_with("http/1.1 200") && next.contains("x-served-by: b"),
        "{next}"
    );
    assert!(!next.contains("connection: close"), "{next}");

    // A head that begins before the connection is parked and ends after it.
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: keel\r\n")
        .await
        .unwrap();
    parked(&keel, &http, "the connection with half a head to be parked").await;
    tcp.write_all(b"x-keel-route: a\r\n\r\n").await.unwrap();
    let split = answer(&mut tcp).await;
    assert!(
        split.starts_with("http/1.1 200") && split.contains("x-served-by: a"),
        "{split}"
    );

    // An upgrade on the parked connection becomes a tunnel.
    parked(&keel, &http, "the connection to be parked again").await;
    tcp.write_all(
        b"GET /echo-upgrade HTTP/1.1\r\nHost: keel\r\nConnection: Upgrade\r\nUpgrade: keel-echo\r\nx-keel-route: b\r\n\r\n",
    )
    .await
    .unwrap();
    let upgraded = read_some(&mut tcp, |b| {
        let text = String::from_utf8_lossy(b);
        text.split_once("\r\n\r\n")
            .is_some_and(|(_, rest)| rest.contains('\n'))
    })
    .await;
    let upgraded = String::from_utf8_lossy(&upgraded).to_ascii_lowercase();
    assert!(upgraded.starts_with("http/1.1 101"), "{upgraded}");
    assert!(
        upgraded.ends_with("\r\n\r\nb\n"),
        "the member's greeting through the tunnel: {upgraded}"
    );
    tcp.write_all(b"ping").await.unwrap();
    assert_eq!(read_some(&mut tcp, |b| b.len() >= 4).await, b"ping");
}

/// The same over TLS (ALPN http/1.1): the TLS session stays, hyper's state goes, and the next
/// request on the connection is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_parked_tls_connection_serves_its_next_request() {
    let a = Backend::start("a");
    let (_dir, text, roots) = crate::protocols::tls_config(&a);
    let keel = Keel::start(&format!(
        "{text}admin:\n  address: 127.0.0.1:0\n  token_file: {{token_file}}\n"
    ));
    let http = Http::new();
    let tls = crate::protocols::tls_connect(keel.addr, roots, b"http/1.1").await;
    let (mut send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    for round in 0..2 {
        if round == 1 {
            parked(&keel, &http, "the idle TLS connection to be parked").await;
        }
        let request = http::Request::get("/")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = send.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        assert_eq!(response.headers()["x-served-by"], "a");
        response.into_body().collect().await.unwrap();
    }
}
