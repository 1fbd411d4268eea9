//! The client against the crate's own test server: bodies both ways, the pool, CPING, the
//! secret, and the hostile-backend cases (each must end in an error, a closed connection and
//! a counted violation — never a hang or a reused connection).
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use keel_ajp::client::{
    AjpClient, BodySource, ClientConfig, ClientError, ConfigError, Ping, RequestBody, Secret,
};
use keel_ajp::test_server::{Action, ServerConfig, TestServer};
use support::{channel_body, client, collect, data, get_root, request, stream_of};

const SECRET: &str = "test-secret";

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `server` saw its peer (keel) close exactly one connection.
async fn wait_closed(server: &TestServer, what: &str) {
    wait_until(what, || {
        server
            .seen()
            .peer_closed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
}

async fn scripted(script: impl Fn() -> Vec<Action> + Send + Sync + 'static) -> TestServer {
    TestServer::start(ServerConfig::new(Some(SECRET), move |_| script()))
        .await
        .unwrap()
}

fn ok_headers() -> Action {
    Action::Headers(StatusCode::OK, vec![])
}

#[tokio::test]
async fn get_sends_only_keels_attributes() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some(SECRET));
    let req = request(
        Method::GET,
        "/p%20q?x=1&y=%2F",
        &[
            ("javax.servlet.include.request_uri", "/WEB-INF/web.xml"),
            ("user-agent", "t"),
        ],
        RequestBody::Empty,
    );
    let res = c.send(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(collect(res.into_body()).await.unwrap().is_empty());
    let r = &server.requests()[0];
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.req_uri, "/p%20q");
    assert_eq!(r.remote_addr, "127.0.0.7");
    assert_eq!(r.server_name, "keel.test");
    assert_eq!(r.server_port, 8443);
    assert!(!r.is_ssl);
    assert_eq!(
        r.attributes,
        vec![
            (0x05, "x=1&y=%2F".to_owned()),
            (0x06, "r1".to_owned()),
            (0x0A, "AJP_REMOTE_PORT=40001".to_owned()),
            (0x0A, "AJP_LOCAL_ADDR=127.0.0.1".to_owned()),
            (0x0C, SECRET.to_owned()),
        ],
        "exactly the attributes keel builds; a client header never becomes one (Ghostcat)"
    );
    assert_eq!(
        r.header("javax.servlet.include.request_uri").unwrap(),
        "/WEB-INF/web.xml"
    );
    // No body: Content-Length 0, as mod_jk sends (Tomcat takes a missing one for "unknown").
    assert_eq!(r.header("content-length").unwrap(), "0");
    assert!(r.header("transfer-encoding").is_none());
}

#[tokio::test]
async fn bodies_full_streamed_and_chunked() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some(SECRET));
    for (i, (n, streamed, known)) in [
        (10, false, true),
        (100_000, true, true),
        (70_001, true, false),
        (0, false, true),
    ]
    .into_iter()
    .enumerate()
    {
        let body = data(n);
        let rb = if streamed {
            stream_of(body.clone(), 5000, known.then_some(n as u64))
        } else {
            RequestBody::Full(body.clone())
        };
        let res = c.send(request(Method::POST, "/e", &[], rb)).await.unwrap();
        assert_eq!(collect(res.into_body()).await.unwrap(), body, "case {i}");
        let r = &server.requests()[i];
        let cl = r
            .header("content-length")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(cl, known.then(|| n.to_string()), "case {i}");
        // A body of unknown length is announced as chunked (Tomcat then parses form bodies).
        let te = r.header("transfer-encoding").map(|v| v.to_str().unwrap());
        assert_eq!(te, (!known).then_some("chunked"), "case {i}");
    }
    assert_eq!(server.connections(), 1, "one connection for all");
}

#[tokio::test]
async fn first_chunk_is_unsolicited_when_the_length_is_known() {
    // The server reads one body packet without sending GET_BODY_CHUNK first.
    let server = scripted(|| {
        vec![
            Action::ReadOneChunk,
            ok_headers(),
            Action::EchoBody,
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = client(server.addr(), Some(SECRET));
    let res = c
        .send(request(
            Method::POST,
            "/",
            &[],
            RequestBody::Full(Bytes::from_static(b"0123456789")),
        ))
        .await
        .unwrap();
    assert_eq!(collect(res.into_body()).await.unwrap(), b"0123456789");
}

#[tokio::test]
async fn get_body_chunk_after_send_headers() {
    let server = scripted(|| {
        vec![
            ok_headers(),
            Action::Chunk(Bytes::from_static(b"early ")),
            Action::ReadBody,
            Action::EchoBody,
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = client(server.addr(), Some(SECRET));
    let body = data(40_000);
    let res = c
        .send(request(
            Method::POST,
            "/",
            &[],
            stream_of(body.clone(), 1000, Some(40_000)),
        ))
        .await
        .unwrap();
    let got = collect(res.into_body()).await.unwrap();
    assert_eq!(&got[..6], b"early ");
    assert_eq!(&got[6..], &body[..]);
    // A body that was never asked for beyond the first chunk: Tomcat swallows that chunk.
    let server = scripted(|| vec![ok_headers(), Action::End { reuse: true }]).await;
    let c = client(server.addr(), Some(SECRET));
    for _ in 0..2 {
        let res = c
            .send(request(
                Method::POST,
                "/",
                &[],
                RequestBody::Full(data(20_000)),
            ))
            .await
            .unwrap();
        collect(res.into_body()).await.unwrap();
    }
    assert_eq!(server.connections(), 1, "still in step: reused");
}

#[tokio::test]
async fn client_body_that_comes_up_short_closes_the_backend_connection() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some(SECRET));
    let (tx, body) = channel_body(Some(100));
    tx.send(Ok(Bytes::from(vec![1u8; 50]))).await.unwrap();
    drop(tx);
    let err = c
        .send(request(Method::POST, "/", &[], body))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ClientBody(_)), "{err}");
    assert!(err.was_sent() && !err.counts_against_member() && err.is_client_error());
    assert_eq!(err.client_status(), StatusCode::BAD_REQUEST);
    assert_eq!(c.idle_connections(), 0);
    wait_closed(&server, "server sees the close").await;
    // A body longer than announced is refused the same way.
    let (tx, body) = channel_body(Some(10));
    tx.send(Ok(Bytes::from(vec![1u8; 11]))).await.unwrap();
    let err = c
        .send(request(Method::POST, "/", &[], body))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ClientBody(_)), "{err}");
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn client_body_error_after_headers_ends_the_response_body_with_an_error() {
    let server = scripted(|| {
        vec![
            ok_headers(),
            Action::ReadBody,
            Action::EchoBody,
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = client(server.addr(), Some(SECRET));
    let (tx, body) = channel_body(None);
    let res = c.send(request(Method::POST, "/", &[], body)).await.unwrap();
    tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
    tx.send(Err("client hung up".into())).await.unwrap();
    let err = collect(res.into_body()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::ClientBody(ref m) if m.contains("hung up")),
        "{err}"
    );
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn response_chunks_stream_as_they_come() {
    let server = scripted(|| {
        vec![
            ok_headers(),
            Action::Chunk(Bytes::from_static(b"one")),
            Action::Chunk(Bytes::new()),
            Action::Sleep(Duration::from_millis(1500)),
            Action::Chunk(Bytes::from_static(b"two")),
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = client(server.addr(), Some(SECRET));
    let start = Instant::now();
    let mut body = c
        .send(request(Method::GET, "/sse", &[], RequestBody::Empty))
        .await
        .unwrap()
        .into_body();
    assert_eq!(body.chunk().await.unwrap().unwrap(), "one");
    let first = start.elapsed();
    assert_eq!(
        body.chunk().await.unwrap().unwrap(),
        "two",
        "the flush is not passed on as data"
    );
    assert!(
        first < Duration::from_millis(1000),
        "first chunk before the second was sent ({first:?}, the second after 1.5 s)"
    );
    assert!(body.chunk().await.is_none());
}

#[tokio::test]
async fn pooled_connection_reuse_follows_end_response() {
    let server = scripted(|| vec![ok_headers(), Action::End { reuse: false }]).await;
    let c = client(server.addr(), Some(SECRET));
    for _ in 0..3 {
        let res = c.send(get_root()).await.unwrap();
        collect(res.into_body()).await.unwrap();
    }
    assert_eq!(
        server.connections(),
        3,
        "reuse=0: a new connection each time"
    );
    assert_eq!(c.stats().reused, 0);
}

#[tokio::test]
async fn cping_before_reusing_an_idle_connection_and_as_health_check() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let mut config = ClientConfig::new(Secret::Value(SECRET.into()));
    config.pool.cping_after_idle = Duration::ZERO;
    config.pool.ping = Ping::Idle;
    let c = AjpClient::new(server.addr(), config).unwrap();
    for _ in 0..3 {
        let res = c.send(get_root()).await.unwrap();
        collect(res.into_body()).await.unwrap();
    }
    assert_eq!(
        server
            .seen()
            .cpings
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "CPING before each reuse"
    );
    c.cping().await.unwrap();
    assert_eq!(server.connections(), 1);
    // No CPONG: the health check fails and the connection is not kept.
    let mut cfg = ServerConfig::new(Some(SECRET), |_| vec![]);
    cfg.answer_cping = false;
    let mute = TestServer::start(cfg).await.unwrap();
    let c = client(mute.addr(), Some(SECRET));
    let err = c.cping().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Cping(_)) && !err.was_sent() && err.counts_against_member(),
        "{err}"
    );
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn keel_closes_idle_connections_itself() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let mut config = ClientConfig::new(Secret::Value(SECRET.into()));
    config.pool.idle_timeout = Duration::from_millis(100);
    let c = AjpClient::new(server.addr(), config).unwrap();
    let res = c.send(get_root()).await.unwrap();
    collect(res.into_body()).await.unwrap();
    assert_eq!(c.idle_connections(), 1);
    wait_closed(&server, "the idle connection is closed").await;
    assert_eq!(c.idle_connections(), 0);
    assert_eq!(c.stats().idle_closed, 1);
}

#[tokio::test]
async fn a_pooled_connection_the_member_closed_is_not_used() {
    let server = scripted(|| vec![ok_headers(), Action::End { reuse: true }, Action::Close]).await;
    let c = client(server.addr(), Some(SECRET));
    let res = c.send(get_root()).await.unwrap();
    collect(res.into_body()).await.unwrap();
    wait_until("server closed", || {
        server.seen().requests.lock().unwrap().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let res = c.send(get_root()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.connections(), 2);
    assert_eq!(c.stats().stale_dropped, 1);
}

#[tokio::test]
async fn secret_mismatch_is_reported_and_the_secret_is_required() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some("wrong"));
    let res = c.send(get_root()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    collect(res.into_body()).await.unwrap();
    assert_eq!(c.stats().secret_rejections, 1);
    assert_eq!(c.idle_connections(), 0);
    let err = AjpClient::new(
        server.addr(),
        ClientConfig::new(Secret::Value(String::new())),
    )
    .unwrap_err();
    assert_eq!(err, ConfigError::EmptySecret);
    assert!(err.to_string().contains("secretRequired"), "{err}");
    // An application's own 403 (connection kept) is not a secret problem.
    let server = scripted(|| {
        vec![
            Action::Headers(StatusCode::FORBIDDEN, vec![]),
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = client(server.addr(), Some(SECRET));
    let res = c.send(get_root()).await.unwrap();
    collect(res.into_body()).await.unwrap();
    assert_eq!(c.stats().secret_rejections, 0);
}

#[tokio::test]
async fn unencodable_and_ambiguous_requests_never_touch_the_member() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some(SECRET));
    let big = "x".repeat(8200);
    let err = c
        .send(request(
            Method::GET,
            "/",
            &[("x-big", &big)],
            RequestBody::Empty,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Unencodable(_))
            && !err.was_sent()
            && !err.counts_against_member(),
        "{err}"
    );
    let err = c
        .send(request(
            Method::POST,
            "/",
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
            RequestBody::Full(Bytes::from_static(b"abc")),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Framing(_)), "{err}");
    assert_eq!(err.client_status(), StatusCode::BAD_REQUEST);
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_body_taken_by_an_earlier_attempt_is_reported_before_sending() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some(SECRET));
    let body = RequestBody::Stream {
        source: BodySource::deferred(|| None),
        length: Some(3),
    };
    let err = c
        .send(request(Method::POST, "/", &[], body))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::BodyUnavailable) && !err.was_sent(),
        "{err}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn connect_failure_is_retry_safe() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = client(port, Some(SECRET));
    let err = c
        .send(request(Method::POST, "/", &[], RequestBody::Empty))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)), "{err}");
    assert!(!err.was_sent() && err.counts_against_member());
    assert_eq!(err.client_status(), StatusCode::BAD_GATEWAY);
}

/// A hostile script: the request fails with a counted protocol error (or `want`), and the
/// connection is closed, not pooled.
async fn hostile(script: Vec<Action>, check: impl Fn(&ClientError) -> bool) {
    let s = script.clone();
    let server = scripted(move || s.clone()).await;
    let mut config = ClientConfig::new(Secret::Value(SECRET.into()));
    config.response_timeout = Duration::from_millis(300);
    let c = AjpClient::new(server.addr(), config).unwrap();
    let err = match c.send(get_root()).await {
        Err(e) => e,
        Ok(res) => collect(res.into_body())
            .await
            .expect_err("the body must fail"),
    };
    assert!(check(&err), "{script:?}: {err}");
    assert!(err.was_sent() && err.counts_against_member(), "{err}");
    assert_eq!(
        err.client_status() == StatusCode::BAD_GATEWAY,
        !matches!(err, ClientError::ResponseTimeout(_))
    );
    assert_eq!(c.idle_connections(), 0, "{script:?}: never pooled");
    wait_until("connection closed", || {
        server
            .seen()
            .peer_closed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
            || matches!(
                err,
                ClientError::Truncated | ClientError::ResponseTimeout(_)
            )
    })
    .await;
}

fn is_protocol(e: &ClientError) -> bool {
    matches!(e, ClientError::Protocol(_))
}

#[tokio::test]
async fn hostile_backends() {
    hostile(
        vec![Action::Raw(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"))],
        is_protocol,
    )
    .await;
    hostile(
        vec![Action::Raw(Bytes::from_static(&[
            b'A', b'B', 0xFF, 0xFF, 0x03,
        ]))],
        is_protocol,
    )
    .await;
    hostile(
        vec![Action::Raw(Bytes::from_static(&[
            b'A', b'B', 0x00, 0x01, 0x42,
        ]))],
        is_protocol,
    )
    .await;
    hostile(
        vec![ok_headers(), ok_headers(), Action::End { reuse: true }],
        is_protocol,
    )
    .await;
    hostile(
        vec![
            Action::Chunk(Bytes::from_static(b"x")),
            Action::End { reuse: true },
        ],
        is_protocol,
    )
    .await;
    hostile(vec![Action::End { reuse: true }], is_protocol).await;
    hostile(
        vec![
            ok_headers(),
            Action::Raw(Bytes::from_static(&[b'A', b'B', 0x00, 0x01, 0x09])),
        ],
        is_protocol,
    )
    .await;
    hostile(
        vec![
            ok_headers(),
            Action::Chunk(Bytes::from_static(b"half")),
            Action::Close,
        ],
        |e| matches!(e, ClientError::Truncated),
    )
    .await;
    hostile(vec![Action::Close], |e| matches!(e, ClientError::Truncated)).await;
    hostile(vec![Action::Hang], |e| {
        matches!(e, ClientError::ResponseTimeout(_))
    })
    .await;
    hostile(
        vec![
            ok_headers(),
            Action::Raw(Bytes::from_static(&[
                b'A', b'B', 0x00, 0x03, 0x06, 0x00, 0x00,
            ])),
        ],
        is_protocol,
    )
    .await;
}

#[tokio::test]
async fn dropping_the_response_body_closes_the_connection() {
    let server = scripted(|| {
        vec![
            ok_headers(),
            Action::Chunk(Bytes::from_static(b"a")),
            Action::Sleep(Duration::from_millis(100)),
            Action::Chunk(Bytes::from_static(b"b")),
            Action::End { reuse: true },
        ]
    })
    .await;
    let c = client(server.addr(), Some(SECRET));
    let res = c.send(get_root()).await.unwrap();
    drop(res);
    wait_closed(&server, "the connection is closed").await;
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn max_connections_waits_then_times_out() {
    let server = scripted(|| vec![Action::Hang]).await;
    let mut config = ClientConfig::new(Secret::Value(SECRET.into()));
    config.pool.max_connections = Some(1);
    config.pool.wait_timeout = Duration::from_millis(100);
    config.response_timeout = Duration::from_secs(5);
    let c = AjpClient::new(server.addr(), config).unwrap();
    let c2 = c.clone();
    let first = tokio::spawn(async move { c2.send(get_root()).await });
    wait_until("first request arrived", || server.requests().len() == 1).await;
    let err = c.send(get_root()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::PoolTimeout(_))
            && !err.was_sent()
            && !err.counts_against_member(),
        "{err}"
    );
    assert_eq!(err.client_status(), StatusCode::SERVICE_UNAVAILABLE);
    first.abort();
}

#[tokio::test]
async fn a_reused_connection_closed_before_any_answer_is_sent_but_not_counted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = std::sync::Arc::new(AtomicUsize::new(0));
    let server = TestServer::start(ServerConfig::new(Some(SECRET), move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            vec![ok_headers(), Action::End { reuse: true }]
        } else {
            vec![Action::Close]
        }
    }))
    .await
    .unwrap();
    let c = client(server.addr(), Some(SECRET));
    let res = c.send(get_root()).await.unwrap();
    collect(res.into_body()).await.unwrap();
    let err = c.send(get_root()).await.unwrap_err();
    assert!(matches!(err, ClientError::Unanswered(_)), "{err}");
    assert!(
        err.was_sent() && !err.counts_against_member(),
        "retry only if idempotent: {err}"
    );
    // On a new connection the same close is a truncated response: sent, counts.
    let err = c.send(get_root()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Truncated) && err.was_sent() && err.counts_against_member(),
        "{err}"
    );
}

#[tokio::test]
async fn tls_clients_get_tls_attributes() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let c = client(server.addr(), Some(SECRET));
    let mut req = get_root();
    req.peer.tls = Some(keel_ajp::TlsAttributes {
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        session: None,
        key_size: Some(128),
        cert: None,
        protocol: Some("TLSv1.3".into()),
    });
    collect(c.send(req).await.unwrap().into_body())
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert!(r.is_ssl);
    assert_eq!(r.attribute(0x08), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(r.attribute(0x0B), Some("128"), "ssl_key_size as u16");
    assert!(
        r.attributes
            .contains(&(0x0A, "AJP_SSL_PROTOCOL=TLSv1.3".to_owned()))
    );
}

#[tokio::test]
async fn a_slow_client_upload_is_not_a_member_timeout() {
    let server = TestServer::echo(Some(SECRET)).await.unwrap();
    let mut config = ClientConfig::new(Secret::Value(SECRET.into()));
    config.response_timeout = Duration::from_millis(150);
    let c = AjpClient::new(server.addr(), config).unwrap();
    let (tx, body) = channel_body(Some(50));
    let feeder = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(80)).await;
            tx.send(Ok(Bytes::from(vec![7u8; 10]))).await.unwrap();
        }
    });
    let res = c.send(request(Method::POST, "/", &[], body)).await.unwrap();
    assert_eq!(collect(res.into_body()).await.unwrap(), vec![7u8; 50]);
    feeder.await.unwrap();
}
