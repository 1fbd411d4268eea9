//! Stickiness by route: the routing header (as the sticky filter sets it) picks the member,
//! is removed before forwarding, and `sticky_force` gives 503 instead of failover.

use crate::harness::{Http, two_members};

#[tokio::test(flavor = "multi_thread")]
async fn routing_header_picks_the_member_and_is_not_forwarded() {
    let (_a, _b, keel) = two_members("");
    let http = Http::new();
    for _ in 0..10 {
        let r = http.get(&keel.url("/"), &[("x-keel-route", "b")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.served_by(), "b", "a sticky request goes to its member");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(http.get(&keel.url("/"), &[]).await.served_by().to_string());
    }
    assert_eq!(
        seen.len(),
        2,
        "without a route both members take requests: {seen:?}"
    );
    let r = http
        .get(
            &keel.url("/echo-headers"),
            &[
                ("x-keel-route", "a"),
                ("connection", "x-private"),
                ("x-private", "1"),
            ],
        )
        .await;
    assert_eq!(r.served_by(), "a");
    let body = r.body.to_ascii_lowercase();
    assert!(
        !body.contains("x-keel-route"),
        "routing header forwarded: {body}"
    );
    assert!(
        !body.contains("x-private"),
        "connection-named header forwarded: {body}"
    );
    assert!(body.contains("x-forwarded-for: 127.0.0.1"), "{body}");
    assert!(body.contains("x-forwarded-proto: http"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-host: {}", keel.addr)),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_balances_and_down_route_fails_over() {
    let (mut a, _b, keel) = two_members("");
    let http = Http::new();
    let r = http
        .get(&keel.url("/"), &[("x-keel-route", "nosuch")])
        .await;
    assert_eq!(r.status, 200);
    a.kill();
    for _ in 0..5 {
        let r = http.get(&keel.url("/"), &[("x-keel-route", "a")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.served_by(), "b", "the sticky member is down: fail over");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_force_gives_503() {
    let (mut a, _b, keel) = two_members("  sticky:\n    force: true\n");
    let http = Http::new();
    assert_eq!(
        http.get(&keel.url("/"), &[("x-keel-route", "a")])
            .await
            .served_by(),
        "a"
    );
    a.kill();
    for _ in 0..3 {
        let r = http.get(&keel.url("/"), &[("x-keel-route", "a")]).await;
        assert_eq!(r.status, 503, "sticky_force: no failover");
        assert_eq!(r.served_by(), "");
    }
    assert_eq!(
        http.get(&keel.url("/"), &[("x-keel-route", "b")])
            .await
            .served_by(),
        "b"
    );
    assert_eq!(http.get(&keel.url("/"), &[]).await.served_by(), "b");
}
