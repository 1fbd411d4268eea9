//! keel's filter chain: keel-wasm's `FilterChain` behind the proxy's [`FilterChain`] hook, built
//! from the validated filter settings, with `proxy_http_call` going to keel's callout upstreams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::filter::{ChainBuilder, ChainContext, ChainStream, EmptyChain, FilterChain, StreamInfo};
use crate::callout::{CalloutError, Callouts};

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

    fn bodies(&self) -> keel_wasm::Bodies {
        keel_wasm::FilterChain::bodies(self)
    }

    fn stream(&self, info: StreamInfo) -> ChainStream {
        ChainStream::Wasm(keel_wasm::FilterChain::stream(self, info))
    }
}
