//! Helpers shared by the API tests: requests as the filter sends them, and answers read back.
#![allow(dead_code)]

pub mod memcached;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use keel_store::Store;
use keel_store::api::{self, CAS, ERROR, KEY, ROUTE};

/// An API request.
pub fn request(method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Request<Bytes> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "keel_store");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::copy_from_slice(body)).expect("request")
}

/// The answer of `store` to a request.
pub async fn call(
    store: &Store,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Response<Bytes> {
    api::handle(store, request(method, path, body, headers)).await
}

/// A header of an answer, as text.
pub fn header<'a>(r: &'a Response<Bytes>, name: &http::HeaderName) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Creates a session; returns its key and CAS token.
pub async fn create(
    store: &Store,
    state: &[u8],
    route: Option<&str>,
    ttl: u64,
) -> (String, String) {
    let ttl = ttl.to_string();
    let mut h = vec![("keel-store-ttl", ttl.as_str())];
    if let Some(r) = route {
        h.push(("keel-store-route", r));
    }
    let r = call(store, "POST", "/v1/sessions", state, &h).await;
    assert_eq!(r.status(), StatusCode::CREATED, "create: {r:?}");
    (
        header(&r, &KEY).expect("key").to_owned(),
        header(&r, &CAS).expect("cas").to_owned(),
    )
}

/// Loads a session: status, key, CAS, route, body.
pub async fn load(store: &Store, key: &str, ttl: u64) -> Loaded {
    let ttl = ttl.to_string();
    let r = call(
        store,
        "GET",
        &format!("/v1/sessions/{key}"),
        b"",
        &[("keel-store-ttl", &ttl)],
    )
    .await;
    Loaded {
        status: r.status(),
        key: header(&r, &KEY).map(str::to_owned),
        cas: header(&r, &CAS).map(str::to_owned),
        route: header(&r, &ROUTE).map(str::to_owned),
        error: header(&r, &ERROR).map(str::to_owned),
        body: r.into_body(),
    }
}

/// What a load answered.
#[derive(Debug)]
pub struct Loaded {
    pub status: StatusCode,
    pub key: Option<String>,
    pub cas: Option<String>,
    pub route: Option<String>,
    pub error: Option<String>,
    pub body: Bytes,
}

/// Saves a session (with a CAS token if given).
pub async fn save(store: &Store, key: &str, state: &[u8], cas: Option<&str>) -> Response<Bytes> {
    let mut h = vec![("keel-store-ttl", "60")];
    if let Some(c) = cas {
        h.push(("keel-store-cas", c));
    }
    call(store, "PUT", &format!("/v1/sessions/{key}"), state, &h).await
}

/// A rotation: a create that replaces `old`.
pub async fn rotate(store: &Store, old: &str, state: &[u8]) -> Response<Bytes> {
    call(
        store,
        "POST",
        "/v1/sessions",
        state,
        &[("keel-store-replaces", old)],
    )
    .await
}

/// Paths with keys that must be refused before any store is touched (the raw bytes a
/// client could put in a cookie, as they arrive in a URI: percent-encoded).
pub fn bad_key_paths(node: &str) -> Vec<String> {
    let id = "0123456789ABCDEF0123456789ABCDEF";
    vec![
        format!("/v1/sessions/../{id}-{node}"),
        "/v1/sessions/../x".into(),
        format!("/v1/sessions/{id}-{node}%20x"),
        format!("/v1/sessions/{id}-{node}%0D%0Amd%20keel:{id}"),
        format!("/v1/sessions/{id}-{node}%00"),
        format!("/v1/sessions/{}", "A".repeat(4096)),
        format!("/v1/sessions/{}-{node}", id.to_lowercase()),
        format!("/v1/sessions/{id}"),
        format!("/v1/sessions/{id}-{node}/x"),
    ]
}
