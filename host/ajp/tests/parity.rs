//! Where the client now does what httpd's mod_proxy_ajp and mod_jk do (the findings of
//! `shared/reviews/ajp-fidelity.md`, issue 10), against the crate's own test server: CPING on
//! new connections and before every request, a hung member found by CPING before anything is
//! sent, a closed pooled connection replaced by a new one to the same member, a flush before
//! the headers ignored, an unreadable response head that does not blame the member, bodyless
//! responses that keep their connection, and the checks on GET_BODY_CHUNK.
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use keel_ajp::client::{AjpClient, ClientConfig, ClientError, Ping, RequestBody, Secret};
use keel_ajp::test_server::{Action, ServerConfig, TestServer};
use keel_ajp::{EncodeError, ForwardRequest};
use support::{collect, get_root, request};

const SECRET: &str = "test-secret";

fn config(ping: Ping) -> ClientConfig {
    let mut c = ClientConfig::new(Secret::Value(SECRET.into()));
    c.pool.ping = ping;
    // Long enough that only the ping mode decides.
    c.pool.cping_after_idle = Duration::from_secs(60);
    c.pool.cping_timeout = Duration::from_millis(300);
    c.response_timeout = Duration::from_secs(2);
    c
}

fn cpings(server: &TestServer) -> u64 {
    server.seen().cpings.load(Ordering::Relaxed)
}

async fn get_ok(c: &AjpClient) {
    let res = c.send(get_root()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    collect(res.into_body()).await.unwrap();
}

#[tokio::test]
async fn ping_modes_decide_when_cping_goes_out() {
    for (ping, want) in [(Ping::Idle, 0), (Ping::Connect, 1), (Ping::Always, 3)] {
        let server = TestServer::echo(Some(SECRET)).await.unwrap();
        let c = AjpClient::new(server.addr(), config(ping)).unwrap();
        for _ in 0..3 {
            get_ok(&c).await;
        }
        assert_eq!(cpings(&server), want, "{ping:?}: CPINGs for 3 requests");
        assert_eq!(server.connections(), 1, "{ping:?}: one connection");
    }
}

#[tokio::test]
async fn a_hung_member_gets_no_request_when_cping_times_out() {
    // The member accepts connections (its backlog) but no thread answers: no CPONG.
    let mut cfg = ServerConfig::new(Some(SECRET), |_| vec![Action::Hang]);
    cfg.ignore_cping = true;
    let server = TestServer::start(cfg).await.unwrap();
    let c = AjpClient::new(server.addr(), config(Ping::Connect)).unwrap();
    // A POST: it could not fail over once sent; here nothing is sent.
    let err = c
        .send(request(
            Method::POST,
            "/login",
            &[],
            RequestBody::Full(Bytes::from_static(b"a=1")),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::CpingTimeout(_)), "{err}");
    assert!(!err.was_sent(), "any method may go to another member");
    assert!(err.counts_against_member());
    assert_eq!(err.client_status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(server.requests().is_empty(), "the member never got it");
}

/// A server whose `n`-th request (from 0) on any connection gets `script(n)`.
async fn numbered(script: impl Fn(usize) -> Vec<Action> + Send + Sync + 'static) -> TestServer {
    let count = Arc::new(AtomicUsize::new(0));
    TestServer::start(ServerConfig::new(Some(SECRET), move |_| {
        script(count.fetch_add(1, Ordering::Relaxed))
    }))
    .await
    .unwrap()
}

fn ok() -> Vec<Action> {
    vec![
        Action::Headers(StatusCode::OK, vec![]),
        Action::Chunk(Bytes::from_static(b"ok")),
        Action::End { reuse: true },
    ]
}

#[tokio::test]
async fn an_unanswered_pooled_connection_is_replaced_for_a_replayable_request() {
    // The second request, on the pooled connection, meets an idle close racing it.
    let server = numbered(|n| if n == 1 { vec![Action::Close] } else { ok() }).await;
    let c = AjpClient::new(server.addr(), config(Ping::Idle)).unwrap();
    get_ok(&c).await;
    let mut req = get_root();
    req.retry_unanswered = true;
    let res = c.send(req).await.unwrap();
    assert_eq!(collect(res.into_body()).await.unwrap(), b"ok");
    assert_eq!(
        server.connections(),
        2,
        "a new connection to the same member"
    );
    assert_eq!(server.requests().len(), 3);

    // Without the caller's leave (a POST), the error goes back: it was sent.
    let server = numbered(|n| if n == 1 { vec![Action::Close] } else { ok() }).await;
    let c = AjpClient::new(server.addr(), config(Ping::Idle)).unwrap();
    get_ok(&c).await;
    let err = c
        .send(request(
            Method::POST,
            "/",
            &[],
            RequestBody::Full(Bytes::from_static(b"x")),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unanswered(_)), "{err}");
    assert!(err.was_sent() && !err.counts_against_member());
}

#[tokio::test]
async fn a_flush_before_the_headers_is_ignored() {
    let server = numbered(|_| {
        let mut script = vec![Action::Chunk(Bytes::new())];
        script.extend(ok());
        script
    })
    .await;
    let c = AjpClient::new(server.addr(), config(Ping::Idle)).unwrap();
    get_ok(&c).await;
    get_ok(&c).await;
    assert_eq!(server.connections(), 1, "the connection stays in step");
}

#[tokio::test]
async fn an_unreadable_response_head_is_502_and_does_not_blame_the_member() {
    // SEND_HEADERS, framed right, with one header whose string runs past the packet (what
    // Tomcat writes when a header value does not fit and is dropped: the count stays).
    let bad_head = Bytes::from_static(&[
        b'A', b'B', 0x00, 0x09, 0x04, 0x00, 0xC8, 0xFF, 0xFF, 0x00, 0x01, 0x00, 0x09,
    ]);
    let server = numbered(move |_| vec![Action::Raw(bad_head.clone())]).await;
    let c = AjpClient::new(server.addr(), config(Ping::Idle)).unwrap();
    let err = c.send(get_root()).await.unwrap_err();
    assert!(matches!(err, ClientError::BadHead(_)), "{err}");
    assert!(err.was_sent(), "the application answered");
    assert!(!err.counts_against_member(), "the member is not broken");
    assert_eq!(err.client_status(), StatusCode::BAD_GATEWAY);
    assert!(err.to_string().contains("packet size"), "{err}");
}

#[tokio::test]
async fn bodyless_responses_keep_their_connection() {
    // The END_RESPONSE of a HEAD, 204 or 304 comes after the head, in a packet of its own.
    let server = numbered(|n| {
        let status = [
            StatusCode::OK,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
        ][n % 3];
        vec![
            Action::Headers(status, vec![]),
            Action::Sleep(Duration::from_millis(30)),
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = AjpClient::new(server.addr(), config(Ping::Idle)).unwrap();
    for method in [Method::HEAD, Method::GET, Method::GET] {
        // The server drops a bodyless response's body without polling it.
        let res = c
            .send(request(method, "/", &[], RequestBody::Empty))
            .await
            .unwrap();
        drop(res);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.connections(), 1, "pooled after each");
    assert_eq!(c.idle_connections(), 1);
}

#[tokio::test]
async fn a_second_body_request_while_one_is_owed_is_a_violation() {
    // Two GET_BODY_CHUNKs back to back, the first not answered yet: out of step.
    let ask = Bytes::from_static(&[b'A', b'B', 0x00, 0x03, 0x06, 0x1F, 0xFA]);
    let server = numbered(move |_| vec![Action::Raw(ask.clone()), Action::Raw(ask.clone())]).await;
    let c = AjpClient::new(server.addr(), config(Ping::Idle)).unwrap();
    let (tx, body) = support::channel_body(None);
    let send = c.send(request(Method::POST, "/", &[], body));
    let err = send.await.unwrap_err();
    drop(tx);
    assert!(matches!(err, ClientError::Protocol(_)), "{err}");
    assert_eq!(c.idle_connections(), 0);
}

#[test]
fn the_secret_is_not_in_debug_output() {
    let mut f = ForwardRequest::new(Method::GET, "/");
    f.secret = Some("s3cr3t-value".into());
    let shown = format!("{f:?}");
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test]
async fn too_many_headers_are_refused_before_the_member() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let mut cfg = config(Ping::Idle);
    cfg.max_headers = 10;
    let c = AjpClient::new(server.addr(), cfg).unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    // 10 of the client's, plus Host and Content-Length: 12.
    let err = c
        .send(request(Method::GET, "/", &headers, RequestBody::Empty))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Unencodable(EncodeError::TooManyHeaders { count: 12, max: 10 })
        ),
        "{err}"
    );
    assert_eq!(
        err.client_status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(server.connections(), 0);
}
