//! Interop against a real Tomcat 10 (Debian `tomcat10`): one Tomcat shared by the tests of
//! this binary (started on first use; see `support/tomcat.rs`), reached through keel's AJP
//! client, and for some cases directly over HTTP for comparison.
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

mod support;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use keel_ajp::client::{AjpClient, ClientError, RequestBody};
use support::tomcat::Tomcat;
use support::{client, collect, crc32, data, request, stream_of};

const SECRET: &str = "s3cret-for-tests";

fn tomcat() -> &'static Tomcat {
    static T: OnceLock<Tomcat> = OnceLock::new();
    T.get_or_init(|| Tomcat::start("tc1", SECRET))
}

/// A client of the shared Tomcat's AJP connector.
fn tomcat_client() -> AjpClient {
    client(tomcat().ajp, Some(SECRET))
}

/// Parses the echo servlet's `key=value` lines (later duplicates get a `#n` suffix).
fn lines(body: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in String::from_utf8_lossy(body).lines() {
        if let Some((k, v)) = line.split_once('=') {
            let mut key = k.to_owned();
            let mut n = 1;
            while map.contains_key(&key) {
                n += 1;
                key = format!("{k}#{n}");
            }
            map.insert(key, v.to_owned());
        }
    }
    map
}

async fn echo(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: RequestBody,
) -> (StatusCode, http::HeaderMap, HashMap<String, String>) {
    let c = tomcat_client();
    let res = c.send(request(method, uri, headers, body)).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = collect(body).await.unwrap();
    (parts.status, parts.headers, lines(&body))
}

#[tokio::test]
async fn get_with_encoded_query_and_client_facts() {
    let (status, headers, e) = echo(
        Method::GET,
        "/app/echo/x%20y?q=a%26b%3Dc%20d&z=%C3%A9",
        &[],
        RequestBody::Empty,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-method"], "GET");
    assert_eq!(e["method"], "GET");
    assert_eq!(e["uri"], "/app/echo/x%20y");
    assert_eq!(e["query"], "q=a%26b%3Dc%20d&z=%C3%A9");
    assert_eq!(e["param.q"], "a&b=c d");
    assert_eq!(
        e["remote"], "127.0.0.7:40001",
        "remote address and AJP_REMOTE_PORT"
    );
    assert_eq!(e["local"], "127.0.0.1", "AJP_LOCAL_ADDR");
    // Tomcat takes the port from the Host header (none: the scheme default).
    assert_eq!(e["server"], "keel.test:80");
    assert_eq!(e["secure"], "false");
    assert_eq!(e["header.host"], "keel.test");
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let c = tomcat_client();
    let res = c
        .send(request(Method::HEAD, "/app/echo", &[], RequestBody::Empty))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-method"], "HEAD");
    assert!(res.headers().contains_key("content-length"));
    assert!(collect(res.into_body()).await.unwrap().is_empty());
}

async fn post(method: Method, n: usize, streamed: bool, with_length: bool) {
    let body = data(n);
    let length = with_length.then_some(n as u64);
    let rb = if streamed {
        stream_of(body.clone(), 3000, length)
    } else {
        RequestBody::Full(body.clone())
    };
    let (status, _, e) = echo(
        method.clone(),
        "/app/echo",
        &[("content-type", "application/octet-stream")],
        rb,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["method"], method.as_str());
    assert_eq!(e["body-length"], n.to_string(), "{method} {n} bytes");
    assert_eq!(e["body-crc32"], crc32(&body).to_string());
    if with_length {
        assert_eq!(e["header.content-length"], n.to_string());
    } else {
        assert!(!e.contains_key("header.content-length"));
        assert_eq!(e["header.transfer-encoding"], "chunked");
    }
}

/// A urlencoded form post as an application reads it (`getParameter` first).
async fn form(body: RequestBody, version: http::Version) -> HashMap<String, String> {
    let mut req = request(
        Method::POST,
        "/app/form",
        &[("content-type", "application/x-www-form-urlencoded")],
        body,
    );
    req.parts.version = version;
    let res = tomcat_client().send(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    lines(&collect(res.into_body()).await.unwrap())
}

#[tokio::test]
async fn form_posts_reach_get_parameter_with_or_without_a_length() {
    let form_body = Bytes::from_static(b"a=1&b=2");
    // Length known: Content-Length, as the client sent it.
    let e = form(RequestBody::Full(form_body.clone()), http::Version::HTTP_11).await;
    assert_eq!((e["a"].as_str(), e["b"].as_str()), ("1", "2"), "{e:?}");
    assert_eq!(e["length"], "7");
    // Length unknown (a chunked upload, or a body a filter works on): Tomcat parses form
    // bodies of unknown length only when told `Transfer-Encoding: chunked` (or HTTP/2.0).
    let e = form(
        stream_of(form_body.clone(), 3, None),
        http::Version::HTTP_11,
    )
    .await;
    assert_eq!((e["a"].as_str(), e["b"].as_str()), ("1", "2"), "{e:?}");
    assert_eq!(e["length"], "-1");
    assert_eq!(e["protocol"], "HTTP/1.1");
    // An HTTP/2 client is announced as such, as httpd does.
    let e = form(stream_of(form_body, 3, None), http::Version::HTTP_2).await;
    assert_eq!((e["a"].as_str(), e["b"].as_str()), ("1", "2"), "{e:?}");
    assert_eq!(e["protocol"], "HTTP/2.0");
}

#[tokio::test]
async fn a_bodyless_request_has_content_length_0() {
    let e = form(RequestBody::Empty, http::Version::HTTP_11).await;
    assert_eq!(e["length"], "0", "{e:?}");
    assert_eq!(e["a"], "null");
}

#[tokio::test]
async fn post_small() {
    post(Method::POST, 11, false, true).await;
}

#[tokio::test]
async fn post_100_kb_streamed() {
    post(Method::POST, 100 * 1024, true, true).await;
}

#[tokio::test]
async fn post_10_mb_streamed() {
    post(Method::POST, 10 * 1024 * 1024, true, true).await;
}

#[tokio::test]
async fn chunked_upload_without_length() {
    post(Method::POST, 300 * 1024 + 7, true, false).await;
}

#[tokio::test]
async fn put_delete_patch() {
    post(Method::PUT, 5000, false, true).await;
    post(Method::PATCH, 777, true, true).await;
    let (status, _, e) = echo(Method::DELETE, "/app/echo/item/1", &[], RequestBody::Empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["method"], "DELETE");
    let (_, _, e) = echo(Method::OPTIONS, "/app/echo", &[], RequestBody::Empty).await;
    assert_eq!(e.get("method").map(String::as_str), Some("OPTIONS"));
}

#[tokio::test]
async fn many_and_long_headers_and_cookies() {
    let long = "v".repeat(4000);
    let names: Vec<String> = (0..40).map(|i| format!("x-h{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "value")).collect();
    headers.push(("x-long", &long));
    headers.push(("cookie", "a=1; b=two"));
    headers.push(("user-agent", "keel-test"));
    headers.push(("x-dup", "one"));
    headers.push(("x-dup", "two"));
    let (status, _, e) = echo(Method::GET, "/app/echo", &headers, RequestBody::Empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["header.x-long"], long);
    assert_eq!(e["header.x-h39"], "value");
    assert_eq!(e["header.user-agent"], "keel-test");
    assert_eq!(e["cookie.a"], "1");
    assert_eq!(e["cookie.b"], "two");
    assert_eq!(e["header.x-dup"], "one");
    assert_eq!(e["header.x-dup#2"], "two");
}

#[tokio::test]
async fn headers_larger_than_the_packet_are_refused_before_tomcat() {
    let c = tomcat_client();
    let big = "v".repeat(9000);
    let err = c
        .send(request(
            Method::GET,
            "/app/echo",
            &[("x-big", &big)],
            RequestBody::Empty,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unencodable(_)), "{err}");
    assert_eq!(
        err.client_status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(!err.was_sent() && !err.counts_against_member());
    assert_eq!(c.stats().connects, 0, "the backend was not touched");
}

#[tokio::test]
async fn not_modified() {
    let (status, headers, _) = echo(Method::GET, "/app/etag", &[], RequestBody::Empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], "\"v1\"");
    let (status, _, body) = echo(
        Method::GET,
        "/app/etag",
        &[("if-none-match", "\"v1\"")],
        RequestBody::Empty,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
}

#[tokio::test]
async fn five_megabytes_streamed() {
    let c = tomcat_client();
    let res = c
        .send(request(
            Method::GET,
            "/app/big?size=5242880",
            &[],
            RequestBody::Empty,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let (mut total, mut chunks, mut ok) = (0usize, 0, true);
    while let Some(c) = body.chunk().await {
        let c = c.unwrap();
        ok &= c
            .iter()
            .enumerate()
            .all(|(i, b)| usize::from(*b) == (total + i) % 8192 % 251);
        total += c.len();
        chunks += 1;
    }
    assert_eq!(total, 5 * 1024 * 1024);
    assert!(ok, "content matches the pattern");
    assert!(
        chunks > 600,
        "streamed in packet-sized chunks, got {chunks}"
    );
}

#[tokio::test]
async fn slow_response_arrives_piece_by_piece() {
    let c = tomcat_client();
    let start = Instant::now();
    let res = c
        .send(request(
            Method::GET,
            "/app/slow?n=5&ms=150",
            &[],
            RequestBody::Empty,
        ))
        .await
        .unwrap();
    let mut body = res.into_body();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(c) = body.chunk().await {
        text.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
        arrivals.push(start.elapsed());
    }
    assert_eq!(text, "piece 0\npiece 1\npiece 2\npiece 3\npiece 4\n");
    assert!(arrivals.len() >= 5, "one chunk per piece: {arrivals:?}");
    // Measured between pieces, not from the start: a servlet that is still loading delays the
    // first piece, while a buffered response would deliver all of them at once.
    assert!(
        arrivals[4] - arrivals[0] >= Duration::from_millis(500),
        "pieces spread out, the first long before the last: {arrivals:?}"
    );
}

#[tokio::test]
async fn session_cookie_carries_jvm_route() {
    let c = tomcat_client();
    let res = c
        .send(request(
            Method::GET,
            "/app/session",
            &[],
            RequestBody::Empty,
        ))
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let e = lines(&collect(res.into_body()).await.unwrap());
    let id = &e["id"];
    assert!(id.ends_with(".tc1"), "session id {id} ends in the jvmRoute");
    assert!(cookie.starts_with(&format!("JSESSIONID={id}")), "{cookie}");
    let res = c
        .send(request(
            Method::GET,
            "/app/session",
            &[("cookie", &format!("JSESSIONID={id}"))],
            RequestBody::Empty,
        ))
        .await
        .unwrap();
    let e = lines(&collect(res.into_body()).await.unwrap());
    assert_eq!(e["visits"], "2", "the session was found again");
}

#[tokio::test]
async fn body_read_after_send_headers() {
    let body = data(50_000);
    let c = tomcat_client();
    let res = c
        .send(request(
            Method::POST,
            "/app/late-read",
            &[],
            stream_of(body.clone(), 4096, Some(50_000)),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let e = lines(&collect(res.into_body()).await.unwrap());
    assert_eq!(e["body-length"], "50000");
    assert_eq!(e["body-crc32"], crc32(&body).to_string());
}

#[tokio::test]
async fn connections_are_reused_and_cping_works() {
    let c = tomcat_client();
    for _ in 0..5 {
        let res = c
            .send(request(Method::GET, "/app/echo", &[], RequestBody::Empty))
            .await
            .unwrap();
        collect(res.into_body()).await.unwrap();
    }
    c.cping().await.unwrap();
    let s = c.stats();
    assert_eq!(s.connects, 1, "{s:?}");
    assert_eq!(s.reused, 4, "{s:?}: requests 2 to 5");
    // The new connection (ping mode `connect`, the default) and the health check.
    assert_eq!(s.cpings, 2, "{s:?}");
}

#[tokio::test]
async fn wrong_secret_is_a_403_reported_as_configuration_error() {
    let t = tomcat();
    let c = client(t.ajp, Some("not-the-secret"));
    let res = c
        .send(request(Method::GET, "/app/echo", &[], RequestBody::Empty))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    collect(res.into_body()).await.unwrap();
    let s = c.stats();
    assert_eq!(s.secret_rejections, 1, "{s:?}");
    assert_eq!(c.idle_connections(), 0, "the connection was not reused");
    // No secret at all: the same.
    let c = client(t.ajp, None);
    let res = c
        .send(request(Method::GET, "/app/echo", &[], RequestBody::Empty))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    collect(res.into_body()).await.unwrap();
    assert_eq!(c.stats().secret_rejections, 1);
}

#[tokio::test]
async fn same_answer_as_direct_http() {
    // The echo over AJP and over Tomcat's own HTTP connector agree on what the servlet saw.
    let t = tomcat();
    let (_, _, via_ajp) = echo(
        Method::POST,
        "/app/echo?x=1",
        &[],
        RequestBody::Full(Bytes::from_static(b"hello")),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(t.http).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"POST /app/echo?x=1 HTTP/1.1\r\nHost: keel.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let direct = lines(body.as_bytes());
    for k in ["method", "uri", "query", "body-length", "body-crc32"] {
        assert_eq!(via_ajp[k], direct[k], "{k}");
    }
}
