//! Sessions that survive (issue 11): keel with the three filters (sticky, session,
//! route_suffix) and its session store on real memcached processes, in front of backends that
//! keep a counter in the session state (`/counter`: keel's HTTP test backend, and Tomcat 10's
//! test servlet over AJP). Each test starts its own memcached nodes (Debian's
//! `/usr/bin/memcached`), backends and keel(s) on loopback ports and kills them.
//!
//! The cookie is `JSESSIONID=<32 hex>-<node>.<route>`: the node that holds the record and the
//! member that served. `latency` (ignored, run by hand) measures what the session filter adds.
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

#[allow(dead_code)]
#[path = "proxy/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../store/tests/support/memcached.rs"]
mod memcached;
#[allow(dead_code)]
#[path = "../ajp/tests/support/tomcat.rs"]
mod tomcat;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use http::Method;

use harness::{Backend, Bridge, Http, Keel, Reply, Scratch, config, eventually};
use harness::{metric_value, session_filters_section};
use memcached::Memcached;

/// The cookie's parts: `<id>-<node>.<route>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    id: String,
    node: String,
    route: String,
}

impl Cookie {
    fn parse(value: &str) -> Cookie {
        let (key, route) = value.split_once('.').unwrap_or((value, ""));
        let (id, node) = key
            .split_once('-')
            .unwrap_or_else(|| panic!("not a keel id: {value:?}"));
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "not 32 hex digits: {value:?}"
        );
        Cookie {
            id: id.into(),
            node: node.into(),
            route: route.into(),
        }
    }

    fn value(&self) -> String {
        format!("{}-{}.{}", self.id, self.node, self.route)
    }
}

/// What `/counter` said.
#[derive(Debug)]
struct Visit {
    counter: u64,
    served_by: String,
    session_id: String,
    store: String,
    /// The session cookie the response set, if any.
    set: Option<Cookie>,
    reply: Reply,
}

/// The value of the last `Set-Cookie: JSESSIONID=` of a response (`None` when there is none
/// or it expires the cookie).
fn set_cookie(reply: &Reply) -> Option<Cookie> {
    let last = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("JSESSIONID="))
        .next_back()?;
    if last.contains("Max-Age=0") {
        return None;
    }
    let value = last.split(';').next().unwrap_or_default();
    Some(Cookie::parse(value))
}

fn field<'a>(body: &'a str, name: &str) -> &'a str {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {body:?}"))
}

fn visit_of(reply: Reply) -> Visit {
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.body.clone();
    for (name, _) in &reply.headers {
        assert!(
            !name.as_str().starts_with("keel-session"),
            "{name} reached the client: {reply:?}"
        );
    }
    Visit {
        counter: field(&body, "counter").parse().expect("counter"),
        served_by: field(&body, "served-by").into(),
        // Tomcat's servlet says `null` where keel's backend says nothing.
        session_id: field(&body, "session-id").replace("null", ""),
        store: field(&body, "store").into(),
        set: set_cookie(&reply),
        reply,
    }
}

/// A browser of one session: it sends the cookie it was given.
struct Browser {
    http: Http,
    cookie: Option<Cookie>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: Http::new(),
            cookie: None,
        }
    }

    /// GETs `url` with the cookie, and keeps the cookie the response sets.
    async fn get(&mut self, url: &str) -> Visit {
        let cookie = self
            .cookie
            .as_ref()
            .map(|c| format!("JSESSIONID={}", c.value()));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        let v = visit_of(self.http.get(url, &headers).await);
        if let Some(c) = &v.set {
            self.cookie = Some(c.clone());
        }
        v
    }

    fn cookie(&self) -> Cookie {
        self.cookie.clone().expect("a session cookie")
    }
}

/// `n1:127.0.0.1:P1,n2:…` for these nodes.
fn nodes(ms: &[&Memcached]) -> String {
    ms.iter()
        .enumerate()
        .map(|(i, m)| m.entry(&format!("n{}", i + 1)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `session_store:` section on these memcached nodes, with a short retry delay.
fn store_section(ms: &[&Memcached]) -> String {
    format!(
        "session_store:\n  type: memcached\n  nodes: {}\n  connect_timeout: 200ms\n  \
         op_timeout: 500ms\n  retry_delay: 300ms\n",
        nodes(ms)
    )
}

const ADMIN: &str = "admin:\n  address: 127.0.0.1:0\n  token_file: {token_file}\n";

/// A keel with the three filters (`session_config` for the session filter) and the store on
/// `ms`, in front of these HTTP backends, with an admin listener.
fn keel_on(backends: &[&Backend], ms: &[&Memcached], session_config: &str) -> Keel {
    Keel::start(&keel_config(backends, ms, session_config))
}

fn keel_config(backends: &[&Backend], ms: &[&Memcached], session_config: &str) -> String {
    let members: Vec<_> = backends
        .iter()
        .map(|b| (b.route.as_str(), b.url(), "active"))
        .collect();
    config(
        &members,
        "",
        &format!(
            "{}{}{ADMIN}",
            session_filters_section(session_config),
            store_section(ms)
        ),
    )
}

/// Which memcached of `ms` is node `id` (`n1` → the first).
fn node<'a>(ms: &'a mut [Memcached], id: &str) -> &'a mut Memcached {
    let i: usize = id
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("node id {id:?}"));
    &mut ms[i - 1]
}

fn three_nodes() -> Vec<Memcached> {
    vec![Memcached::start(), Memcached::start(), Memcached::start()]
}

fn refs(ms: &[Memcached]) -> Vec<&Memcached> {
    ms.iter().collect()
}

/// Starts a session on `url` and takes it to `n` requests; checks the counter on the way.
async fn session_of(browser: &mut Browser, url: &str, n: u64) -> Visit {
    let mut last = None;
    for i in 1..=n {
        let v = browser.get(url).await;
        assert_eq!(v.counter, i, "{v:?}");
        assert_eq!(v.store, "ok", "{v:?}");
        if i == 1 {
            let c = v.set.clone().expect("the new session's cookie");
            assert_eq!(c.route, v.served_by, "the cookie names the member: {v:?}");
            assert_eq!(v.session_id, "", "a new session has no id yet: {v:?}");
        } else {
            assert_eq!(v.session_id, browser.cookie().id, "{v:?}");
        }
        last = Some(v);
    }
    last.expect("n >= 1")
}

// 1. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_counter_continues_after_kill_9_of_its_backend() {
    let ms = [Memcached::start(), Memcached::start()];
    let mut a = Backend::start("a");
    let mut b = Backend::start("b");
    let keel = keel_on(&[&a, &b], &[&ms[0], &ms[1]], "");
    let mut browser = Browser::new();
    let url = keel.url("/counter");

    let v = session_of(&mut browser, &url, 3).await;
    let before = browser.cookie();
    let (dead, alive) = if v.served_by == "a" {
        (&mut a, "b")
    } else {
        (&mut b, "a")
    };
    assert_eq!(before.route, dead.route);
    dead.kill();

    let v = browser.get(&url).await;
    assert_eq!(v.counter, 4, "the state survived its backend: {v:?}");
    assert_eq!(v.served_by, alive);
    assert_eq!(v.session_id, before.id);
    let after = v.set.clone().expect("a cookie naming the new member");
    assert_eq!(after.route, alive, "{v:?}");
    assert_eq!((&after.id, &after.node), (&before.id, &before.node));
    // And it stays there.
    let v = browser.get(&url).await;
    assert_eq!((v.counter, v.served_by.as_str()), (5, alive), "{v:?}");
}

// 2. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_counter_continues_after_kill_9_of_the_memcached_node_holding_it() {
    let mut ms = three_nodes();
    let backend = Backend::start("a");
    let keel = keel_on(&[&backend], &refs(&ms), "");
    let mut browser = Browser::new();
    let url = keel.url("/counter");
    session_of(&mut browser, &url, 2).await;

    // Twice: the node that holds the session dies; the backup copy carries it on, and the
    // client gets the id with the node the record moved to.
    let mut count = 2;
    for _ in 0..2 {
        let before = browser.cookie();
        let holder = node(&mut ms, &before.node);
        assert!(
            holder.has(&format!("keel:{}", before.id)),
            "the record is there"
        );
        holder.kill();
        let v = browser.get(&url).await;
        count += 1;
        assert_eq!(v.counter, count, "nothing lost: {v:?}");
        let after = v.set.clone().expect("a cookie with the new node");
        assert_eq!(after.id, before.id, "the same id");
        assert_ne!(after.node, before.node, "{v:?}");
        assert!(
            node(&mut ms, &after.node).has(&format!("keel:{}", after.id)),
            "the record lives on {}",
            after.node
        );
        let v = browser.get(&url).await;
        count += 1;
        assert_eq!(v.counter, count, "{v:?}");
        assert_eq!(v.set, None, "no cookie while nothing moves: {v:?}");
    }
}

// 3. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_counter_continues_across_a_restart_of_keel_and_across_two_keels() {
    let ms = [Memcached::start(), Memcached::start()];
    let a = Backend::start("a");
    let b = Backend::start("b");
    let config = keel_config(&[&a, &b], &[&ms[0], &ms[1]], "");
    let mut first = Keel::start(&config);
    let mut browser = Browser::new();
    session_of(&mut browser, &first.url("/counter"), 3).await;

    // kill -9 keel, start a new one on the same memcached: the session goes on.
    first.kill9();
    drop(first);
    let second = Keel::start(&config);
    let v = browser.get(&second.url("/counter")).await;
    assert_eq!(v.counter, 4, "{v:?}");
    assert_eq!(v.session_id, browser.cookie().id);

    // Two keels, alternate requests of the same session.
    let third = Keel::start(&config);
    for n in 5..=10 {
        let keel = if n % 2 == 0 { &second } else { &third };
        let v = browser.get(&keel.url("/counter")).await;
        assert_eq!(v.counter, n, "{v:?}");
    }
}

// 4. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_same_through_keel_bridge() {
    let mut ms = vec![Memcached::start(), Memcached::start()];
    let bridge = Bridge::start(&[
        "--nodes",
        &nodes(&refs(&ms)),
        "--retry-delay-ms",
        "300",
        "--op-timeout-ms",
        "500",
    ]);
    let mut a = Backend::start("a");
    let mut b = Backend::start("b");
    // No session_store: the session filter calls the bridge, as in stock Envoy.
    let config = config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        "",
        &format!(
            "{}callout_upstreams:\n  bridge: {}\n",
            session_filters_section("{store_upstream: bridge}"),
            bridge.url()
        ),
    );
    assert!(!config.contains("session_store"));
    let k1 = Keel::start(&config);
    let k2 = Keel::start(&config);
    let mut browser = Browser::new();
    let v = session_of(&mut browser, &k1.url("/counter"), 2).await;

    // Two keels take turns.
    let mut n = 2;
    for keel in [&k2, &k1, &k2] {
        n += 1;
        let v = browser.get(&keel.url("/counter")).await;
        assert_eq!(v.counter, n, "{v:?}");
    }
    // kill -9 of the backend.
    (if v.served_by == "a" { &mut a } else { &mut b }).kill();
    n += 1;
    let v2 = browser.get(&k1.url("/counter")).await;
    assert_eq!(v2.counter, n, "{v2:?}");
    assert_ne!(v2.served_by, v.served_by);
    assert_eq!(browser.cookie().route, v2.served_by);
    // kill -9 of the memcached node that holds it.
    let before = browser.cookie();
    node(&mut ms, &before.node).kill();
    n += 1;
    let v = browser.get(&k2.url("/counter")).await;
    assert_eq!(v.counter, n, "{v:?}");
    let after = v.set.clone().expect("the moved record's cookie");
    assert_eq!(after.id, before.id);
    assert_ne!(after.node, before.node);
    n += 1;
    let v = browser.get(&k1.url("/counter")).await;
    assert_eq!(v.counter, n, "{v:?}");
}

// 5. ---------------------------------------------------------------------------------------

const AJP_SECRET: &str = "keel-sessions-ajp-secret";

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_over_ajp_the_counter_continues_after_kill_9_of_its_tomcat() {
    let ms = [Memcached::start(), Memcached::start()];
    let t = std::thread::spawn(|| tomcat::Tomcat::start("tc1", AJP_SECRET));
    let tc2 = tomcat::Tomcat::start("tc2", AJP_SECRET);
    let tc1 = t.join().unwrap();
    let scratch = Scratch::new();
    let secret = scratch.write("ajp-secret", &format!("{AJP_SECRET}\n"));
    let keel = Keel::start(&config(
        &[
            ("tc1", format!("ajp://{}", tc1.ajp), "active"),
            ("tc2", format!("ajp://{}", tc2.ajp), "active"),
        ],
        &format!("  ajp:\n    secret_file: {}\n", secret.display()),
        &format!(
            "{}{}",
            session_filters_section("{cookie: {path: /app}}"),
            store_section(&[&ms[0], &ms[1]])
        ),
    ));
    let http = Http::new();
    let url = keel.url("/app/counter");
    // Both Tomcats in rotation (a Tomcat still warming up may miss its first CPINGs).
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "both Tomcats serving: {seen:?}");
        let r = http.get(&url, &[]).await;
        if r.status == 200 {
            seen.insert(visit_of(r).served_by);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut browser = Browser::new();
    let v = session_of(&mut browser, &url, 3).await;
    let mut tcs = [tc1, tc2];
    let i = tcs.iter().position(|t| t.route == v.served_by).unwrap();
    let alive = tcs[1 - i].route.clone();
    tcs[i].kill9();

    let v = browser.get(&url).await;
    assert_eq!(v.counter, 4, "the state survived its Tomcat: {v:?}");
    assert_eq!(v.served_by, alive);
    assert_eq!(v.session_id, browser.cookie().id);
    assert_eq!(
        v.set.as_ref().map(|c| c.route.as_str()),
        Some(alive.as_str())
    );
    let v = browser.get(&url).await;
    assert_eq!((v.counter, v.served_by.as_str()), (5, alive.as_str()));
}

// 6. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_id_is_not_adopted_and_rotation_keeps_the_state() {
    let ms = [Memcached::start(), Memcached::start()];
    let backend = Backend::start("a");
    let keel = keel_on(&[&backend], &[&ms[0], &ms[1]], "");
    let url = keel.url("/counter");

    // A forged id of the right form: the backend sees no session, and the new one gets a
    // fresh id.
    let forged = "0123456789ABCDEF0123456789ABCDEF";
    let mut browser = Browser::new();
    browser.cookie = Some(Cookie::parse(&format!("{forged}-n1.x")));
    let v = browser.get(&url).await;
    assert_eq!((v.counter, v.session_id.as_str()), (1, ""), "{v:?}");
    let fresh = v.set.clone().expect("a new session");
    assert_ne!(fresh.id, forged, "the forged id is not adopted");
    assert!(!ms.iter().any(|m| m.has(&format!("keel:{forged}"))));
    assert_eq!(browser.get(&url).await.counter, 2);

    // Rotation: a new id, the same state; the old id is gone.
    let v = browser.get(&format!("{url}?rotate")).await;
    assert_eq!(v.counter, 3, "{v:?}");
    let rotated = v.set.clone().expect("the rotated id");
    assert_ne!(rotated.id, fresh.id);
    let v = browser.get(&url).await;
    assert_eq!((v.counter, v.session_id.as_str()), (4, rotated.id.as_str()));
    let mut old = Browser::new();
    old.cookie = Some(fresh);
    let v = old.get(&url).await;
    assert_eq!(
        v.counter, 1,
        "the old id no longer opens the session: {v:?}"
    );

    // Invalidation: the cookie expires, the record is gone.
    let v = browser.get(&format!("{url}?invalidate")).await;
    assert!(
        v.reply
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("Max-Age=0")),
        "{v:?}"
    );
    assert!(!ms.iter().any(|m| m.has(&format!("keel:{}", rotated.id))));
}

// 7. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn client_keel_session_headers_never_reach_the_backend_and_cannot_forge_state() {
    let ms = [Memcached::start(), Memcached::start()];
    let backend = Backend::start("a");
    let keel = keel_on(&[&backend], &[&ms[0], &ms[1]], "");
    let http = Http::new();
    let big = "A".repeat(16 * 1024);
    let forged: [(&str, &str); 7] = [
        ("keel-session", "n=1000"),
        ("Keel-Session-Id", "0123456789ABCDEF0123456789ABCDEF"),
        ("keel-session-store", "unavailable"),
        ("keel-session-invalidate", "1"),
        ("keel-session-rotate", "1"),
        ("KEEL-SESSION-X", "forged"),
        ("keel-session-big", big.as_str()),
    ];
    let received = |r: &Reply| {
        r.body
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("keel-session"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // Without a session: nothing of them arrives.
    let r = http.get(&keel.url("/echo-headers"), &forged).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("host:"), "the echo works: {}", r.body);
    assert_eq!(received(&r), Vec::<String>::new());
    // The counter cannot be forged.
    let v = visit_of(http.get(&keel.url("/counter"), &forged).await);
    assert_eq!(v.counter, 1, "{v:?}");
    assert_eq!(v.store, "ok");
    let cookie = v.set.clone().expect("a session");

    // With a session: the backend gets the stored state and id, once, never the forged ones.
    let cookie_header = format!("JSESSIONID={}", cookie.value());
    let mut with_cookie = forged.to_vec();
    with_cookie.push(("cookie", &cookie_header));
    let r = http.get(&keel.url("/echo-headers"), &with_cookie).await;
    let mut got = received(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            "keel-session-id: ".to_owned() + &cookie.id,
            "keel-session: n=1".to_owned(),
        ]
    );
    let v = visit_of(http.get(&keel.url("/counter"), &with_cookie).await);
    assert_eq!(v.counter, 2, "{v:?}");
    assert_eq!(v.session_id, cookie.id);
    assert!(v.set.is_none(), "neither rotated nor invalidated: {v:?}");
    assert!(ms.iter().any(|m| m.has(&format!("keel:{}", cookie.id))));
}

// 8. ---------------------------------------------------------------------------------------

/// Sends raw bytes as one HTTP/1.1 request and returns the status line (or what happened).
fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("(closed)")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ids_never_reach_memcached() {
    let ms = [Memcached::start(), Memcached::start()];
    let backend = Backend::start("a");
    let keel = keel_on(&[&backend], &[&ms[0], &ms[1]], "");
    let http = Http::new();

    // A good session: its id shows in memcached's log, so the watch works.
    let v = visit_of(http.get(&keel.url("/counter"), &[]).await);
    let good = v.set.clone().expect("a session");
    let good_header = format!("JSESSIONID={}", good.value());
    let v = visit_of(
        http.get(&keel.url("/counter"), &[("cookie", &good_header)])
            .await,
    );
    assert_eq!(v.counter, 2);

    // Every bad id carries DEADBEEF (or is made of Z/x), which no good id does.
    let hex = "DEADBEEF000000000000000000000000";
    let text4k = "Z".repeat(4096);
    let cookies = [
        format!("JSESSIONID={hex} -n1.a"),
        format!("JSESSIONID=\"{hex}-n1 mg keel:{hex}\""),
        format!("JSESSIONID={hex}-n1%0D%0Amg keel:{hex}"),
        format!("JSESSIONID={hex}-n1%00.a"),
        format!("JSESSIONID={hex}-n1\tmn"),
        format!("JSESSIONID={hex}x-n1.a"),
        format!("JSESSIONID={hex}-n9.a"),
        format!("JSESSIONID={}-n1.a", hex.to_lowercase()),
        format!("JSESSIONID={text4k}"),
        format!("JSESSIONID={hex}-{text4k}"),
    ];
    for c in &cookies {
        let r = http
            .send(Method::GET, &keel.url("/counter"), &[("cookie", c)], "")
            .await;
        if let Ok(r) = r {
            assert!(r.status == 200 || r.status == 400, "{c}: {r:?}");
        }
    }
    let paths = [
        format!("/counter;jsessionid={hex}%20-n1.a"),
        format!("/counter;jsessionid={hex}-n1%0D%0Amg%20keel:{hex}"),
        format!("/counter;jsessionid={hex}-n1%00"),
        format!("/counter;jsessionid={hex}-n1%2500.a"),
        format!("/counter;jsessionid={text4k}"),
    ];
    for p in &paths {
        let r = http.get(&keel.url(p), &[]).await;
        assert_eq!(r.status, 200, "{p}: {r:?}");
    }
    // Raw bytes an HTTP client would refuse to send.
    for bad in [
        format!("Cookie: JSESSIONID={hex}-n1\rmg keel:{hex}\r\n"),
        format!("Cookie: JSESSIONID={hex}-n1\nmg keel:{hex}\r\n"),
        format!("Cookie: JSESSIONID={hex}-n1\0.a\r\n"),
        format!("Cookie: JSESSIONID={hex}-n1\x7f.a\r\n"),
        format!("Cookie: JSESSIONID={hex}-n1\u{e9}.a\r\n"),
    ] {
        let req = format!("GET /counter HTTP/1.1\r\nHost: keel\r\n{bad}Connection: close\r\n\r\n");
        let status = raw_request(keel.addr, req.as_bytes());
        assert!(
            status.contains(" 200 ") || status.contains(" 400 ") || status == "(closed)",
            "{bad:?}: {status}"
        );
        let req = format!(
            "GET /counter;jsessionid={hex}-n1\0mn HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n"
        );
        raw_request(keel.addr, req.as_bytes());
    }
    // The server still serves the good session.
    let v = visit_of(
        http.get(&keel.url("/counter"), &[("cookie", &good_header)])
            .await,
    );
    assert_eq!(v.counter, 3);

    let logs: String = ms.iter().map(Memcached::log_text).collect();
    assert!(
        logs.contains(&format!("keel:{}", good.id)),
        "memcached's -vv log shows the good id (else the watch sees nothing): {logs}"
    );
    for bad in ["DEADBEEF", "deadbeef", "ZZZZZZZZ"] {
        assert!(
            !logs.contains(bad),
            "{bad:?} reached memcached: {}",
            logs.lines()
                .filter(|l| l.contains(bad))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// 9. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn idle_expiry_ignored_paths_and_a_cas_conflict() {
    let ms = [Memcached::start(), Memcached::start()];
    let backend = Backend::start("a");
    let keel = keel_on(&[&backend], &[&ms[0], &ms[1]], "{idle_timeout_seconds: 2}");
    let http = Http::new();
    let url = keel.url("/counter");

    // Each access touches the idle timer: requests 0.5 s apart keep the session for 3 s
    // (memcached's clock ticks in whole seconds: a 2 s TTL may end 1 s after a touch).
    let mut browser = Browser::new();
    session_of(&mut browser, &url, 1).await;
    for n in 2..=7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(browser.get(&url).await.counter, n, "touched on each access");
    }
    // Idle for 3 s: gone; the next request starts a new session.
    let old = browser.cookie();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let v = browser.get(&url).await;
    assert_eq!(
        (v.counter, v.session_id.as_str()),
        (1, ""),
        "expired: {v:?}"
    );
    let new = v.set.clone().expect("a new session");
    assert_ne!(new.id, old.id);

    // An ignored path neither loads nor stores.
    assert_eq!(browser.get(&url).await.counter, 2);
    let loads = keel.metric(&http, "keel_store_loads_total").await;
    let saves = keel.metric(&http, "keel_store_saves_total").await;
    assert!(loads >= 1.0, "the metric is there: {loads}");
    for path in ["/counter.css", "/counter/x.js", "/counter/logo.png"] {
        let v = browser.get(&keel.url(path)).await;
        assert_eq!(
            (v.counter, v.session_id.as_str()),
            (1, ""),
            "{path}: no state sent"
        );
        assert!(v.set.is_none(), "{path}: nothing stored: {v:?}");
    }
    let m = keel.metrics(&http).await;
    assert_eq!(metric_value(&m, "keel_store_loads_total"), loads, "no load");
    assert_eq!(metric_value(&m, "keel_store_saves_total"), saves, "no save");
    assert_eq!(metric_value(&m, "keel_wasmcustom_session_ignored"), 3.0);
    assert_eq!(browser.get(&url).await.counter, 3, "the state as it was");

    // Two requests of the session at once, both changing the state: the later save conflicts.
    let conflicts = keel.metric(&http, "keel_store_cas_conflicts_total").await;
    let slow = keel.url("/counter/slow");
    let cookie = format!("JSESSIONID={}", browser.cookie().value());
    let headers = [("cookie", cookie.as_str())];
    let (r1, r2) = tokio::join!(http.get(&slow, &headers), http.get(&slow, &headers));
    let (v1, v2) = (visit_of(r1), visit_of(r2));
    assert_eq!((v1.counter, v2.counter), (4, 4), "both loaded n=3");
    let m = keel.metrics(&http).await;
    assert_eq!(
        metric_value(&m, "keel_store_cas_conflicts_total"),
        conflicts + 1.0,
        "the conflict is counted by the store"
    );
    assert_eq!(
        metric_value(&m, "keel_wasmcustom_session_cas_conflicts"),
        1.0
    );
    assert_eq!(browser.get(&url).await.counter, 5, "the first write won");
}

// 10. --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn all_nodes_down_fails_open_and_one_node_back_recovers() {
    let mut ms = [Memcached::start(), Memcached::start()];
    let backend = Backend::start("a");
    let keel = keel_on(&[&backend], &[&ms[0], &ms[1]], "");
    let http = Http::new();
    let url = keel.url("/counter");
    let mut browser = Browser::new();
    session_of(&mut browser, &url, 2).await;

    for m in &mut ms {
        m.kill();
    }
    // A session's request is served without state, and the backend is told why.
    let v = browser.get(&url).await;
    assert_eq!((v.counter, v.store.as_str()), (1, "unavailable"), "{v:?}");
    let v = browser.get(&url).await;
    assert_eq!((v.counter, v.store.as_str()), (1, "unavailable"), "{v:?}");
    // A request without a session is served; its state cannot be stored.
    let v = visit_of(http.get(&url, &[]).await);
    assert_eq!(v.counter, 1, "{v:?}");
    assert!(v.set.is_none(), "no session without a store: {v:?}");
    let m = keel.metrics(&http).await;
    assert!(metric_value(&m, "keel_wasmcustom_session_store_unavailable") >= 2.0);
    assert!(metric_value(&m, "keel_store_unavailable_total") >= 2.0);

    // One node back (empty): after the retry delay, sessions work again.
    ms[1].restart();
    let mut fresh = Browser::new();
    eventually("a new session stored", Duration::from_secs(5), || {
        let http = fresh.http.clone();
        let url = url.clone();
        async move { set_cookie(&http.get(&url, &[]).await) }
    })
    .await;
    let v = fresh.get(&url).await;
    assert!(v.set.is_some());
    assert_eq!(v.set.as_ref().unwrap().node, "n2", "the node that is back");
    for n in 2..=3 {
        let v = fresh.get(&url).await;
        assert_eq!((v.counter, v.store.as_str()), (n, "ok"), "{v:?}");
    }
}

// 11. --------------------------------------------------------------------------------------

/// p50 and p99 of `samples` (sorted in place), in ms.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// What the session filter adds to `GET /counter` (a load and a save of changed state per
/// request) against the same requests with sticky + route_suffix only, interleaved rounds in one
/// run. Measured 2026-12-04, `--release`, a shared 2-core VM under other builds, 5000 requests
/// each: with the session filter p50 0.82–0.90 ms, p99 6.7–7.5 ms; without p50 0.38–0.41 ms,
/// p99 3.3–3.8 ms; added p50 0.44–0.49 ms (the aim: ≤ 0.3 ms), p99 3.4–3.7 ms. The store does
/// four memcached round trips one after the other per request (primary get, backup touch,
/// primary set, backup set).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run by hand: cargo test -p keel --test sessions -- --ignored latency"]
async fn latency() {
    let ms = [Memcached::start_quiet(), Memcached::start_quiet()];
    let a = Backend::start("a");
    let b = Backend::start("b");
    let members = [("a", a.url(), "active"), ("b", b.url(), "active")];
    let with = Keel::start(&config(
        &members,
        "",
        &format!(
            "{}{}",
            session_filters_section(""),
            store_section(&[&ms[0], &ms[1]])
        ),
    ));
    let without = Keel::start(&config(&members, "", &harness::filters_section()));
    let http = Http::new();

    // One session each; every request after carries its cookie (the session's: a load, and
    // a save of the changed counter).
    let cookie_of = |r: &Reply| set_cookie(r).map(|c| format!("JSESSIONID={}", c.value()));
    let with_cookie = cookie_of(&http.get(&with.url("/counter"), &[]).await).unwrap();
    let route_cookie = "JSESSIONID=0123456789ABCDEF0123456789ABCDEF.a".to_owned();
    let rounds = 20;
    let per_round = 250;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        for (keel, cookie, samples) in [
            (&with, &with_cookie, &mut on),
            (&without, &route_cookie, &mut off),
        ] {
            let url = keel.url("/counter");
            for _ in 0..per_round {
                let t = Instant::now();
                let r = http.get(&url, &[("cookie", cookie)]).await;
                let took = t.elapsed();
                assert_eq!(r.status, 200);
                if round > 0 {
                    samples.push(took); // round 0 warms up
                }
            }
        }
    }
    let (on50, on99) = percentiles(&mut on);
    let (off50, off99) = percentiles(&mut off);
    println!(
        "latency of GET /counter through keel, {} requests each, {rounds} interleaved rounds:\n  \
         sticky + session + route_suffix, memcached on loopback: p50 {on50:.3} ms  p99 {on99:.3} ms\n  \
         sticky + route_suffix:                                 p50 {off50:.3} ms  p99 {off99:.3} ms\n  \
         added by the session filter:                           p50 {:.3} ms  p99 {:.3} ms",
        on.len(),
        on50 - off50,
        on99 - off99
    );
    let v = visit_of(
        http.get(&with.url("/counter"), &[("cookie", &with_cookie)])
            .await,
    );
    assert_eq!(v.counter as usize, 2 + rounds * per_round + per_round);
}
