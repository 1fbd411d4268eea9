//! The public data types of the runtime: filter specifications, limits, stream information and
//! the verdicts the stream methods return, plus the callout trait the proxy implements.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::CalloutError;

/// What happens to a request when a filter fails (trap, deadline, memory, `proc_exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Answer the request with 503 (Envoy's `FAIL_CLOSED`).
    #[default]
    FailClosed,
    /// Let the request go on without that filter (Envoy's `FAIL_OPEN`).
    FailOpen,
}

/// The sandbox limits of one filter instance. Envoy has no callback deadline, caps linear
/// memory at 1 GiB (cpp-host `include/proxy-wasm/limits.h`,
/// `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`) and bounds a paused stream only by the
/// connection manager's stream idle timeout (5 minutes by default); the defaults here follow it
/// except for the per-request callback deadline, keel's safety choice (zero turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory one instance may have.
    pub memory_bytes: u64,
    /// How long one stream callback (headers, body, trailers, callout response, `on_log`, ...)
    /// or root callback (`on_tick`, `on_queue_ready`) may run before it is interrupted and the
    /// filter fails; zero is no deadline (Envoy).
    pub callback_deadline: Duration,
    /// The same for the start of an instance: `_initialize`, `_start`/`main`, the root
    /// context, `on_vm_start` and `on_configure` (rule sets are compiled there); zero is none.
    pub start_deadline: Duration,
    /// The most body a paused filter may make the runtime hold (then 413 on requests, 500 on
    /// responses, as Envoy does).
    pub max_buffered_body: usize,
    /// How long a stream may stay paused: then it is answered 408 "stream timeout", as Envoy's
    /// stream idle timeout answers, whatever the failure policy.
    pub pause_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            callback_deadline: Duration::from_millis(100),
            start_deadline: Duration::from_secs(60),
            max_buffered_body: 1 << 20,
            pause_timeout: Duration::from_secs(300),
        }
    }
}

/// One filter of a chain, as keel's configuration gives it.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    /// The filter's name (logs, metrics, errors, property `plugin_name`).
    pub name: String,
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// The plugin configuration (buffer 7, `on_configure`).
    pub plugin_config: Vec<u8>,
    /// The VM configuration (buffer 6, `on_vm_start`).
    pub vm_config: Vec<u8>,
    /// The root id (property `plugin_root_id`).
    pub root_id: String,
    /// The VM id: instances of one VM id share data and queues.
    pub vm_id: String,
    /// What a failure does to the request.
    pub failure_policy: FailurePolicy,
    /// The sandbox limits.
    pub limits: Limits,
    /// The WASI environment (`environ_get`).
    pub env: Vec<(String, String)>,
}

impl FilterSpec {
    /// A spec with the given name, file and plugin configuration and defaults for the rest.
    pub fn new(
        name: impl Into<String>,
        wasm: impl Into<PathBuf>,
        plugin_config: impl Into<Vec<u8>>,
    ) -> Self {
        FilterSpec {
            name: name.into(),
            wasm: wasm.into(),
            plugin_config: plugin_config.into(),
            vm_config: Vec::new(),
            root_id: String::new(),
            vm_id: String::new(),
            failure_policy: FailurePolicy::FailClosed,
            limits: Limits::default(),
            env: Vec::new(),
        }
    }
}

/// The trailers of an http callout's request (the filter's, when it passed any) or of its
/// response (the upstream's, when it sent any), carried in the message's extensions. Only an
/// HTTP/2 callout upstream carries them: Envoy's HTTP/1 codec sends and keeps none
/// (`source/common/http/http1/codec_impl.cc`), its HTTP/2 codec both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallTrailers(pub http::HeaderMap);

/// The future a [`CalloutHandler`] returns.
pub type CalloutFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, CalloutError>> + Send>>;

/// The future of [`CalloutHandler::grpc_call`]: the HTTP/2 response (its body whole) and its
/// trailers.
pub type GrpcFuture = Pin<
    Box<dyn Future<Output = Result<(http::Response<Bytes>, http::HeaderMap), CalloutError>> + Send>,
>;

/// The response body of a gRPC stream, as the handler reads it off HTTP/2: DATA frames, then
/// the trailers.
pub type GrpcStreamBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = CalloutError> + Send>>;

/// The future of [`CalloutHandler::grpc_stream`]: the response head once it arrives, with its
/// body still coming.
pub type GrpcStreamFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<GrpcStreamBody>, CalloutError>> + Send>>;

/// Where `proxy_http_call` and `proxy_grpc_call` go: keel's configured callout upstreams.
pub trait CalloutHandler: Send + Sync + 'static {
    /// Sends `request` to the upstream named `upstream`. The runtime applies `timeout` too.
    /// The filter's trailers, if it passed any, are the request's [`CallTrailers`] extension;
    /// the response's trailers, if the upstream sent any, go in the response's.
    fn call(
        &self,
        upstream: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> CalloutFuture;
    /// Sends a gRPC `request` (already framed, see `crate::grpc`) to `upstream` over HTTP/2
    /// and reads the whole response with its trailers. Handlers without HTTP/2 answer `Failed`
    /// (the filter sees gRPC status INTERNAL).
    fn grpc_call(
        &self,
        upstream: &str,
        _request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> GrpcFuture {
        let upstream = upstream.to_owned();
        Box::pin(async move {
            Err(CalloutError::Failed(format!(
                "no gRPC client for callout upstream {upstream}"
            )))
        })
    }
    /// Opens a gRPC stream to `upstream` over HTTP/2: `request` is the head of the call (see
    /// `crate::grpc`) and a body that carries the filter's messages as it sends them (it ends
    /// when the filter closes its side, and fails when the filter cancels the stream: the
    /// HTTP/2 stream is then reset). No timeout: an Envoy stream has none. Handlers without
    /// HTTP/2 answer `Failed` (the filter sees the stream close with INTERNAL).
    fn grpc_stream(
        &self,
        upstream: &str,
        _request: http::Request<crate::GrpcOutgoing>,
    ) -> GrpcStreamFuture {
        let upstream = upstream.to_owned();
        Box::pin(async move {
            Err(CalloutError::Failed(format!(
                "no gRPC client for callout upstream {upstream}"
            )))
        })
    }
    /// Whether an upstream of that name is configured (false → `BadArgument` at call time).
    fn has_upstream(&self, upstream: &str) -> bool;
}

/// A [`CalloutHandler`] with no upstreams: every `proxy_http_call` gets `BadArgument`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallouts;

impl CalloutHandler for NoCallouts {
    fn call(
        &self,
        upstream: &str,
        _request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> CalloutFuture {
        let upstream = upstream.to_owned();
        Box::pin(async move { Err(CalloutError::UnknownUpstream(upstream)) })
    }
    fn has_upstream(&self, _upstream: &str) -> bool {
        false
    }
}

/// What the runtime knows about a stream's connection and route (properties `source.*`, ...).
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The client's address (`source.address`, `source.port`).
    pub source: SocketAddr,
    /// keel's listening address (`destination.address`, `destination.port`).
    pub destination: SocketAddr,
    /// Whether the client connection is TLS (`:scheme` default, `connection.tls`).
    pub tls: bool,
    /// The client's HTTP version (`request.protocol`).
    pub protocol: http::Version,
    /// keel's id of the request (`request.id` when no `x-request-id` header is present).
    pub request_id: u64,
    /// The client connection's number in the process (`connection.id`, `connection_id`).
    pub connection_id: u64,
    /// `xds.route_name` (usually a name from the configuration: no copy per request).
    pub route_name: Cow<'static, str>,
    /// `xds.cluster_name`.
    pub cluster_name: Cow<'static, str>,
    /// The members of that cluster, healthy or not (`upstream.num_endpoints`).
    pub endpoints: u32,
    /// The client connection's TLS session, if it is TLS (`connection.tls_version`,
    /// `connection.requested_server_name`): made once per connection, shared by its requests.
    pub downstream_tls: Option<Arc<DownstreamTls>>,
}

/// The member connection a response came on, as filters read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConnection {
    /// Its local address (`upstream.local_address`), when known.
    pub local: Option<SocketAddr>,
    /// How long the request waited for it, from asking the pool to a connection ready to take
    /// the request (`upstream.cx_pool_ready_duration`; a new connection's connect included).
    pub pool_wait: Duration,
}

/// What a TLS client connection negotiated, as filters read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTls {
    /// The protocol version as Envoy names it (BoringSSL's `SSL_get_version`): `TLSv1.3`.
    pub version: String,
    /// The server name the client asked for (SNI), if it sent one.
    pub server_name: Option<String>,
    /// The listener's own certificate, read once when the listener is built.
    pub local_certificate: Arc<LocalCertificate>,
}

/// What filters read of the certificate a TLS listener presents
/// (`connection.subject_local_certificate`, `connection.uri_san_local_certificate`,
/// `connection.dns_san_local_certificate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalCertificate {
    /// The subject as BoringSSL prints it in RFC 2253 form (`XN_FLAG_RFC2253`).
    pub subject: String,
    /// The first URI subject alternative name, if any.
    pub uri_san: Option<String>,
    /// The first DNS subject alternative name, if any.
    pub dns_san: Option<String>,
}

/// The backend that serves a response (`upstream.address`, and the member's route). Made once per
/// backend and shared: a stream keeps it (for `on_log`) at the cost of a reference count.
#[derive(Debug, Clone)]
pub struct UpstreamInfo(Arc<Upstream>);

#[derive(Debug)]
struct Upstream {
    address: SocketAddr,
    route: String,
    address_text: String,
}

impl UpstreamInfo {
    /// The backend at `address`, a balancer member called `route`.
    pub fn new(address: SocketAddr, route: impl Into<String>) -> Self {
        UpstreamInfo(Arc::new(Upstream {
            address,
            route: route.into(),
            address_text: address.to_string(),
        }))
    }

    /// The backend's address.
    pub fn address(&self) -> SocketAddr {
        self.0.address
    }

    /// The balancer member's route name.
    pub fn route(&self) -> &str {
        &self.0.route
    }

    /// The address as `upstream.address` gives it (`127.0.0.1:8081`, `[::1]:8082`), formatted
    /// once.
    pub fn address_text(&self) -> &str {
        &self.0.address_text
    }
}

/// A response a filter makes instead of the backend's.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    /// The status code.
    pub status: http::StatusCode,
    /// The headers the filter gave.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body.
    pub body: Bytes,
    /// Why it was made, as Envoy's response code details name it (property
    /// `response.code_details`): the filter's `details` argument, or one of Envoy's values
    /// (`envoy/stream_info/stream_info.h` `ResponseCodeDetailValues`, `wasm_fail_stream`, ...).
    pub details: Cow<'static, str>,
}

impl LocalResponse {
    /// A response with a status, a short plain-text body and Envoy's code details for it.
    pub fn plain(status: http::StatusCode, body: &'static str, details: &'static str) -> Self {
        LocalResponse {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            )],
            body: Bytes::from_static(body.as_bytes()),
            details: Cow::Borrowed(details),
        }
    }
}

/// Envoy's response code details of a response keel makes itself (a 502, 503 or 504 of the
/// proxy), carried in the response head's extensions to the filters' `response.code_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeDetails(pub &'static str);

/// The outcome of a headers callback.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadersVerdict {
    /// Go on (the headers may have been changed in place).
    Continue,
    /// Answer with this response instead.
    Respond(LocalResponse),
}

/// The outcome of a trailers callback.
#[derive(Debug, Clone, PartialEq)]
pub enum TrailersVerdict {
    /// Send these bytes first, then the trailers (possibly changed in place). The bytes are the
    /// body the filters still held when the trailers came (Envoy passes a buffered body on
    /// when the filter holding it lets its trailers continue); usually empty.
    Continue(Bytes),
    /// Answer with this response instead.
    Respond(LocalResponse),
}

/// The outcome of a body callback.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyVerdict {
    /// Send these bytes on (the chunk, or what was buffered, possibly changed by a filter).
    Forward(Bytes),
    /// A filter buffers: the runtime holds the bytes; send nothing yet.
    Hold,
    /// Answer with this response instead.
    Respond(LocalResponse),
}
