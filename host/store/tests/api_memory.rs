//! The HTTP API over the memory store (keel's embedded default), with a clock the test moves.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use keel_store::api::{CAS, ERROR, KEY};
use keel_store::clock::ManualClock;
use keel_store::{Store, StoreConfig};
use support::{bad_key_paths, call, create, header, load, rotate, save};

fn store() -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    (
        Store::memory_with_clock(StoreConfig::default(), clock.clone()),
        clock,
    )
}

#[tokio::test]
async fn create_load_save_delete() {
    let (s, _) = store();
    let (key, cas) = create(&s, b"counter=1", Some("tomcat1"), 60).await;
    assert!(key.ends_with("-local") && key.len() == 32 + 6, "{key}");

    let l = load(&s, &key, 60).await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(&l.body[..], b"counter=1");
    assert_eq!(l.key.as_deref(), Some(key.as_str()));
    assert_eq!(l.cas.as_deref(), Some(cas.as_str()));
    assert_eq!(l.route.as_deref(), Some("tomcat1"));

    let r = save(&s, &key, b"counter=2", Some(&cas)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let new_cas = header(&r, &CAS).expect("cas").to_owned();
    assert_ne!(new_cas, cas);
    assert_eq!(header(&r, &KEY), Some(key.as_str()));

    // The old token is stale now: nothing written.
    let r = save(&s, &key, b"counter=99", Some(&cas)).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(header(&r, &ERROR), Some("conflict"));
    let l = load(&s, &key, 60).await;
    assert_eq!(&l.body[..], b"counter=2");
    assert_eq!(l.route, None, "a save without a route unbinds the record");

    let r = call(&s, "DELETE", &format!("/v1/sessions/{key}"), b"", &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(load(&s, &key, 60).await.status, StatusCode::NOT_FOUND);
    let r = call(&s, "DELETE", &format!("/v1/sessions/{key}"), b"", &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "deleting what is gone is fine"
    );
    let r = save(&s, &key, b"x", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a save never resurrects");

    let m = s.metrics_snapshot();
    assert_eq!((m.creates, m.saves, m.cas_conflicts), (1, 1, 1));
    assert_eq!((m.loads, m.hits, m.misses), (3, 2, 1));
}

#[tokio::test]
async fn records_expire_after_the_idle_timeout_and_loads_touch() {
    let (s, clock) = store();
    let (key, _) = create(&s, b"x", None, 10).await;
    clock.advance(Duration::from_secs(9));
    assert_eq!(load(&s, &key, 10).await.status, StatusCode::OK, "touched");
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        load(&s, &key, 10).await.status,
        StatusCode::OK,
        "still alive"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(load(&s, &key, 10).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn limits_and_bad_input() {
    let (s, _) = store();
    let r = call(&s, "POST", "/v1/sessions", &[b'a'; 4097], &[]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header(&r, &ERROR), Some("too-large"));
    let (key, _) = create(&s, &[b'a'; 4096], None, 60).await;
    let r = save(&s, &key, &[b'a'; 4097], None).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for path in bad_key_paths("local") {
        let r = call(&s, "GET", &path, b"", &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(header(&r, &ERROR), Some("bad-request"), "{path}");
    }
    let r = call(
        &s,
        "GET",
        "/v1/sessions/0123456789ABCDEF0123456789ABCDEF-n1",
        b"",
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, &ERROR), Some("unknown-node"));

    for (name, value) in [
        ("keel-store-ttl", "0"),
        ("keel-store-ttl", "-1"),
        ("keel-store-ttl", "1e3"),
    ] {
        let r = call(
            &s,
            "GET",
            &format!("/v1/sessions/{key}"),
            b"",
            &[(name, value)],
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}: {value}");
    }
    let r = call(
        &s,
        "PUT",
        &format!("/v1/sessions/{key}"),
        b"",
        &[("keel-store-cas", "x")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(
        &s,
        "POST",
        "/v1/sessions",
        b"",
        &[("keel-store-route", "a b")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = rotate(&s, "../x", b"").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = call(&s, "PATCH", &format!("/v1/sessions/{key}"), b"", &[]).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = call(&s, "GET", "/v1/sessions", b"", &[]).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = call(&s, "GET", "/v2/sessions", b"", &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        s.metrics_snapshot().creates,
        1,
        "nothing but the one create was written"
    );
}

#[tokio::test]
async fn rotation_gives_a_new_key_and_deletes_the_old() {
    let (s, _) = store();
    let (old, _) = create(&s, b"state", None, 60).await;
    let r = rotate(&s, &old, b"state").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let new = header(&r, &KEY).expect("key").to_owned();
    assert_ne!(new, old);
    assert_eq!(&load(&s, &new, 60).await.body[..], b"state");
    assert_eq!(load(&s, &old, 60).await.status, StatusCode::NOT_FOUND);
}

#[test]
fn the_handler_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (s, _) = store();
    let fut = keel_store::api::handle(&s, support::request("GET", "/v1/sessions", b"", &[]));
    assert_send(&fut);
}
