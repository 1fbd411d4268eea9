//! keel's `session.wasm` driven through the runtime against [`FakeStore`], an in-test double of
//! the store API (`notes/store-api.md`; the real store, the `keel-store` crate, replaces it later):
//! the load and the headers the backend gets, client forgery removed, unknown ids not adopted,
//! create / save with CAS / unchanged / invalidate / rotate, the relocation cookie, the store
//! down (fail open, fail closed), the ignore pattern and an oversized state.
//!
//! The filter's counters are process-wide, so the tests of this file run one at a time
//! ([`SERIAL`]) and compare counters before and after.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use keel_wasm::{ChainError, FilterChain, HeadersVerdict, LocalResponse, UpstreamInfo};
use wasm_tests::fake_store::{FakeStore, Mode};
use wasm_tests::{chain_with, header, info, metric, request, response, spec};

/// One test at a time: the counters are shared by every chain in the process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HEX: &str = "0123456789ABCDEF0123456789ABCDEF";
const CONFIG: &str = r#"{"routes": {"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}}"#;

fn config(extra: &str) -> String {
    CONFIG.replacen('{', &format!("{{{extra}"), 1)
}

struct Setup {
    chain: FilterChain,
    registry: prometheus::Registry,
    store: Arc<FakeStore>,
}

fn setup(config: &str) -> Setup {
    let store = Arc::new(FakeStore::default());
    let (chain, registry) = chain_with(vec![spec("session", "session", config)], store.clone());
    Setup {
        chain,
        registry,
        store,
    }
}

impl Setup {
    fn counter(&self, name: &str) -> f64 {
        metric(
            &self.registry,
            &format!("keel_wasmcustom_session_{name}"),
            &[],
        )
        .unwrap_or(0.0)
    }
}

fn served_by(route: &str) -> UpstreamInfo {
    let address = if route == "tomcat1" {
        "127.0.0.1:8081"
    } else {
        "127.0.0.1:8082"
    };
    UpstreamInfo::new(address.parse().unwrap(), route)
}

/// What one exchange came to.
struct Exchange {
    /// The request as the backend got it (`None`: answered locally on the request path).
    request: Option<http::request::Parts>,
    local: Option<LocalResponse>,
    /// The response as the client gets it.
    response: Option<http::response::Parts>,
}

/// One request (`uri`, headers) and, unless answered locally, a 200 response with `backend`
/// headers served by `route`.
async fn exchange(
    s: &Setup,
    uri: &str,
    client: &[(&str, &str)],
    backend: &[(&str, &str)],
    route: &str,
) -> Exchange {
    let mut stream = s.chain.stream(info());
    let mut req = request(uri, client);
    if let HeadersVerdict::Respond(local) = stream.request_headers(&mut req, true).await {
        stream.finish();
        return Exchange {
            request: None,
            local: Some(local),
            response: None,
        };
    }
    let mut res = response(200, backend);
    let verdict = stream
        .response_headers(&mut res, Some(&served_by(route)), true)
        .await;
    stream.finish();
    match verdict {
        HeadersVerdict::Continue => Exchange {
            request: Some(req),
            local: None,
            response: Some(res),
        },
        HeadersVerdict::Respond(local) => Exchange {
            request: Some(req),
            local: Some(local),
            response: None,
        },
    }
}

/// A request of the stored session `key` (its cookie naming tomcat1) to `uri`, served by tomcat1
/// with `backend` headers.
async fn in_session(s: &Setup, key: &str, uri: &str, backend: &[(&str, &str)]) -> Exchange {
    exchange(
        s,
        uri,
        &[("cookie", &cookie(key, "tomcat1"))],
        backend,
        "tomcat1",
    )
    .await
}

fn cookie(key: &str, route: &str) -> String {
    format!("JSESSIONID={key}.{route}")
}

fn set_cookies(res: &http::response::Parts) -> Vec<String> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Header names starting with `keel-session`.
fn session_headers(map: &http::HeaderMap) -> Vec<String> {
    map.keys()
        .filter(|n| n.as_str().starts_with("keel-session"))
        .map(|n| n.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn a_known_session_is_loaded_for_the_backend_and_unchanged_state_is_not_written() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "counter=4", Some("tomcat1"));
    let (loaded, unchanged) = (s.counter("loaded"), s.counter("unchanged"));
    let x = in_session(&s, &key, "/shop", &[("keel-session", "counter=4")]).await;
    let req = x.request.unwrap();
    assert_eq!(header(&req.headers, "keel-session"), "counter=4");
    assert_eq!(header(&req.headers, "keel-session-id"), HEX);
    let calls = s.store.calls();
    assert_eq!(s.store.call_lines(), [format!("GET /v1/sessions/{key}")]);
    assert_eq!(calls[0].header("keel-store-ttl"), "1800");
    let res = x.response.unwrap();
    assert!(session_headers(&res.headers).is_empty());
    assert!(set_cookies(&res).is_empty());
    assert_eq!(s.counter("loaded") - loaded, 1.0);
    assert_eq!(s.counter("unchanged") - unchanged, 1.0);
}

#[tokio::test]
async fn keel_session_headers_from_the_client_and_to_the_client_are_removed() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let removed = s.counter("client_header_removed");
    let x = exchange(
        &s,
        "/",
        &[
            ("keel-session", "admin=true"),
            ("keel-session-id", HEX),
            ("Keel-Session-Store", "ok"),
        ],
        &[
            ("keel-session-debug", "x"),
            ("keel-session-invalidate", "1"),
        ],
        "tomcat1",
    )
    .await;
    assert!(session_headers(&x.request.unwrap().headers).is_empty());
    assert!(session_headers(&x.response.unwrap().headers).is_empty());
    assert!(s.store.calls().is_empty());
    assert_eq!(s.counter("client_header_removed") - removed, 1.0);
}

#[tokio::test]
async fn an_unknown_id_is_not_adopted_and_other_ids_never_reach_the_store() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let (not_found, created) = (s.counter("not_found"), s.counter("created"));
    let forged = format!("{HEX}-n1");
    let x = exchange(
        &s,
        "/",
        &[("cookie", &cookie(&forged, "tomcat1"))],
        &[("keel-session", "counter=1")],
        "tomcat1",
    )
    .await;
    assert!(session_headers(&x.request.unwrap().headers).is_empty());
    let cookies = set_cookies(&x.response.unwrap());
    assert_eq!(cookies.len(), 1);
    assert!(!cookies[0].contains(HEX), "{cookies:?}");
    assert_eq!(
        s.store.call_lines(),
        [
            format!("GET /v1/sessions/{forged}"),
            "POST /v1/sessions".into()
        ]
    );
    assert_eq!(s.counter("not_found") - not_found, 1.0);
    assert_eq!(s.counter("created") - created, 1.0);

    let s = setup(CONFIG);
    for id in [
        "4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1",
        "0123456789abcdef0123456789abcdef-n1.t1",
        "0123456789ABCDEF0123456789ABCDEF-n1%00",
        "0123456789ABCDEF0123456789ABCDEF-n1 x",
    ] {
        let uri = format!("/a;jsessionid={}", id.replace(' ', "%20"));
        exchange(
            &s,
            &uri,
            &[("cookie", &format!("JSESSIONID=\"{id}\""))],
            &[],
            "tomcat1",
        )
        .await;
    }
    assert!(s.store.calls().is_empty(), "{:?}", s.store.call_lines());
}

#[tokio::test]
async fn new_state_creates_a_session_and_the_client_gets_its_cookie() {
    let _serial = SERIAL.lock().await;
    let s = setup(&config(r#""cookie": {"path": "/app", "secure": true}, "#));
    let x = exchange(
        &s,
        "/app/login",
        &[],
        &[
            ("keel-session", "user=7"),
            ("set-cookie", "JSESSIONID=TOMCAT.tomcat2; Path=/app"),
            ("set-cookie", "theme=dark"),
        ],
        "tomcat2",
    )
    .await;
    let calls = s.store.calls();
    assert_eq!(s.store.call_lines(), ["POST /v1/sessions"]);
    assert_eq!(calls[0].header("keel-store-route"), "tomcat2");
    assert_eq!(calls[0].body, b"user=7");
    let res = x.response.unwrap();
    assert!(session_headers(&res.headers).is_empty());
    // The backend's own session cookie gives way to keel's; other cookies stay.
    let cookies = set_cookies(&res);
    let [theme, cookie] = cookies.as_slice() else {
        panic!("two cookies: {cookies:?}");
    };
    assert_eq!(theme, "theme=dark");
    let value = cookie
        .strip_prefix("JSESSIONID=")
        .and_then(|c| c.strip_suffix(".tomcat2; Path=/app; Secure; HttpOnly"))
        .unwrap_or_else(|| panic!("{cookie}"));
    let (id, node) = value.split_once('-').unwrap();
    assert_eq!((id.len(), node), (32, "n1"));
    assert_eq!(s.store.record(id).unwrap().state, b"user=7");

    // The next request with that cookie gets the state.
    let x = exchange(
        &s,
        "/app",
        &[("cookie", &format!("JSESSIONID={value}.tomcat2"))],
        &[],
        "tomcat2",
    )
    .await;
    assert_eq!(
        header(&x.request.unwrap().headers, "keel-session"),
        "user=7"
    );
}

#[tokio::test]
async fn changed_state_is_saved_with_cas_and_a_conflict_keeps_the_first_writer() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "counter=1", Some("tomcat1"));
    let (saved, conflicts) = (s.counter("saved"), s.counter("cas_conflicts"));
    let x = in_session(&s, &key, "/", &[("keel-session", "counter=2")]).await;
    let put = &s.store.calls()[1];
    assert_eq!(
        (put.method.as_str(), put.path.as_str()),
        ("PUT", format!("/v1/sessions/{key}").as_str())
    );
    assert_eq!(put.header("keel-store-cas"), "1");
    assert_eq!(s.store.record(HEX).unwrap().state, b"counter=2");
    assert!(set_cookies(&x.response.unwrap()).is_empty());
    assert_eq!(s.counter("saved") - saved, 1.0);

    // Another request writes between this one's load and its save: this save is dropped.
    let mut stream = s.chain.stream(info());
    let mut req = request("/", &[("cookie", &cookie(&key, "tomcat1"))]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    s.store.overwrite(HEX, "counter=3");
    let mut res = response(200, &[("keel-session", "counter=99")]);
    let verdict = stream
        .response_headers(&mut res, Some(&served_by("tomcat1")), true)
        .await;
    stream.finish();
    assert_eq!(verdict, HeadersVerdict::Continue);
    assert_eq!(s.store.record(HEX).unwrap().state, b"counter=3");
    assert_eq!(s.counter("cas_conflicts") - conflicts, 1.0);
}

#[tokio::test]
async fn a_save_of_a_record_gone_meanwhile_creates_a_fresh_id() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "counter=1", None);
    let mut stream = s.chain.stream(info());
    let mut req = request("/", &[("cookie", &cookie(&key, "tomcat1"))]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    // Expired (or invalidated by another request) before this response.
    s.store.remove(HEX);
    let mut res = response(200, &[("keel-session", "counter=2")]);
    let verdict = stream
        .response_headers(&mut res, Some(&served_by("tomcat1")), true)
        .await;
    stream.finish();
    assert_eq!(verdict, HeadersVerdict::Continue);
    let lines = s.store.call_lines();
    assert_eq!(
        lines[1..],
        [
            format!("PUT /v1/sessions/{key}"),
            "POST /v1/sessions".to_owned()
        ]
    );
    let cookies = set_cookies(&res);
    assert_eq!(cookies.len(), 1);
    assert!(!cookies[0].contains(HEX), "{cookies:?}");
}

#[tokio::test]
async fn invalidate_deletes_the_record_and_expires_the_cookie() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "user=7", Some("tomcat1"));
    let deleted = s.counter("deleted");
    let x = in_session(
        &s,
        &key,
        "/logout",
        &[
            ("keel-session-invalidate", "true"),
            ("keel-session", "user=7"),
        ],
    )
    .await;
    assert_eq!(
        s.store.call_lines()[1],
        format!("DELETE /v1/sessions/{key}")
    );
    assert!(s.store.record(HEX).is_none());
    assert_eq!(
        set_cookies(&x.response.unwrap()),
        ["JSESSIONID=; Path=/; HttpOnly; Max-Age=0"]
    );
    assert_eq!(s.counter("deleted") - deleted, 1.0);
}

#[tokio::test]
async fn rotate_gives_a_new_id_with_the_same_state() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "user=7", Some("tomcat1"));
    let rotated = s.counter("rotated");
    let x = in_session(&s, &key, "/login", &[("keel-session-rotate", "1")]).await;
    let post = &s.store.calls()[1];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/v1/sessions")
    );
    assert_eq!(post.header("keel-store-replaces"), key);
    assert_eq!(post.body, b"user=7");
    assert!(s.store.record(HEX).is_none(), "the old id is gone");
    let cookies = set_cookies(&x.response.unwrap());
    let [cookie] = cookies.as_slice() else {
        panic!("one cookie: {cookies:?}");
    };
    let id = &cookie["JSESSIONID=".len()..][..32];
    assert_ne!(id, HEX);
    assert_eq!(s.store.record(id).unwrap().state, b"user=7");
    assert_eq!(s.counter("rotated") - rotated, 1.0);
}

#[tokio::test]
async fn a_relocated_session_gets_a_cookie_with_its_new_node() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "user=7", Some("tomcat1"));
    s.store.relocate_to("n2");
    let relocated = s.counter("relocated");
    let x = in_session(&s, &key, "/", &[]).await;
    assert_eq!(
        header(&x.request.unwrap().headers, "keel-session"),
        "user=7"
    );
    assert_eq!(
        set_cookies(&x.response.unwrap()),
        [format!("JSESSIONID={HEX}-n2.tomcat1; Path=/; HttpOnly")]
    );
    assert_eq!(s.store.calls().len(), 1, "no write: nothing changed");
    assert_eq!(s.counter("relocated") - relocated, 1.0);
}

#[tokio::test]
async fn a_store_that_is_down_fails_open_with_a_header_and_a_count() {
    let _serial = SERIAL.lock().await;
    for mode in [Mode::Unavailable, Mode::Failing] {
        let s = setup(CONFIG);
        let key = s.store.insert(HEX, "n1", "user=7", None);
        s.store.set_mode(mode.clone());
        let down = s.counter("store_unavailable");
        let x = in_session(&s, &key, "/", &[]).await;
        let req = x.request.unwrap();
        assert_eq!(
            header(&req.headers, "keel-session-store"),
            "unavailable",
            "{mode:?}"
        );
        assert_eq!(header(&req.headers, "keel-session"), "", "{mode:?}");
        assert!(x.response.is_some());
        assert_eq!(s.counter("store_unavailable") - down, 1.0, "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_does_not_answer_in_store_timeout_ms_fails_open() {
    let _serial = SERIAL.lock().await;
    let s = setup(&config(r#""store_timeout_ms": 200, "#));
    let key = s.store.insert(HEX, "n1", "user=7", None);
    s.store.set_mode(Mode::Hanging);
    let down = s.counter("store_unavailable");
    let started = tokio::time::Instant::now();
    let x = in_session(&s, &key, "/", &[]).await;
    assert_eq!(
        header(&x.request.unwrap().headers, "keel-session-store"),
        "unavailable"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(s.counter("store_unavailable") - down, 1.0);
}

#[tokio::test]
async fn fail_closed_answers_503_when_the_store_is_down() {
    let _serial = SERIAL.lock().await;
    let s = setup(&config(r#""fail_closed": true, "#));
    let key = s.store.insert(HEX, "n1", "user=7", None);
    s.store.set_mode(Mode::Failing);
    let x = in_session(&s, &key, "/", &[]).await;
    assert!(x.request.is_none());
    assert_eq!(x.local.unwrap().status, 503);
}

#[tokio::test]
async fn ignored_paths_neither_load_nor_store() {
    let _serial = SERIAL.lock().await;
    let s = setup(CONFIG);
    let key = s.store.insert(HEX, "n1", "user=7", None);
    let ignored = s.counter("ignored");
    let x = exchange(
        &s,
        "/static/app.css?v=3",
        &[
            ("cookie", &cookie(&key, "tomcat1")),
            ("keel-session", "forged"),
        ],
        &[("keel-session", "user=8")],
        "tomcat1",
    )
    .await;
    assert!(session_headers(&x.request.unwrap().headers).is_empty());
    let res = x.response.unwrap();
    assert!(session_headers(&res.headers).is_empty());
    assert!(set_cookies(&res).is_empty());
    assert!(s.store.calls().is_empty());
    assert_eq!(s.store.record(HEX).unwrap().state, b"user=7");
    assert_eq!(s.counter("ignored") - ignored, 1.0);
}

#[tokio::test]
async fn an_oversized_state_is_not_stored_and_the_client_gets_502() {
    let _serial = SERIAL.lock().await;
    let s = setup(&config(r#""max_state_bytes": 64, "#));
    let too_large = s.counter("state_too_large");
    let big = "x".repeat(65);
    let x = exchange(&s, "/", &[], &[("keel-session", &big)], "tomcat1").await;
    assert_eq!(x.local.unwrap().status, 502);
    assert!(s.store.calls().is_empty());
    assert_eq!(s.counter("state_too_large") - too_large, 1.0);
    let x = exchange(&s, "/", &[], &[("keel-session", &big[1..])], "tomcat1").await;
    assert!(x.response.is_some(), "64 bytes fit");
}

#[tokio::test]
async fn async_saves_do_not_hold_the_response() {
    let _serial = SERIAL.lock().await;
    let s = setup(&config(r#""write_mode": "async", "#));
    let key = s.store.insert(HEX, "n1", "counter=1", None);
    let x = in_session(&s, &key, "/", &[("keel-session", "counter=2")]).await;
    assert!(x.response.is_some());
    assert_eq!(s.store.call_lines()[1], format!("PUT /v1/sessions/{key}"));
}

/// An async save goes on after the stream ended (it used to be cancelled with the stream): Envoy
/// keeps a callout on the root context until it is answered (cpp-host `src/exports.cc`
/// `http_call`; Envoy `source/extensions/common/wasm/context.cc` `Context::~Context`).
#[tokio::test]
async fn an_async_save_lands_after_the_stream_ended() {
    let _serial = SERIAL.lock().await;
    let s = setup(&config(r#""write_mode": "async", "#));
    let key = s.store.insert(HEX, "n1", "counter=1", None);
    s.store.set_latency(std::time::Duration::from_millis(30));
    let x = in_session(&s, &key, "/", &[("keel-session", "counter=2")]).await;
    assert!(x.response.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.store.call_lines()[1], format!("PUT /v1/sessions/{key}"));
    assert_eq!(s.store.record(HEX).unwrap().state, b"counter=2");
}

#[test]
fn a_bad_configuration_is_refused_naming_the_field() {
    for (config, field) in [
        ("{}", "routes"),
        (
            &config(r#""idle_timeout_seconds": 0, "#) as &str,
            "idle_timeout_seconds",
        ),
        (&config(r#""ignore_pattern": "(", "#), "ignore_pattern"),
        (&config(r#""write_mode": "later", "#), "write_mode"),
        (&config(r#""colour": 1, "#), "colour"),
    ] {
        let registry = prometheus::Registry::new();
        let error = FilterChain::new(
            vec![spec("session", "session", config)],
            1,
            &registry,
            Arc::new(FakeStore::default()),
        )
        .unwrap_err();
        match &error {
            ChainError::Configure { filter, message } => {
                assert_eq!(filter, "session");
                assert!(message.contains(field), "{config}: {message}");
            }
            other => panic!("{config}: unexpected {other:?}"),
        }
    }
}
