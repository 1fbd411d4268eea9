//! HTTP callouts for filters (`proxy_http_call`): the named `callout_upstreams` of the
//! configuration, each with a pooled HTTP/1.1 client, and the session store's name, answered
//! in process by `keel_store::api::handle` (no loopback hop). keel-wasm's `CalloutHandler` adapter
//! forwards to [`Callouts::call`] and [`Callouts::has_upstream`]. A response is read whole, up
//! to [`MAX_RESPONSE_BODY`]. The request carries the filter's `:authority` as its Host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The largest callout response body keel reads (a memcached item is at most 1 MiB).
pub const MAX_RESPONSE_BODY: usize = 2 * 1024 * 1024;

/// Why a callout failed.
#[derive(Debug, thiserror::Error)]
pub enum CalloutError {
    /// No upstream of that name is configured.
    #[error("unknown callout upstream {0:?}")]
    UnknownUpstream(String),
    /// The request could not be built.
    #[error("bad callout request: {0}")]
    BadRequest(String),
    /// No response in time.
    #[error("callout timed out after {0:?}")]
    Timeout(Duration),
    /// The upstream could not be connected to.
    #[error("callout could not connect: {0}")]
    Connect(String),
    /// Sending or receiving failed once connected.
    #[error("callout failed: {0}")]
    Failed(String),
}

/// The session store served in process under a callout upstream name.
#[derive(Clone)]
pub struct LocalStore {
    /// The upstream name the `session` filter calls.
    pub name: String,
    /// The store.
    pub store: Arc<keel_store::Store>,
}

/// The callout upstreams.
pub struct Callouts {
    upstreams: BTreeMap<String, SocketAddr>,
    store: Option<LocalStore>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Callouts {
    /// Clients for the configured upstreams (name → address), and the session store served
    /// in process under its own name (the same handler `keel bridge` serves over HTTP).
    pub fn new(upstreams: BTreeMap<String, SocketAddr>, store: Option<LocalStore>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        // The Host header is the filter's `:authority` (as Envoy sends it), not the address.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .set_host(false)
            .build(connector);
        Self {
            upstreams,
            store,
            client,
        }
    }

    /// Whether `name` is configured.
    pub fn has_upstream(&self, name: &str) -> bool {
        self.upstreams.contains_key(name) || self.store.as_ref().is_some_and(|s| s.name == name)
    }

    /// Sends `request` (origin-form or absolute URI; the upstream's address is used) and reads
    /// the whole response.
    pub async fn call(
        &self,
        name: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, CalloutError> {
        if let Some(local) = self.store.as_ref().filter(|s| s.name == name) {
            return tokio::time::timeout(timeout, keel_store::api::handle(&local.store, request))
                .await
                .map_err(|_| CalloutError::Timeout(timeout));
        }
        let addr = *self
            .upstreams
            .get(name)
            .ok_or_else(|| CalloutError::UnknownUpstream(name.to_string()))?;
        let (mut parts, body) = request.into_parts();
        if let Some(authority) = parts.uri.authority()
            && !parts.headers.contains_key(http::header::HOST)
        {
            let host = http::HeaderValue::from_str(authority.as_str())
                .map_err(|e| CalloutError::BadRequest(e.to_string()))?;
            parts.headers.insert(http::header::HOST, host);
        }
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = http::Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query(pq)
            .build()
            .map_err(|e| CalloutError::BadRequest(e.to_string()))?;
        parts.version = http::Version::HTTP_11;
        let req = http::Request::from_parts(parts, Full::new(body));
        let fut = async {
            let res = self.client.request(req).await.map_err(|e| {
                let chain = crate::upstream::http::error_chain(&e);
                if e.is_connect() {
                    CalloutError::Connect(chain)
                } else {
                    CalloutError::Failed(chain)
                }
            })?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BODY)
                .collect()
                .await
                .map_err(|e| CalloutError::Failed(e.to_string()))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| CalloutError::Timeout(timeout))?
    }
}
