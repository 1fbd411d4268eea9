//! keel's filter chain: keel-wasm's `FilterChain` behind the proxy's [`FilterChain`] hook, built
//! from the validated filter settings, with `proxy_http_call` going to keel's callout upstreams.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;

use super::filter::{
    BodyVerdict, ChainBuilder, ChainContext, EmptyChain, FilterChain, FilterStream, HeadersVerdict,
    StreamInfo, TrailersVerdict, UpstreamConnection, UpstreamInfo,
};
use crate::callout::{CalloutError, Callouts};
use crate::upstream::BoxFuture;

/// The builder `keel serve` uses: no filters → the empty chain; else keel-wasm compiles the
/// modules, instantiates them per worker and configures them. An error names the filter.
pub fn builder() -> ChainBuilder {
    Arc::new(|ctx: &ChainContext<'_>| {
        if ctx.filters.is_empty() {
            return Ok(Arc::new(EmptyChain) as Arc<dyn FilterChain>);
        }
        let specs = ctx.filters.to_vec();
        let handler = Arc::new(CalloutBridge(ctx.callouts.clone()));
        keel_wasm::FilterChain::new(specs, ctx.workers, ctx.registry, handler)
            .map(|chain| Arc::new(chain) as Arc<dyn FilterChain>)
            .map_err(|e| format!("filters: {e}"))
    })
}

/// keel's callout error as keel-wasm's.
fn into_wasm(error: CalloutError) -> keel_wasm::CalloutError {
    match error {
        CalloutError::UnknownUpstream(name) => keel_wasm::CalloutError::UnknownUpstream(name),
        CalloutError::Timeout(_) => keel_wasm::CalloutError::Timeout,
        CalloutError::Connect(why) => keel_wasm::CalloutError::Connect(why),
        other @ (CalloutError::BadRequest(_) | CalloutError::Failed(_)) => {
            keel_wasm::CalloutError::Failed(other.to_string())
        }
    }
}

/// `proxy_http_call`, `proxy_grpc_call` and `proxy_grpc_stream` → keel's named callout
/// upstreams.
struct CalloutBridge(Arc<Callouts>);

impl keel_wasm::CalloutHandler for CalloutBridge {
    fn call(
        &self,
        upstream: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> keel_wasm::CalloutFuture {
        let callouts = self.0.clone();
        let upstream = upstream.to_owned();
        Box::pin(async move {
            callouts
                .call(&upstream, request, timeout)
                .await
                .map_err(into_wasm)
        })
    }

    fn grpc_call(
        &self,
        upstream: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> keel_wasm::GrpcFuture {
        let callouts = self.0.clone();
        let upstream = upstream.to_owned();
        Box::pin(async move {
            callouts
                .grpc_call(&upstream, request, timeout)
                .await
                .map_err(into_wasm)
        })
    }

    fn grpc_stream(
        &self,
        upstream: &str,
        request: http::Request<keel_wasm::GrpcOutgoing>,
    ) -> keel_wasm::GrpcStreamFuture {
        let callouts = self.0.clone();
        let upstream = upstream.to_owned();
        Box::pin(async move {
            let response = callouts
                .grpc_stream(&upstream, request)
                .await
                .map_err(into_wasm)?;
            Ok(response.map(|body| -> keel_wasm::GrpcStreamBody {
                Box::pin(body.map_err(|e| keel_wasm::CalloutError::Failed(e.to_string())))
            }))
        })
    }

    fn has_upstream(&self, upstream: &str) -> bool {
        self.0.has_upstream(upstream)
    }
}

impl FilterChain for keel_wasm::FilterChain {
    fn is_empty(&self) -> bool {
        keel_wasm::FilterChain::is_empty(self)
    }

    fn stream(&self, info: StreamInfo) -> Box<dyn FilterStream> {
        Box::new(keel_wasm::FilterChain::stream(self, info))
    }
}

impl FilterStream for keel_wasm::Stream {
    fn request_headers<'a>(
        &'a mut self,
        req: &'a mut http::request::Parts,
        end_of_stream: bool,
    ) -> BoxFuture<'a, HeadersVerdict> {
        Box::pin(keel_wasm::Stream::request_headers(self, req, end_of_stream))
    }

    fn request_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BoxFuture<'_, BodyVerdict> {
        Box::pin(keel_wasm::Stream::request_body(self, chunk, end_of_stream))
    }

    fn request_trailers<'a>(
        &'a mut self,
        trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, TrailersVerdict> {
        Box::pin(keel_wasm::Stream::request_trailers(self, trailers))
    }

    fn response_headers<'a>(
        &'a mut self,
        res: &'a mut http::response::Parts,
        upstream: Option<&'a UpstreamInfo>,
        end_of_stream: bool,
    ) -> BoxFuture<'a, HeadersVerdict> {
        Box::pin(keel_wasm::Stream::response_headers(
            self,
            res,
            upstream,
            end_of_stream,
        ))
    }

    fn upstream_attempts(
        &mut self,
        attempts: u32,
        connection: Option<UpstreamConnection>,
        sent_at: Option<Instant>,
    ) {
        keel_wasm::Stream::upstream_attempts(self, attempts, connection, sent_at);
    }

    fn upstream_received(&mut self, at: Instant) {
        keel_wasm::Stream::upstream_received(self, at);
    }

    fn response_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BoxFuture<'_, BodyVerdict> {
        Box::pin(keel_wasm::Stream::response_body(self, chunk, end_of_stream))
    }

    fn response_trailers<'a>(
        &'a mut self,
        trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, TrailersVerdict> {
        Box::pin(keel_wasm::Stream::response_trailers(self, trailers))
    }

    fn finish(self: Box<Self>) {
        keel_wasm::Stream::finish(*self);
    }
}
