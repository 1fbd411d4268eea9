//! The store's HTTP API (version 1), one function for both ways keel serves it: in process
//! for the `session` filter's callouts, and over HTTP by `keel bridge`.
//!
//! | call | request | answers |
//! |---|---|---|
//! | load (and touch) | `GET /v1/sessions/<key>` | 200 (state; `keel-store-key`, `keel-store-cas`, `keel-store-route`), 404, 400, 503 |
//! | create | `POST /v1/sessions` (state; `keel-store-route`, `keel-store-replaces`) | 201 (`keel-store-key`, `keel-store-cas`), 413, 400, 503 |
//! | save | `PUT /v1/sessions/<key>` (state; `keel-store-route`, `keel-store-cas`) | 204 (`keel-store-key`, `keel-store-cas`), 409, 404, 413, 400, 503 |
//! | delete | `DELETE /v1/sessions/<key>` | 204, 400, 503 |
//!
//! `keel-store-ttl: <seconds>` (optional, at least 1) sets the idle timeout; without it the
//! store's `default_ttl`. Every error answer carries `keel-store-error: <code>` (`bad-request`,
//! `unknown-node`, `not-found`, `conflict`, `too-large`, `unavailable`, `internal`,
//! `no-route`, `method`) and a short text body; no error echoes what the client sent.
//! `/work/notes/store-api.md` is the full contract.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::session_key::{SessionKey, SessionKeyError};
use crate::store::{Store, StoreError};

/// `keel-store-key`: where the record lives (`<id>-<node>`).
pub const KEY: HeaderName = HeaderName::from_static("keel-store-key");
/// `keel-store-cas`: the CAS token (decimal).
pub const CAS: HeaderName = HeaderName::from_static("keel-store-cas");
/// `keel-store-route`: the route the record is bound to.
pub const ROUTE: HeaderName = HeaderName::from_static("keel-store-route");
/// `keel-store-ttl`: the idle timeout in seconds.
pub const TTL: HeaderName = HeaderName::from_static("keel-store-ttl");
/// `keel-store-replaces`: the key a create rotates out.
pub const REPLACES: HeaderName = HeaderName::from_static("keel-store-replaces");
/// `keel-store-error`: the error code of an error answer.
pub const ERROR: HeaderName = HeaderName::from_static("keel-store-error");

const PREFIX: &str = "/v1/sessions";

/// Serves one API request; see the module doc. Never fails: every problem is an answer.
pub async fn handle(store: &Store, request: Request<Bytes>) -> Response<Bytes> {
    match serve(store, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// An error answer.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    allow: Option<&'static str>,
}

impl Failure {
    fn bad_request(message: &str) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "bad-request",
            message: message.to_owned(),
            allow: None,
        }
    }

    fn into_response(self) -> Response<Bytes> {
        let mut r = Response::new(Bytes::from(self.message + "\n"));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(ERROR, HeaderValue::from_static(self.code));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(allow) = self.allow {
            h.insert(ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::Key(SessionKeyError::UnknownNode(_)) => "unknown-node",
            StoreError::NotFound => "not-found",
            StoreError::Key(_) | StoreError::BadRoute | StoreError::BadTtl => "bad-request",
            StoreError::TooLarge { .. } => "too-large",
            StoreError::Conflict => "conflict",
            StoreError::Unavailable => "unavailable",
            StoreError::Node(_) | StoreError::Random(_) => "internal",
        };
        if matches!(e, StoreError::Node(_) | StoreError::Random(_)) {
            log::error!("session store: {e}");
        }
        Failure {
            status: e.status(),
            code,
            message: e.to_string(),
            allow: None,
        }
    }
}

async fn serve(store: &Store, req: Request<Bytes>) -> Result<Response<Bytes>, Failure> {
    let path = req.uri().path();
    let key = if path == PREFIX {
        None
    } else if let Some(k) = path.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('/')) {
        Some(k.to_owned())
    } else {
        return Err(Failure {
            status: StatusCode::NOT_FOUND,
            code: "no-route",
            message: "no such API path (expected /v1/sessions[/<key>])".into(),
            allow: None,
        });
    };
    let method_not_allowed = |allow| Failure {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method",
        message: "method not allowed here".into(),
        allow: Some(allow),
    };
    let ttl = ttl(store, &req)?;
    match (req.method().clone(), key) {
        (Method::POST, None) => create(store, req, ttl).await,
        (_, None) => Err(method_not_allowed("POST")),
        (Method::GET, Some(k)) => load(store, &store.parse_key(&k)?, ttl).await,
        (Method::PUT, Some(k)) => save(store, &store.parse_key(&k)?, req, ttl).await,
        (Method::DELETE, Some(k)) => {
            store.delete(&store.parse_key(&k)?).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (_, Some(_)) => Err(method_not_allowed("GET, PUT, DELETE")),
    }
}

async fn load(store: &Store, key: &SessionKey, ttl: Duration) -> Result<Response<Bytes>, Failure> {
    let Some(record) = store.load(key, ttl).await? else {
        return Err(StoreError::NotFound.into());
    };
    let mut r = Response::new(record.state);
    let h = r.headers_mut();
    h.insert(KEY, header(&record.key.to_string())?);
    h.insert(CAS, HeaderValue::from(record.cas));
    if let Some(route) = &record.route {
        h.insert(ROUTE, header(route)?);
    }
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

async fn create(
    store: &Store,
    req: Request<Bytes>,
    ttl: Duration,
) -> Result<Response<Bytes>, Failure> {
    let route = text_header(&req, &ROUTE)?;
    let replaces = match text_header(&req, &REPLACES)? {
        None => None,
        Some(k) => Some(
            store
                .parse_key(&k)
                .map_err(|_| Failure::bad_request("keel-store-replaces is not a session key"))?,
        ),
    };
    let written = store
        .create(req.into_body(), route.as_deref(), ttl, replaces.as_ref())
        .await?;
    written_response(StatusCode::CREATED, &written)
}

async fn save(
    store: &Store,
    key: &SessionKey,
    req: Request<Bytes>,
    ttl: Duration,
) -> Result<Response<Bytes>, Failure> {
    let route = text_header(&req, &ROUTE)?;
    let cas = match text_header(&req, &CAS)? {
        None => None,
        Some(c) => {
            Some(number(&c).ok_or_else(|| Failure::bad_request("keel-store-cas is not a number"))?)
        }
    };
    let written = store
        .save(key, req.into_body(), route.as_deref(), cas, ttl)
        .await?;
    written_response(StatusCode::NO_CONTENT, &written)
}

fn written_response(
    status: StatusCode,
    w: &crate::store::Written,
) -> Result<Response<Bytes>, Failure> {
    let mut r = empty(status);
    r.headers_mut().insert(KEY, header(&w.key.to_string())?);
    r.headers_mut().insert(CAS, HeaderValue::from(w.cas));
    Ok(r)
}

fn empty(status: StatusCode) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}

fn ttl(store: &Store, req: &Request<Bytes>) -> Result<Duration, Failure> {
    match text_header(req, &TTL)? {
        None => Ok(store.config().default_ttl),
        Some(t) => match number(&t) {
            Some(s) if s > 0 => Ok(Duration::from_secs(s)),
            _ => Err(Failure::bad_request(
                "keel-store-ttl must be a number of seconds, at least 1",
            )),
        },
    }
}

/// A header's value as text; `None` when absent; 400 when repeated or not visible ASCII.
fn text_header(req: &Request<Bytes>, name: &HeaderName) -> Result<Option<String>, Failure> {
    let mut values = req.headers().get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::bad_request(&format!("{name} is repeated")));
    }
    v.to_str()
        .map(|s| Some(s.trim().to_owned()))
        .map_err(|_| Failure::bad_request(&format!("{name} is not text")))
}

/// A decimal u64 (digits only).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A header value from text the store validated (keys, routes).
fn header(s: &str) -> Result<HeaderValue, Failure> {
    HeaderValue::from_str(s).map_err(|_| Failure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: "a stored value cannot be sent in a header".into(),
        allow: None,
    })
}
