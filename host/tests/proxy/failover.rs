//! Failover: kill -9 under load, no replay of a sent POST, before-send failover for any
//! method, failonstatus, hot standby, drain and disable.

use std::time::Duration;

use http::Method;

use crate::harness::{Backend, Http, Keel, config, eventually, eventually_served_by, two_members};

const FAST_RETRY: &str = "  retry:\n    interval: 100ms\n    max_interval: 200ms\n";

#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_the_sticky_member_under_steady_gets() {
    let (mut a, _b, keel) = two_members(FAST_RETRY);
    let http = Http::new();
    // A steady stream of sticky GETs from 4 clients; a is killed, then comes back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let http = http.clone();
        let url = keel.url("/");
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut by_b) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match http
                    .send(Method::GET, &url, &[("x-keel-route", "a")], "")
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        ok += 1;
                        if r.served_by() == "b" {
                            by_b += 1;
                        }
                    }
                    Ok(r) => failed.push(format!("status {}", r.status)),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, by_b)
        }));
    }
    let probe = Http::new();
    eventually("traffic on a", Duration::from_secs(5), || async {
        (probe
            .get(&keel.url("/stats"), &[("x-keel-route", "a")])
            .await
            .body
            != "get=0 post=0")
            .then_some(())
    })
    .await;
    a.kill();
    eventually_served_by(
        &probe,
        &keel,
        "a",
        "b",
        "traffic moved to b",
        Duration::from_secs(5),
    )
    .await;
    a.restart();
    eventually_served_by(
        &probe,
        &keel,
        "a",
        "a",
        "a back in rotation",
        Duration::from_secs(10),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total_ok = 0;
    let mut total_b = 0;
    for c in clients {
        let (ok, failed, by_b) = c.await.expect("client task");
        assert!(failed.is_empty(), "failed GETs at the client: {failed:?}");
        total_ok += ok;
        total_b += by_b;
    }
    assert!(total_ok > 20, "steady stream: {total_ok} GETs");
    assert!(total_b > 0, "traffic moved to b while a was dead");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_whose_member_dies_after_receiving_it_is_not_replayed() {
    let (mut a, _b, keel) = two_members("");
    let http = Http::new();
    let r = http
        .send(
            Method::POST,
            &keel.url("/die"),
            &[("x-keel-route", "a")],
            "order=1",
        )
        .await
        .expect("response");
    assert_eq!(r.status, 502, "sent to a, a died: the client gets 502");
    a.wait_exited().await;
    let stats = http
        .get(&keel.url("/stats"), &[("x-keel-route", "b")])
        .await;
    assert_eq!(stats.served_by(), "b");
    assert_eq!(stats.body, "get=0 post=0", "the POST was not replayed on b");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_fails_over_when_nothing_was_sent() {
    let (mut a, _b, keel) = two_members("");
    a.kill();
    let http = Http::new();
    let big = "x".repeat(200_000);
    let r = http
        .send(Method::POST, &keel.url("/"), &[("x-keel-route", "a")], &big)
        .await
        .expect("response");
    assert_eq!(
        r.status, 200,
        "connect refused: any method goes to the next member"
    );
    assert_eq!(r.served_by(), "b");
    assert_eq!(
        r.headers["x-body-len"], "200000",
        "the streamed body arrived whole"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failonstatus_moves_idempotent_requests() {
    let (_a, _b, keel) = two_members("  retry:\n    failonstatus: [503]\n");
    let http = Http::new();
    let r = http
        .get(&keel.url("/fail?route=a"), &[("x-keel-route", "a")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.served_by(), "b");
    let r = http
        .send(
            Method::POST,
            &keel.url("/fail?route=b"),
            &[("x-keel-route", "b")],
            "x",
        )
        .await
        .expect("response");
    assert_eq!(r.status, 503, "a POST is not retried on status");
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_standby_only_when_the_actives_are_down() {
    let mut a1 = Backend::start("a1");
    let mut a2 = Backend::start("a2");
    let s = Backend::start("s");
    let keel = Keel::start(&config(
        &[
            ("a1", a1.url(), "active"),
            ("a2", a2.url(), "active"),
            ("s", s.url(), "hot_standby"),
        ],
        "",
        "",
    ));
    let http = Http::new();
    for _ in 0..10 {
        let by = http.get(&keel.url("/"), &[]).await.served_by().to_string();
        assert!(
            by == "a1" || by == "a2",
            "standby used while actives are up: {by}"
        );
    }
    a1.kill();
    for _ in 0..6 {
        assert_eq!(
            http.get(&keel.url("/"), &[]).await.served_by(),
            "a2",
            "one active left"
        );
    }
    a2.kill();
    for _ in 0..6 {
        let r = http.get(&keel.url("/"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.served_by(), "s", "all actives down: the standby");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_and_disable_are_honoured() {
    let d = Backend::start("d");
    let a = Backend::start("a");
    let x = Backend::start("x");
    let keel = Keel::start(&config(
        &[
            ("d", d.url(), "drain"),
            ("a", a.url(), "active"),
            ("x", x.url(), "disabled"),
        ],
        "",
        "",
    ));
    let http = Http::new();
    for _ in 0..6 {
        assert_eq!(
            http.get(&keel.url("/"), &[]).await.served_by(),
            "a",
            "new requests"
        );
    }
    assert_eq!(
        http.get(&keel.url("/"), &[("x-keel-route", "d")])
            .await
            .served_by(),
        "d",
        "drain: requests bound to it still go there"
    );
    assert_eq!(
        http.get(&keel.url("/"), &[("x-keel-route", "x")])
            .await
            .served_by(),
        "a",
        "disabled: not even bound requests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn active_health_checks_take_a_member_out_and_bring_it_back() {
    let (a, _b, keel) = two_members("");
    let http = Http::new();
    // a keeps accepting connections but fails its health check.
    http.get(&format!("{}/control/unhealthy", a.url()), &[])
        .await;
    eventually("a out of rotation", Duration::from_secs(5), || async {
        let mut all_b = true;
        for _ in 0..4 {
            all_b &= http.get(&keel.url("/"), &[]).await.served_by() == "b";
        }
        all_b.then_some(())
    })
    .await;
    assert_eq!(
        http.get(&keel.url("/"), &[("x-keel-route", "a")])
            .await
            .served_by(),
        "b",
        "a sticky request fails over from a member its checks took out"
    );
    http.get(&format!("{}/control/healthy", a.url()), &[]).await;
    eventually_served_by(
        &http,
        &keel,
        "a",
        "a",
        "a back in rotation",
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_request_with_a_held_body_is_replayed_after_send() {
    let (mut a, _b, keel) = two_members("");
    let http = Http::new();
    // a reads the PUT and dies without answering; the body is held whole, so b gets it.
    let r = http
        .send(
            Method::PUT,
            &keel.url("/die"),
            &[("x-keel-route", "a")],
            "document",
        )
        .await
        .expect("response");
    assert_eq!(r.status, 200, "replayed on b");
    assert_eq!(r.served_by(), "b");
    a.wait_exited().await;
}

/// A member that closes a pooled connection just as a request goes out on it (its keep-alive
/// timeout racing the request): an idempotent request goes once more on a new connection to
/// the same member — the session stays where it is — and a POST gets 502 without the member
/// being put in error. Before, either counted against the member and the GET failed over.
#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_closed_as_the_request_goes_out_keeps_the_member() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // `a`: answers every request, except that the first `/race` request on a connection that
    // served one before (once per `armed`) is read and the connection closed without answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_url = format!("http://{}", listener.local_addr().unwrap());
    let armed = Arc::new(AtomicBool::new(false));
    let arm = armed.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let armed = armed.clone();
            tokio::spawn(async move {
                let mut served = 0;
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    while got.len() < end + 4 + length {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got.drain(..end + 4 + length);
                    served += 1;
                    if head.contains(" /race ") && served > 1 && armed.swap(false, Ordering::SeqCst)
                    {
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\nx-served-by: a\r\nContent-Length: 2\r\n\r\nok";
                    if tcp.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let b = Backend::start("b");
    // No health checks: they would keep the pooled connection busy.
    let keel = Keel::start(&format!(
        "listeners:\n  - address: 127.0.0.1:0\nbalancer:\n  members:\n\
         \x20   - route: a\n      url: {a_url}\n    - route: b\n      url: {}\n\
         \x20 health:\n    enabled: false\n\
         \x20 timeouts:\n    connect: 1s\n    response_header: 2s\n    total: 5s\n",
        b.url()
    ));
    let http = Http::new();
    let to_a = [("x-keel-route", "a")];
    for (method, body, status, served_by) in [
        (Method::GET, "", 200, "a"),
        (Method::POST, "form=1", 502, ""),
    ] {
        // A first request opens the pooled connection; it then idles past the copy threshold.
        let r = http.get(&keel.url("/race"), &to_a).await;
        assert_eq!((r.status.as_u16(), r.served_by()), (200, "a"), "{r:?}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        arm.store(true, Ordering::SeqCst);
        let r = http
            .send(method.clone(), &keel.url("/race"), &to_a, body)
            .await
            .expect("response");
        assert_eq!(
            (r.status.as_u16(), r.served_by()),
            (status, served_by),
            "{method}: {r:?}"
        );
        // The member is not in error: the session's next request is still its.
        let r = http.get(&keel.url("/"), &to_a).await;
        assert_eq!(
            (r.status.as_u16(), r.served_by()),
            (200, "a"),
            "after {method}: {r:?}"
        );
    }
}
