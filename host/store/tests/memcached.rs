//! The store against real memcached 1.6.18 processes (two or three per test, each on its own
//! loopback port, killed with SIGKILL): backup fallback and relocation, dead nodes skipped and
//! recovered, 503 when all are down, CAS conflicts, real TTL expiry, absolute expirations, and
//! bad keys that never reach memcached. The store's clock is a manual one: the retry delay
//! passes when the test says so.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use keel_store::api::{CAS, ERROR, KEY};
use keel_store::clock::ManualClock;
use keel_store::node::TransportConfig;
use keel_store::{Nodes, Store, StoreConfig};
use support::memcached::Memcached;
use support::{bad_key_paths, call, create, header, load, save};

const RETRY: Duration = Duration::from_secs(1);

/// A store on `nodes` (`(id, memcached)`), with a manual clock.
fn store(nodes: &[(&str, &Memcached)], failover: &str) -> (Store, Arc<ManualClock>) {
    let list: Vec<String> = nodes.iter().map(|(id, m)| m.entry(id)).collect();
    let nodes = Nodes::parse(&list.join(","), failover).expect("nodes");
    let clock = Arc::new(ManualClock::new());
    let transport = TransportConfig {
        connect_timeout: Duration::from_millis(500),
        op_timeout: Duration::from_millis(500),
        retry_delay: RETRY,
        ..TransportConfig::default()
    };
    let store =
        Store::memcached_with_clock(&nodes, transport, StoreConfig::default(), clock.clone());
    (store, clock)
}

fn node_of(key: &str) -> &str {
    key.rsplit('-').next().expect("node")
}

fn id_of(key: &str) -> &str {
    key.split('-').next().expect("id")
}

#[tokio::test]
async fn records_are_written_to_the_primary_and_the_next_node() {
    let (m1, m2, m3) = (Memcached::start(), Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2), ("n3", &m3)], "");
    let mut seen = std::collections::HashSet::new();
    // 40 creates miss one of three nodes with probability 3 * (2/3)^40, about 3e-7.
    for _ in 0..40 {
        let (key, _) = create(&s, b"state", Some("tomcat1"), 60).await;
        let id = id_of(&key);
        let (primary, backup) = match node_of(&key) {
            "n1" => (&m1, &m2),
            "n2" => (&m2, &m3),
            "n3" => (&m3, &m1),
            other => panic!("unknown node {other}"),
        };
        assert!(primary.has(&format!("keel:{id}")), "primary of {key}");
        assert!(backup.has(&format!("keel:bak:{id}")), "backup of {key}");
        assert!(!primary.has(&format!("keel:bak:{id}")));
        seen.insert(node_of(&key).to_owned());
    }
    assert_eq!(
        seen.len(),
        3,
        "new sessions are spread over the primaries: {seen:?}"
    );
}

#[tokio::test]
async fn load_falls_back_to_the_backup_and_relocates_when_the_primary_is_killed() {
    let (mut m1, m2, m3) = (Memcached::start(), Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2), ("n3", &m3)], "");
    // A session on n1 (create until the random choice gives one).
    let key = loop {
        let (key, _) = create(&s, b"counter=7", Some("tomcat2"), 60).await;
        if node_of(&key) == "n1" {
            break key;
        }
    };
    assert_eq!(
        load(&s, &key, 60).await.status,
        StatusCode::OK,
        "pools warm"
    );
    m1.kill();

    let l = load(&s, &key, 60).await;
    assert_eq!(l.status, StatusCode::OK, "{l:?}");
    assert_eq!(&l.body[..], b"counter=7");
    assert_eq!(l.route.as_deref(), Some("tomcat2"));
    let moved = l.key.expect("key");
    assert_eq!(id_of(&moved), id_of(&key), "the id keeps its 32 hex digits");
    assert_ne!(node_of(&moved), "n1", "the key names a live node now");
    let m = s.metrics_snapshot();
    assert_eq!(m.relocations, 1);
    assert!(m.node_failures >= 1);

    // The moved record is a full record: primary and backup, and saves go to it.
    let (primary, backup) = if node_of(&moved) == "n2" {
        (&m2, &m3)
    } else {
        (&m3, &m2)
    };
    assert!(primary.has(&format!("keel:{}", id_of(&moved))));
    assert!(backup.has(&format!("keel:bak:{}", id_of(&moved))));
    let cas = l.cas.expect("cas");
    let r = save(&s, &moved, b"counter=8", Some(&cas)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, &KEY), Some(moved.as_str()));
    let l = load(&s, &moved, 60).await;
    assert_eq!((l.status, &l.body[..]), (StatusCode::OK, &b"counter=8"[..]));
    assert_eq!(l.key.as_deref(), Some(moved.as_str()), "no second move");
    assert_eq!(s.metrics_snapshot().relocations, 1);
}

#[tokio::test]
async fn a_frozen_node_times_out_and_its_sessions_move() {
    let (mut m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let key = loop {
        let (key, _) = create(&s, b"warm", None, 60).await;
        if node_of(&key) == "n1" {
            break key;
        }
    };
    m1.freeze();
    let started = std::time::Instant::now();
    let l = load(&s, &key, 60).await;
    assert_eq!((l.status, &l.body[..]), (StatusCode::OK, &b"warm"[..]));
    assert_eq!(l.key, Some(format!("{}-n2", id_of(&key))));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "one op timeout (500 ms), not more: {:?}",
        started.elapsed()
    );
    assert_eq!(s.metrics_snapshot().node_failures, 1);
    // Marked down: the next create does not wait for n1 again.
    let started = std::time::Instant::now();
    assert_eq!(node_of(&create(&s, b"x", None, 60).await.0), "n2");
    assert!(started.elapsed() < Duration::from_millis(400));
    m1.kill();
}

#[tokio::test]
async fn a_save_to_a_killed_primary_relocates() {
    let (m1, mut m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let key = loop {
        let (key, _) = create(&s, b"a", None, 60).await;
        if node_of(&key) == "n2" {
            break key;
        }
    };
    m2.kill();
    let r = save(&s, &key, b"b", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let moved = header(&r, &KEY).expect("key").to_owned();
    assert_eq!(moved, format!("{}-n1", id_of(&key)));
    assert_eq!(&load(&s, &moved, 60).await.body[..], b"b");
}

#[tokio::test]
async fn a_primary_that_lost_the_record_gets_it_back_from_the_backup() {
    let (mut m1, m2) = (Memcached::start(), Memcached::start());
    let key = {
        let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
        loop {
            let (key, _) = create(&s, b"kept", None, 60).await;
            if node_of(&key) == "n1" {
                break key;
            }
        }
    };
    // n1 restarts empty on its port (alive, but without the record).
    let port = m1.port;
    m1.kill();
    let m1 = Memcached::start_on(port);
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let l = load(&s, &key, 60).await;
    assert_eq!((l.status, &l.body[..]), (StatusCode::OK, &b"kept"[..]));
    assert_eq!(
        l.key.as_deref(),
        Some(key.as_str()),
        "same node: no relocation"
    );
    assert!(m1.has(&format!("keel:{}", id_of(&key))), "restored on n1");
    assert_eq!(s.metrics_snapshot().relocations, 0);
    // A save against the restored primary's token works.
    let r = save(&s, &key, b"more", l.cas.as_deref()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_restarted_node_is_used_again_at_once() {
    let (mut m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let key = loop {
        let (key, _) = create(&s, b"kept", None, 60).await;
        if node_of(&key) == "n1" {
            break key;
        }
    };
    assert_eq!(load(&s, &key, 60).await.status, StatusCode::OK);
    // Restarted between two requests: the store's pooled connections to n1 are dead.
    let port = m1.port;
    m1.kill();
    let m1 = Memcached::start_on(port);
    let l = load(&s, &key, 60).await;
    assert_eq!((l.status, &l.body[..]), (StatusCode::OK, &b"kept"[..]));
    assert_eq!(
        l.key.as_deref(),
        Some(key.as_str()),
        "restored in place, not moved"
    );
    assert!(m1.has(&format!("keel:{}", id_of(&key))));
    let m = s.metrics_snapshot();
    assert_eq!((m.node_failures, m.relocations), (0, 0), "{m:?}");
}

#[tokio::test]
async fn create_skips_a_dead_node() {
    let (mut m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    m1.kill();
    for _ in 0..8 {
        let (key, _) = create(&s, b"x", None, 60).await;
        assert_eq!(node_of(&key), "n2");
    }
    assert!(
        s.metrics_snapshot().node_failures <= 1,
        "n1 is tried at most once, then skipped until the retry delay passes"
    );
}

#[tokio::test]
async fn failover_nodes_take_new_sessions_only_when_no_primary_can() {
    let (mut m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "n2");
    for _ in 0..5 {
        assert_eq!(node_of(&create(&s, b"x", None, 60).await.0), "n1");
    }
    m1.kill();
    assert_eq!(node_of(&create(&s, b"x", None, 60).await.0), "n2");
}

#[tokio::test]
async fn all_nodes_down_is_503_then_recovery_after_the_retry_delay() {
    let (mut m1, mut m2) = (Memcached::start(), Memcached::start());
    let (s, clock) = store(&[("n1", &m1), ("n2", &m2)], "");
    let (key, _) = create(&s, b"x", None, 60).await;
    let (p1, p2) = (m1.port, m2.port);
    m1.kill();
    m2.kill();

    let l = load(&s, &key, 60).await;
    assert_eq!(l.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(l.error.as_deref(), Some("unavailable"));
    let r = call(&s, "POST", "/v1/sessions", b"x", &[]).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, &ERROR), Some("unavailable"));
    let r = save(&s, &key, b"y", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = call(&s, "DELETE", &format!("/v1/sessions/{key}"), b"", &[]).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.metrics_snapshot().unavailable, 4);

    // Back on their ports, but still marked down until the retry delay has passed.
    let (_m1, _m2) = (Memcached::start_on(p1), Memcached::start_on(p2));
    let r = call(&s, "POST", "/v1/sessions", b"x", &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "nodes not retried yet"
    );
    clock.advance(RETRY);
    let r = call(&s, "POST", "/v1/sessions", b"x", &[]).await;
    assert_eq!(r.status(), StatusCode::CREATED, "recovered");
    // The restarted nodes are empty: the old session is gone, not an error.
    assert_eq!(load(&s, &key, 60).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_stale_cas_token_is_409_and_writes_nothing() {
    let (m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let (key, _) = create(&s, b"v1", None, 60).await;
    let first = load(&s, &key, 60).await.cas.expect("cas");
    let second = load(&s, &key, 60).await.cas.expect("cas");
    assert_eq!(first, second, "a load does not change the token");

    let r = save(&s, &key, b"v2", Some(&first)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let newer = header(&r, &CAS).expect("cas").to_owned();
    assert_ne!(newer, first);
    let r = save(&s, &key, b"v3", Some(&second)).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(header(&r, &ERROR), Some("conflict"));
    assert_eq!(&load(&s, &key, 60).await.body[..], b"v2");
    assert_eq!(s.metrics_snapshot().cas_conflicts, 1);
    let r = save(&s, &key, b"v3", Some(&newer)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn records_expire_after_the_idle_timeout() {
    let (m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let (key, _) = create(&s, b"x", None, 2).await;
    assert_eq!(load(&s, &key, 2).await.status, StatusCode::OK);
    // memcached's clock ticks in whole seconds: 2 s of TTL is gone after 3.5 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(load(&s, &key, 2).await.status, StatusCode::NOT_FOUND);
    let r = save(&s, &key, b"y", None).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "an expired session is not written"
    );
}

#[tokio::test]
async fn ttls_over_30_days_are_sent_as_unix_times() {
    let (m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let forty_days = 40 * 24 * 3600;
    let (key, _) = create(&s, b"x", None, forty_days).await;
    let (primary, backup) = if node_of(&key) == "n1" {
        (&m1, &m2)
    } else {
        (&m2, &m1)
    };
    for (m, k) in [
        (primary, format!("keel:{}", id_of(&key))),
        (backup, format!("keel:bak:{}", id_of(&key))),
    ] {
        let left = m.ttl_left(&k).expect("item with a TTL");
        assert!((forty_days as i64 - left).abs() <= 5, "{k}: {left} s left");
    }
    assert_eq!(load(&s, &key, forty_days).await.status, StatusCode::OK);
}

#[tokio::test]
async fn delete_removes_both_copies() {
    let (m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let (key, _) = create(&s, b"x", None, 60).await;
    let r = call(&s, "DELETE", &format!("/v1/sessions/{key}"), b"", &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for m in [&m1, &m2] {
        assert!(!m.has(&format!("keel:{}", id_of(&key))));
        assert!(!m.has(&format!("keel:bak:{}", id_of(&key))));
    }
    assert_eq!(load(&s, &key, 60).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_keys_never_reach_memcached() {
    let (m1, m2) = (Memcached::start(), Memcached::start());
    let (s, _) = store(&[("n1", &m1), ("n2", &m2)], "");
    let (good, _) = create(&s, b"x", None, 60).await;
    assert_eq!(load(&s, &good, 60).await.status, StatusCode::OK);
    let before = [m1.item_commands(), m2.item_commands()];

    let mut paths = bad_key_paths("n1");
    paths.extend(bad_key_paths("n2"));
    for path in &paths {
        for method in ["GET", "PUT", "DELETE"] {
            let r = call(&s, method, path, b"y", &[]).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        }
    }
    for bad in ["../x", "0123456789ABCDEF0123456789ABCDEF-n1 x", "%00"] {
        let r = call(
            &s,
            "POST",
            "/v1/sessions",
            b"y",
            &[("keel-store-replaces", bad)],
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "replaces {bad}");
    }
    assert_eq!(
        [m1.item_commands(), m2.item_commands()],
        before,
        "stats moved"
    );

    // memcached's own record of the commands it read (-vv): the good key is there (the log
    // works), no bad one is.
    let log = m1.log_text() + &m2.log_text();
    assert!(
        log.contains(&format!("mg keel:{}", id_of(&good))),
        "log: {log}"
    );
    for needle in ["..", "%", " x", "ABCDEF0123456789ABCDEF-", &"A".repeat(64)] {
        assert!(!log.contains(needle), "{needle:?} reached memcached: {log}");
    }
}
