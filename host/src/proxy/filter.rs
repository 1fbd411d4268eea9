//! The filter-chain hook: the proxy's view of a filter chain — keel-wasm's `Stream` API
//! (request/response headers, bodies, trailers, finish), with keel-wasm's verdict types.
//! keel-wasm's `FilterChain` implements [`FilterChain`] (`proxy::wasm`) and its streams are
//! called directly ([`ChainStream::Wasm`]); [`EmptyChain`], which the proxy skips entirely,
//! stands for no filters; tests plug in chains written in Rust ([`FilterStream`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
pub use keel_wasm::{
    Bodies, BodyVerdict, CodeDetails, HeadersVerdict, LocalResponse, StreamInfo, TrailersVerdict,
    UpstreamConnection, UpstreamInfo,
};

use crate::callout::Callouts;
use crate::config::FilterSettings;
use crate::upstream::BoxFuture;

/// One request's pass through a chain written in Rust (tests): each callback a boxed future.
pub trait FilterStream: Send {
    /// Request headers (`end_of_stream`: no body follows).
    fn request_headers<'a>(
        &'a mut self,
        req: &'a mut http::request::Parts,
        end_of_stream: bool,
    ) -> BoxFuture<'a, HeadersVerdict>;
    /// A request body chunk.
    fn request_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BoxFuture<'_, BodyVerdict>;
    /// Request trailers (first, any request body a filter still held).
    fn request_trailers<'a>(
        &'a mut self,
        trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, TrailersVerdict>;
    /// How many upstream attempts the request made and, when a member answered, its connection
    /// and when the attempt it answered began (before the response headers). Nothing by
    /// default.
    fn upstream_attempts(
        &mut self,
        _attempts: u32,
        _connection: Option<UpstreamConnection>,
        _sent_at: Option<Instant>,
    ) {
    }
    /// The member's response was read to its end at `at`. Nothing by default.
    fn upstream_received(&mut self, _at: Instant) {}
    /// Response headers; `upstream` says which member served (None for a local response).
    fn response_headers<'a>(
        &'a mut self,
        res: &'a mut http::response::Parts,
        upstream: Option<&'a UpstreamInfo>,
        end_of_stream: bool,
    ) -> BoxFuture<'a, HeadersVerdict>;
    /// A response body chunk.
    fn response_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BoxFuture<'_, BodyVerdict>;
    /// Response trailers (first, any response body a filter still held).
    fn response_trailers<'a>(
        &'a mut self,
        trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, TrailersVerdict>;
    /// End of the stream (on_log, on_done, on_delete).
    fn finish(self: Box<Self>);
}

/// A filter chain.
pub trait FilterChain: Send + Sync + 'static {
    /// Whether it has no filters (the proxy then skips it).
    fn is_empty(&self) -> bool;
    /// Which bodies go through the chain (a body that does not goes to the other side
    /// untouched). Both, unless the chain says otherwise.
    fn bodies(&self) -> Bodies {
        Bodies {
            request: true,
            response: true,
        }
    }
    /// A stream for one request.
    fn stream(&self, info: StreamInfo) -> ChainStream;
}

/// One request's pass through the chain: keel-wasm's stream, called directly (no boxed future
/// and no indirect call per callback), or a stream of another kind behind [`FilterStream`].
pub enum ChainStream {
    /// keel-wasm's.
    Wasm(keel_wasm::Stream),
    /// Any other.
    Other(Box<dyn FilterStream>),
}

impl ChainStream {
    /// Request headers (`end_of_stream`: no body follows).
    pub async fn request_headers(
        &mut self,
        req: &mut http::request::Parts,
        end_of_stream: bool,
    ) -> HeadersVerdict {
        match self {
            Self::Wasm(s) => s.request_headers(req, end_of_stream).await,
            Self::Other(s) => s.request_headers(req, end_of_stream).await,
        }
    }

    /// A request body chunk.
    pub async fn request_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BodyVerdict {
        match self {
            Self::Wasm(s) => s.request_body(chunk, end_of_stream).await,
            Self::Other(s) => s.request_body(chunk, end_of_stream).await,
        }
    }

    /// Request trailers (first, any request body a filter still held).
    pub async fn request_trailers(&mut self, trailers: &mut HeaderMap) -> TrailersVerdict {
        match self {
            Self::Wasm(s) => s.request_trailers(trailers).await,
            Self::Other(s) => s.request_trailers(trailers).await,
        }
    }

    /// See [`FilterStream::upstream_attempts`].
    pub fn upstream_attempts(
        &mut self,
        attempts: u32,
        connection: Option<UpstreamConnection>,
        sent_at: Option<Instant>,
    ) {
        match self {
            Self::Wasm(s) => s.upstream_attempts(attempts, connection, sent_at),
            Self::Other(s) => s.upstream_attempts(attempts, connection, sent_at),
        }
    }

    /// The member's response was read to its end at `at`.
    pub fn upstream_received(&mut self, at: Instant) {
        match self {
            Self::Wasm(s) => s.upstream_received(at),
            Self::Other(s) => s.upstream_received(at),
        }
    }

    /// Response headers; `upstream` says which member served (None for a local response).
    pub async fn response_headers(
        &mut self,
        res: &mut http::response::Parts,
        upstream: Option<&UpstreamInfo>,
        end_of_stream: bool,
    ) -> HeadersVerdict {
        match self {
            Self::Wasm(s) => s.response_headers(res, upstream, end_of_stream).await,
            Self::Other(s) => s.response_headers(res, upstream, end_of_stream).await,
        }
    }

    /// A response body chunk.
    pub async fn response_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BodyVerdict {
        match self {
            Self::Wasm(s) => s.response_body(chunk, end_of_stream).await,
            Self::Other(s) => s.response_body(chunk, end_of_stream).await,
        }
    }

    /// Response trailers (first, any response body a filter still held).
    pub async fn response_trailers(&mut self, trailers: &mut HeaderMap) -> TrailersVerdict {
        match self {
            Self::Wasm(s) => s.response_trailers(trailers).await,
            Self::Other(s) => s.response_trailers(trailers).await,
        }
    }

    /// End of the stream (on_log, on_done, on_delete).
    pub fn finish(self) {
        match self {
            Self::Wasm(s) => s.finish(),
            Self::Other(s) => s.finish(),
        }
    }
}

impl<S: FilterStream + 'static> From<S> for ChainStream {
    fn from(stream: S) -> Self {
        Self::Other(Box::new(stream))
    }
}

/// What a chain is built from.
pub struct ChainContext<'a> {
    /// The filters, in order (keel-wasm `FilterSpec` fields).
    pub filters: &'a [FilterSettings],
    /// The process registry (keel-wasm registers its metrics here; note that a reload builds
    /// a new chain against the same registry).
    pub registry: &'a prometheus::Registry,
    /// The callout upstreams (for keel-wasm's `CalloutHandler`).
    pub callouts: Arc<Callouts>,
    /// Runtime worker threads (keel-wasm instantiates per worker).
    pub workers: usize,
}

/// Builds the chain from the configuration (at start and on every reload): keel's is
/// [`crate::proxy::wasm::builder`]; tests pass chains of their own.
pub type ChainBuilder =
    Arc<dyn Fn(&ChainContext<'_>) -> Result<Arc<dyn FilterChain>, String> + Send + Sync>;

/// No filters.
#[derive(Debug, Default)]
pub struct EmptyChain;

impl FilterChain for EmptyChain {
    fn is_empty(&self) -> bool {
        true
    }
    fn stream(&self, _info: StreamInfo) -> ChainStream {
        PassThrough.into()
    }
}

/// A stream that changes nothing.
#[derive(Debug, Default)]
pub struct PassThrough;

impl FilterStream for PassThrough {
    fn request_headers<'a>(
        &'a mut self,
        _req: &'a mut http::request::Parts,
        _eos: bool,
    ) -> BoxFuture<'a, HeadersVerdict> {
        Box::pin(async { HeadersVerdict::Continue })
    }
    fn request_body(&mut self, chunk: Bytes, _eos: bool) -> BoxFuture<'_, BodyVerdict> {
        Box::pin(async move { BodyVerdict::Forward(chunk) })
    }
    fn request_trailers<'a>(&'a mut self, _t: &'a mut HeaderMap) -> BoxFuture<'a, TrailersVerdict> {
        Box::pin(async { TrailersVerdict::Continue(Bytes::new()) })
    }
    fn response_headers<'a>(
        &'a mut self,
        _res: &'a mut http::response::Parts,
        _upstream: Option<&'a UpstreamInfo>,
        _eos: bool,
    ) -> BoxFuture<'a, HeadersVerdict> {
        Box::pin(async { HeadersVerdict::Continue })
    }
    fn response_body(&mut self, chunk: Bytes, _eos: bool) -> BoxFuture<'_, BodyVerdict> {
        Box::pin(async move { BodyVerdict::Forward(chunk) })
    }
    fn response_trailers<'a>(
        &'a mut self,
        _t: &'a mut HeaderMap,
    ) -> BoxFuture<'a, TrailersVerdict> {
        Box::pin(async { TrailersVerdict::Continue(Bytes::new()) })
    }
    fn finish(self: Box<Self>) {}
}
