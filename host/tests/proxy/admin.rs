//! The admin listener: every request needs the bearer token; drain/disable/enable/weight take
//! effect on routing; /status and /metrics report.

use http::Method;

use std::time::Duration;

use crate::harness::{Backend, Http, Keel, TOKEN, config, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn admin_actions_require_the_token_and_take_effect() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        "",
        "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n",
    ));
    let admin = keel.admin.expect("admin listener");
    let url = |p: &str| format!("http://{admin}{p}");
    let http = Http::new();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let wrong = [("authorization", "Bearer wrong-token-0123456789")];

    for (method, path) in [
        (Method::GET, "/status"),
        (Method::GET, "/metrics"),
        (Method::POST, "/members/a/disable"),
    ] {
        let r = http
            .send(method.clone(), &url(path), &[], "")
            .await
            .expect("admin");
        assert_eq!(r.status, 401, "{method} {path} without a token");
        let r = http
            .send(method.clone(), &url(path), &wrong, "")
            .await
            .expect("admin");
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
    }
    // The unauthenticated disable above did nothing.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(http.get(&keel.url("/"), &[]).await.served_by().to_string());
    }
    assert_eq!(seen.len(), 2);

    let r = http
        .send(Method::POST, &url("/members/a/disable"), &auth, "")
        .await
        .expect("admin");
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..6 {
        assert_eq!(
            http.get(&keel.url("/"), &[("x-keel-route", "a")])
                .await
                .served_by(),
            "b"
        );
    }
    let r = http
        .send(Method::POST, &url("/members/a/drain"), &auth, "")
        .await
        .expect("admin");
    assert_eq!(r.status, 200);
    assert_eq!(
        http.get(&keel.url("/"), &[("x-keel-route", "a")])
            .await
            .served_by(),
        "a"
    );
    for _ in 0..4 {
        assert_eq!(
            http.get(&keel.url("/"), &[]).await.served_by(),
            "b",
            "drained: no new requests"
        );
    }
    let r = http
        .send(Method::POST, &url("/members/a/enable"), &auth, "")
        .await
        .expect("admin");
    assert_eq!(r.status, 200);
    let r = http
        .send(Method::POST, &url("/members/a/weight/3"), &auth, "")
        .await
        .expect("admin");
    assert_eq!(r.status, 200);
    let mut on_a = 0;
    for _ in 0..8 {
        if http.get(&keel.url("/"), &[]).await.served_by() == "a" {
            on_a += 1;
        }
    }
    assert_eq!(on_a, 6, "weight 3:1 over 8 requests");
    let r = http
        .send(Method::POST, &url("/members/a/weight/0"), &auth, "")
        .await
        .expect("admin");
    assert_eq!(r.status, 400);
    let r = http
        .send(Method::POST, &url("/members/zz/disable"), &auth, "")
        .await
        .expect("admin");
    assert_eq!(r.status, 404);

    let r = http.get(&url("/status"), &auth).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["members"][0]["route"], "a");
    assert_eq!(v["members"][0]["weight"], 3);
    assert_eq!(v["members"][0]["status"], "active");
    assert!(v["members"][1]["requests"].as_u64().expect("requests") > 0);
    assert!(v["members"][0]["last_check"]["ok"].is_boolean());

    let r = http.get(&url("/metrics"), &auth).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("keel_requests_total{code=\"200\",member=\"b\"}"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("keel_member_healthy{member=\"a\"} 1"),
        "{}",
        r.body
    );
}

/// Members `a` and `b` with `a`'s status as given, no active checks (only requests change the
/// health state) and a long retry interval, behind an admin listener.
fn reload_config(a: &Backend, b: &Backend, a_status: &str) -> String {
    format!(
        "listeners:\n  - address: 127.0.0.1:0\nbalancer:\n  members:\n    - route: a\n      url: {}\n      status: {a_status}\n    - route: b\n      url: {}\n  health:\n    enabled: false\n  retry:\n    interval: 60s\n  timeouts:\n    connect: 1s\n    response_header: 2s\n    total: 5s\nadmin:\n  address: 127.0.0.1:0\n  token_file: {{token_file}}\n",
        a.url(),
        b.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_health_counters_and_admin_changes() {
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let keel = Keel::start(&reload_config(&a, &b, "active"));
    let admin = keel.admin.expect("admin listener");
    let url = |p: &str| format!("http://{admin}{p}");
    let http = Http::new();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let status = || async {
        let r = http.get(&url("/status"), &auth).await;
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        v["members"].clone()
    };

    for path in ["/members/a/drain", "/members/b/weight/7"] {
        let r = http
            .send(Method::POST, &url(path), &auth, "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}");
    }
    b.kill();
    // A request bound to b finds it dead: b goes in error for the retry interval (60 s).
    http.get(&keel.url("/"), &[("x-keel-route", "b")]).await;
    let before = status().await;
    assert_eq!(before[1]["in_error"], true, "{before}");
    let errors = before[1]["errors"].as_u64().unwrap();
    assert!(errors >= 1, "{before}");

    keel.signal("HUP");
    keel.wait_line("keel: reloaded");
    let after = status().await;
    assert_eq!(
        after[0]["status"], "drain",
        "the admin's drain survives: {after}"
    );
    assert_eq!(
        after[1]["weight"], 7,
        "the admin's weight survives: {after}"
    );
    assert_eq!(after[1]["in_error"], true, "b is still in error: {after}");
    assert_eq!(after[1]["errors"].as_u64(), Some(errors), "{after}");

    // A status the file changes itself is the file's.
    keel.rewrite(&reload_config(&a, &b, "disabled"));
    keel.signal("HUP");
    keel.wait_line("keel: reloaded");
    let changed = status().await;
    assert_eq!(changed[0]["status"], "disabled", "{changed}");
    assert_eq!(changed[1]["in_error"], true, "{changed}");
}

/// `keel_client_connections` counts the client connections open now, over every worker: it is
/// what the memory trim after a burst of connections watches (`host/src/memory.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn open_client_connections_are_counted() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n",
    ));
    let http = Http::new();
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(
            tokio::net::TcpStream::connect(keel.addr)
                .await
                .expect("connect"),
        );
    }
    let name = "keel_client_connections";
    eventually("five open connections", Duration::from_secs(5), || async {
        (keel.metric(&http, name).await == 5.0).then_some(())
    })
    .await;
    drop(open);
    eventually("no open connection", Duration::from_secs(5), || async {
        (keel.metric(&http, name).await == 0.0).then_some(())
    })
    .await;
}
