//! Callouts for filters: `proxy_http_call` to the named `callout_upstreams` of the configuration
//! over a pooled HTTP/1.1 client, or over HTTP/2 to those declared `protocol: http2` ([`h2`]),
//! `proxy_grpc_call` and `proxy_grpc_stream` to the same
//! upstreams over HTTP/2 (h2c),
//! and the session store's name for http callouts, answered
//! in process by `keel_store::api::handle` (no loopback hop). keel-wasm's `CalloutHandler` adapter
//! forwards to [`Callouts::call`] and [`Callouts::has_upstream`]. A response is read whole, up
//! to [`MAX_RESPONSE_BODY`]. The request carries the filter's `:authority` as its Host.

mod h2;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
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
    /// The upstreams whose http callouts speak HTTP/2 (h2c).
    http2: BTreeSet<String>,
    /// Their connections.
    h2: h2::Connections,
    store: Option<LocalStore>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// gRPC calls and streams: HTTP/2 with prior knowledge (h2c), as Envoy's gRPC clusters
    /// speak it; one connection per upstream carries both (a stream's body comes as the filter
    /// sends it, a call's whole).
    grpc: Client<HttpConnector, StreamBody>,
}

/// The request body of a gRPC stream, whatever produces it.
type StreamBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

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
            .build(connector.clone());
        let grpc = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .http2_only(true)
            .timer(TokioTimer::new())
            .build(connector);
        Self {
            upstreams,
            http2: BTreeSet::new(),
            h2: h2::Connections::default(),
            store,
            client,
            grpc,
        }
    }

    /// Makes the http callouts to the upstreams `names` speak HTTP/2 with prior knowledge (h2c).
    pub fn with_http2(mut self, names: BTreeSet<String>) -> Self {
        self.http2 = names;
        self
    }

    /// Whether `name` is configured.
    pub fn has_upstream(&self, name: &str) -> bool {
        self.upstreams.contains_key(name) || self.store.as_ref().is_some_and(|s| s.name == name)
    }

    /// Sends a gRPC `request` (keel-wasm built it: path, headers, framed message) to upstream
    /// `name` over HTTP/2 and reads the whole response and its trailers. The `:authority` is
    /// the upstream's address (Envoy's gRPC client sends the cluster name).
    pub async fn grpc_call(
        &self,
        name: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<(http::Response<Bytes>, http::HeaderMap), CalloutError> {
        let request = self.to_grpc_upstream(name, request)?;
        let request = request.map(|body| {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        exchange(&self.grpc, request, timeout).await
    }

    /// Opens a gRPC stream (keel-wasm built the head; the body carries the filter's messages as
    /// it sends them) to upstream `name` over HTTP/2 and answers the response head, its body
    /// still coming. No timeout: the stream lasts until either side ends it.
    pub async fn grpc_stream<B>(
        &self,
        name: &str,
        request: http::Request<B>,
    ) -> Result<http::Response<hyper::body::Incoming>, CalloutError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request = self.to_grpc_upstream(name, request)?;
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        self.grpc.request(request).await.map_err(|e| failure(&e))
    }

    /// `request` addressed to upstream `name` over HTTP/2.
    fn to_grpc_upstream<B>(
        &self,
        name: &str,
        request: http::Request<B>,
    ) -> Result<http::Request<B>, CalloutError> {
        let addr = self.address(name)?;
        let (mut parts, body) = request.into_parts();
        parts.uri = retarget(&parts.uri, addr)?;
        parts.version = http::Version::HTTP_2;
        Ok(http::Request::from_parts(parts, body))
    }

    /// The address of callout upstream `name`.
    fn address(&self, name: &str) -> Result<SocketAddr, CalloutError> {
        self.upstreams
            .get(name)
            .copied()
            .ok_or_else(|| CalloutError::UnknownUpstream(name.to_string()))
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
        let addr = self.address(name)?;
        if self.http2.contains(name) {
            return tokio::time::timeout(timeout, self.h2.call(addr, request))
                .await
                .map_err(|_| CalloutError::Timeout(timeout))?;
        }
        let (mut parts, body) = request.into_parts();
        if let Some(authority) = parts.uri.authority()
            && !parts.headers.contains_key(http::header::HOST)
        {
            let host = http::HeaderValue::from_str(authority.as_str())
                .map_err(|e| CalloutError::BadRequest(e.to_string()))?;
            parts.headers.insert(http::header::HOST, host);
        }
        parts.uri = retarget(&parts.uri, addr)?;
        parts.version = http::Version::HTTP_11;
        // HTTP/1.1 trailers are neither sent nor kept, as Envoy's HTTP/1 codec without
        // `enable_trailers` (`source/common/http/http1/codec_impl.cc` `encodeTrailersBase`,
        // `onHeaderFieldImpl`).
        let (response, _trailers) = exchange(
            &self.client,
            http::Request::from_parts(parts, Full::new(body)),
            timeout,
        )
        .await?;
        Ok(response)
    }
}

/// Sends `request` on `client` and reads the whole response (at most [`MAX_RESPONSE_BODY`])
/// and its trailers, all within `timeout`.
async fn exchange<B>(
    client: &Client<HttpConnector, B>,
    request: http::Request<B>,
    timeout: Duration,
) -> Result<(http::Response<Bytes>, http::HeaderMap), CalloutError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fut = async {
        let res = client.request(request).await.map_err(|e| failure(&e))?;
        let (parts, body) = res.into_parts();
        let collected = Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| CalloutError::Failed(e.to_string()))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        Ok((
            http::Response::from_parts(parts, collected.to_bytes()),
            trailers,
        ))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| CalloutError::Timeout(timeout))?
}

/// `uri`'s path and query on the upstream's address.
fn retarget(uri: &http::Uri, addr: SocketAddr) -> Result<http::Uri, CalloutError> {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    http::Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
        .path_and_query(pq)
        .build()
        .map_err(|e| CalloutError::BadRequest(e.to_string()))
}

/// A client error as a callout failure: before the connection was up, or after.
fn failure(error: &hyper_util::client::legacy::Error) -> CalloutError {
    let chain = crate::upstream::http::error_chain(error);
    if error.is_connect() {
        CalloutError::Connect(chain)
    } else {
        CalloutError::Failed(chain)
    }
}
