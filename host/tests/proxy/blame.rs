//! What puts a member in error and what does not: a client that hangs up or uploads slowly
//! never counts against it; a `failonstatus` status does, even on the last attempt (and the
//! member's own answer then goes to the client).

use std::time::Duration;

use crate::harness::{Backend, Http, Keel, config, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_mid_body_does_not_count_against_the_member() {
    use tokio::io::AsyncWriteExt;
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n",
    ));
    let status_url = format!("http://{}/status", keel.admin.expect("admin"));
    let bearer = format!("Bearer {}", crate::harness::TOKEN);
    let http = Http::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(keel.addr).await.unwrap();
        s.write_all(b"POST /slow/50 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
            .await
            .unwrap();
        // Let keel start the attempt, then hang up with most of the body unsent.
        let before = http
            .get(&status_url, &[("authorization", bearer.as_str())])
            .await;
        let n: serde_json::Value = serde_json::from_str(&before.body).unwrap();
        let n = n["members"][0]["requests"].as_u64().unwrap();
        eventually("the attempt started", Duration::from_secs(5), || async {
            let r = http
                .get(&status_url, &[("authorization", bearer.as_str())])
                .await;
            let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            (v["members"][0]["requests"].as_u64()? > n || v["members"][0]["in_flight"] == 1)
                .then_some(())
        })
        .await;
        drop(s);
    }
    let v = eventually("the attempts ended", Duration::from_secs(5), || async {
        let r = http
            .get(&status_url, &[("authorization", bearer.as_str())])
            .await;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        (v["members"][0]["in_flight"] == 0).then_some(v)
    })
    .await;
    assert_eq!(
        v["members"][0]["errors"], 0,
        "client errors never count: {v}"
    );
    assert_eq!(v["members"][0]["healthy"], true, "{v}");
    assert_eq!(http.get(&keel.url("/"), &[]).await.served_by(), "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_is_not_a_member_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("a");
    let keel = Keel::start(
        &config(&[("a", a.url(), "active")], "", "")
            .replace("response_header: 2s", "response_header: 300ms"),
    );
    // The client takes ~1.2 s to send its body; the member answers as soon as it has it.
    // The response-header timeout runs from the end of the request, not from its start.
    let mut s = tokio::net::TcpStream::connect(keel.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut pace = tokio::time::interval(Duration::from_millis(150));
    for _ in 0..8 {
        pace.tick().await;
        if s.write_all(b"01234").await.is_err() {
            break; // keel gave up on the request: the answer says why
        }
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-body-len: 40"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failonstatus_ejects_the_member_even_on_the_last_attempt() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        "  retry:\n    failonstatus: [503]\n    maxattempts: 1\n",
        "",
    ));
    let http = Http::new();
    let r = http
        .get(&keel.url("/fail?route=a"), &[("x-keel-route", "a")])
        .await;
    assert_eq!(r.status, 503, "one attempt only: a's answer");
    assert_eq!(r.body, "a failing", "the member's own answer, not keel's");
    for _ in 0..4 {
        assert_eq!(
            http.get(&keel.url("/"), &[]).await.served_by(),
            "b",
            "a answered a failonstatus status: it is in error"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failonstatus_with_no_other_member_gives_the_members_answer() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active"), ("b", b.url(), "disabled")],
        "  retry:\n    failonstatus: [503]\n",
        "",
    ));
    let r = Http::new().get(&keel.url("/fail?route=a"), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.served_by(), "a");
    assert_eq!(r.body, "a failing");
}
