//! Operations: SIGHUP reload (a bad file is refused and the old configuration keeps
//! serving), graceful shutdown on SIGTERM (in-flight requests finish).

use std::time::Duration;

use crate::harness::{Backend, Http, Keel, config, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_bad_file_keeps_the_old_config() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", ""));
    let http = Http::new();
    assert_eq!(http.get(&keel.url("/"), &[]).await.served_by(), "a");

    keel.rewrite(&config(
        &[("a", "htp://127.0.0.1:1".into(), "active")],
        "",
        "",
    ));
    keel.signal("HUP");
    keel.wait_line("keel: reload refused");
    for _ in 0..3 {
        assert_eq!(
            http.get(&keel.url("/"), &[]).await.served_by(),
            "a",
            "old config serves"
        );
    }

    keel.rewrite(&config(&[("b", b.url(), "active")], "", ""));
    keel.signal("HUP");
    keel.wait_line("keel: reloaded");
    for _ in 0..3 {
        assert_eq!(
            http.get(&keel.url("/"), &[]).await.served_by(),
            "b",
            "new config serves"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let a = Backend::start("a");
    let mut keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\nshutdown_grace: 10s\n",
    ));
    let http = Http::new();
    let url = keel.url("/slow/800");
    let slow = tokio::spawn({
        let http = http.clone();
        async move { http.get(&url, &[]).await }
    });
    let admin = format!("http://{}/status", keel.admin.expect("admin"));
    let bearer = format!("Bearer {}", crate::harness::TOKEN);
    eventually(
        "the slow request in flight",
        Duration::from_secs(5),
        || async {
            let s = http
                .get(&admin, &[("authorization", bearer.as_str())])
                .await;
            let v: serde_json::Value = serde_json::from_str(&s.body).ok()?;
            (v["members"][0]["in_flight"] == 1).then_some(())
        },
    )
    .await;
    keel.signal("TERM");
    let r = slow.await.expect("task");
    assert_eq!(r.status, 200, "the in-flight request finished");
    assert_eq!(r.body, "a");
    let status = keel.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "keel exits cleanly: {status}");
    assert!(
        tokio::net::TcpStream::connect(keel.addr).await.is_err(),
        "no longer accepting"
    );
}
