//! Proxying done right at the edges: ambiguous framing 400, header limits 431, body limit
//! 413, upstream timeout 504, connect failure 502, no member 503.

use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, Http, Keel, config, read_some, two_oks};

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_framing() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  max_headers: 20\n  max_body_bytes: 1000\n",
    ));
    let r = raw(
        keel.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "CL + TE: {r}");
    assert!(!r.contains("x-served-by"), "never reached the member: {r}");
    let r = raw(
        keel.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "TE + CL: {r}");
    // Keep-alive traffic whose bodies merely look like such heads is untouched.
    let evil = "X: y\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let r = raw(
        keel.addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{evil}GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            evil.len()
        ),
    )
    .await;
    assert_eq!(
        r.matches("HTTP/1.1 200").count(),
        2,
        "two requests answered: {r}"
    );

    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw(keel.addr, &many).await;
    assert!(r.starts_with("HTTP/1.1 431"), "too many headers: {r}");

    let http = Http::new();
    let r = http
        .send(Method::POST, &keel.url("/"), &[], &"x".repeat(2000))
        .await
        .expect("response");
    assert_eq!(r.status, 413, "body over the limit (Content-Length)");
    let r = raw(
        keel.addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n",
            "y".repeat(2000)
        ),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 413"),
        "chunked body over the limit: {r}"
    );
    let r = http
        .send(Method::POST, &keel.url("/"), &[], "small")
        .await
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-body-len"], "5");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_unavailable_members() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "  timeouts:\n    connect: 200ms\n    response_header: 300ms\n    total: 5s\n  retry:\n    maxattempts: 1\n",
        "",
    )
    .replace("  timeouts:\n    connect: 1s\n    response_header: 2s\n    total: 5s\n", ""));
    let http = Http::new();
    let r = http.get(&keel.url("/hang"), &[]).await;
    assert_eq!(r.status, 504, "no response head in time");

    let mut dead = Backend::start("dead");
    let url = dead.url();
    dead.kill();
    let keel2 = Keel::start(&config(&[("dead", url, "active")], "", ""));
    let r = http.get(&keel2.url("/"), &[]).await;
    assert_eq!(r.status, 502, "connect refused");
    let keel3 = Keel::start(&config(&[("x", a.url(), "disabled")], "", ""));
    let r = http.get(&keel3.url("/"), &[]).await;
    assert_eq!(r.status, 503, "no member can take it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_goes_silent_mid_body_is_cut_off() {
    let a = Backend::start("a");
    let keel = Keel::start(
        &config(&[("a", a.url(), "active")], "", "")
            .replace("    total: 5s\n", "    total: 5s\n    body_idle: 300ms\n"),
    );
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let res = client
        .get(keel.url("/stall").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::BodyExt::collect(res.into_body()),
    )
    .await
    .expect("the body ends instead of hanging");
    assert!(
        r.is_err(),
        "the cut-off body is an error at the client, not a clean end"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// `limits.header_read_timeout` closes a connection whose request head does not come whole in
/// time (a slow-loris client), and one that waits longer than that for its next request on
/// keep-alive. A request whose head came in time is answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_that_does_not_come_in_time_closes_the_connection() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  header_read_timeout: 500ms\n",
    ));
    // Writes `bytes` on a new connection to `addr`; the connection.
    let send = |addr: std::net::SocketAddr, bytes: &'static [u8]| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        s
    };
    // How long until keel closed `s` (None: still open after `limit`).
    let closed_within = |mut s: tokio::net::TcpStream, limit: Duration| async move {
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(limit, s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    };
    let partial: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
    // Half a head, then nothing.
    let took = closed_within(send(keel.addr, partial).await, Duration::from_secs(5)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(400)),
        "a partial head is closed after the timeout, not before: {took:?}"
    );
    // A whole request is answered; then the idle keep-alive wait ends the same way.
    let mut s = send(keel.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    let took = closed_within(s, Duration::from_secs(5)).await;
    assert!(took.is_some(), "the keep-alive wait ends");

    // With an idle timeout shorter than the head's, the connection winds down gracefully
    // first: a head still on its way keeps its deadline.
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  header_read_timeout: 800ms\n  idle_timeout: 200ms\n",
    ));
    let took = closed_within(send(keel.addr, partial).await, Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "a partial head is closed while winding down"
    );
}

/// The head deadline runs between requests only: a member that answered at once (`/early`)
/// while the client still uploads for longer than `header_read_timeout` keeps the connection,
/// the whole body goes through, and the next request on it is answered. Before, the deadline
/// started when the response ended and cut the upload after 500 ms.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_outlasts_the_head_deadline_after_an_early_answer_goes_on() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  header_read_timeout: 500ms\n",
    ));
    let tcp = tokio::net::TcpStream::connect(keel.addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let chunks = 15;
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            chunks * 1000
        );
        wr.write_all(head.as_bytes()).await?;
        // 1.5 s of upload: three head deadlines.
        for _ in 0..chunks {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wr.write_all(&[b'k'; 1000]).await?;
        }
        wr.write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            .await?;
        Ok::<_, std::io::Error>(wr)
    });
    let seen = read_some(&mut rd, two_oks).await;
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(
        text.matches("HTTP/1.1 200").count(),
        2,
        "the early answer and the next request's: {text}"
    );
    writer
        .await
        .expect("writer")
        .expect("the whole upload was written");
}

/// `limits.send_timeout`: a client that takes none of a long response for that long is cut
/// off, and its connection goes (`keel_client_connections` back to 0), instead of holding the
/// connection and its member's for as long as it likes.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_takes_nothing_is_cut_off_after_the_send_timeout() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  send_timeout: 500ms\nadmin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n",
    ));
    let http = Http::new();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = socket.connect(keel.addr).await.expect("connect");
    let size = 32 << 20;
    tcp.write_all(format!("GET /big/{size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 1024];
    tcp.read_exact(&mut buf)
        .await
        .expect("the start of the answer");
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..20]);
    // Takes nothing more: keel cuts the connection off.
    crate::harness::eventually(
        "the stalled connection to be closed",
        Duration::from_secs(10),
        || async { (keel.metric(&http, "keel_client_connections").await == 0.0).then_some(()) },
    )
    .await;
    let mut got = buf.len();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection was neither closed nor read to its end"),
        }
    }
    assert!(
        got < size,
        "the client got all {got} bytes: it was not cut off"
    );
}

/// A member that answers early and then neither reads the rest of the request body nor closes
/// fails its connection after the response-header timeout (a write that waits that long), and
/// the client's upload ends instead of hanging for as long as the member stays silent.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_stops_reading_after_an_early_answer_does_not_hold_the_upload() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  max_body_bytes: 67108864\n",
    ));
    let tcp = tokio::net::TcpStream::connect(keel.addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let size = 64 << 20;
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /early-stall HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n");
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'k'; 1 << 20];
        for _ in 0..64 {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let answer = read_some(&mut rd, crate::harness::whole_answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The upload stalls with the member; keel gives up on the member after its 2 s
    // response-header timeout and the client's connection ends.
    let ended = tokio::time::timeout(Duration::from_secs(15), writer).await;
    let written = ended.expect("the upload ends within 15 s").expect("writer");
    assert!(
        written.is_err(),
        "the stalled upload was cut, not completed"
    );
}
