//! The upstream interface: what a balancer member is, seen from the proxy.
//!
//! One `Arc<dyn Upstream>` per member. The HTTP upstream ([`http`]) and the AJP upstream
//! (`ajp`, an adapter over crate `keel-ajp`) implement it. The shape serves failover:
//!
//! * a request body is empty, whole (replayable: the proxy keeps a copy) or streaming (taken at
//!   most once through a [`StreamingBody`] slot: an attempt that fails before it took the body
//!   leaves it to the next attempt);
//! * an [`UpstreamError`] says whether the request was sent (retry-safety), whether it counts
//!   against the member's health (client errors never do) and which status the client gets.

pub mod ajp;
pub mod http;
mod pool;
mod write_deadline;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::recycled::Recycled;

/// A boxed, sendable future (the trait is stored as `Arc<dyn Upstream>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An attempt on its way ([`Upstream::send`]): a future made for every request, in a
/// recycled block ([`crate::recycled`]; about 2 KB).
pub type Sending = Recycled<Result<UpstreamResponse, UpstreamError>>;

/// The error type carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body of `Bytes` frames, streamed (request bodies from the client, response bodies from a
/// member).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A streaming response from a member, with the member connection it came on: its local end
/// and how long the request waited for it (Envoy's `upstream.local_address`,
/// `upstream.cx_pool_ready_duration`). Beside the response rather than in its extensions,
/// which would cost three allocations per response.
pub struct UpstreamResponse {
    /// Status, headers and the streaming body.
    pub response: ::http::Response<Body>,
    /// The connection it came on.
    pub connection: crate::proxy::filter::UpstreamConnection,
}

/// An empty [`Body`].
pub fn empty_body() -> Body {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A [`Body`] of one chunk.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A client body that can be taken at most once. Clones share the slot, so the proxy keeps a
/// handle and learns whether a failed attempt consumed the body (then it cannot be replayed).
/// An upstream takes it only when it is about to write it (after the connection is up).
#[derive(Clone)]
pub struct StreamingBody {
    slot: Arc<Mutex<Option<Body>>>,
}

impl StreamingBody {
    /// Wraps a body.
    pub fn new(body: Body) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    /// Takes the body; `None` if an earlier attempt took it.
    pub fn take(&self) -> Option<Body> {
        self.slot.lock().map(|mut s| s.take()).unwrap_or(None)
    }

    /// Whether an attempt took the body (so it is no longer replayable).
    pub fn is_taken(&self) -> bool {
        self.slot.lock().map(|s| s.is_none()).unwrap_or(true)
    }
}

impl fmt::Debug for StreamingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingBody")
            .field("taken", &self.is_taken())
            .finish()
    }
}

/// A request body as the proxy hands it to an upstream.
#[derive(Debug, Clone)]
pub enum RequestBody {
    /// No body (no Content-Length, or Content-Length: 0, and no chunked encoding).
    Empty,
    /// The whole body, held by the proxy (replayable on another member).
    Whole(Bytes),
    /// A body still streaming from the client (not replayable once taken).
    Streaming {
        /// The take-once slot.
        body: StreamingBody,
        /// The length the client announced, if any (Content-Length).
        length: Option<u64>,
    },
}

/// TLS facts about the client connection (for AJP's is_ssl, ssl_cipher, ssl_key_size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub protocol: String,
    /// Cipher suite name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// Symmetric key size in bits.
    pub key_size: u16,
}

/// Who the client is and where it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The listener address the client connected to.
    pub local: SocketAddr,
    /// TLS facts, when the client connection is TLS.
    pub tls: Option<TlsInfo>,
}

/// One attempt's request. `parts` already has hop-by-hop headers removed, the routing header
/// removed, and the X-Forwarded-*/Forwarded headers the configuration asks for added. Its URI
/// is origin-form (path and query); the `Host` header holds the client's authority.
#[derive(Debug)]
pub struct UpstreamRequest {
    /// Method, URI, version, headers.
    pub parts: ::http::request::Parts,
    /// The body.
    pub body: RequestBody,
    /// The client connection.
    pub client: ClientInfo,
}

/// Why an attempt failed. Every variant knows [`sent`](Self::was_sent),
/// [`counts against the member`](Self::counts_against_member) and
/// [`the client's status`](Self::client_status).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect (refused, unreachable, reset during connect, CPING failed before the
    /// request). Nothing sent; counts; 502.
    #[error("connect failed: {0}")]
    Connect(String),
    /// Connect (or CPING before the request) did not finish in time. Nothing sent; counts; 504.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// A pooled connection turned out closed before the request was written. Nothing sent;
    /// does not count (an idle close is normal); 502.
    #[error("stale pooled connection: {0}")]
    Stale(String),
    /// keel's own connection limit for the member is reached (no connection freed in time).
    /// Nothing sent; does not count (the member did nothing wrong); 503.
    #[error("member busy: {0}")]
    Busy(String),
    /// Writing the request failed after some of it went out. Sent; counts; 502.
    #[error("sending the request failed: {0}")]
    Send(String),
    /// A pooled connection was closed after the request was written, before any answer: an
    /// idle close racing the request, or a member that died on it. Sent (only an idempotent
    /// request may go to another member); does not count (the next attempt or check tells);
    /// 502.
    #[error("pooled connection closed before any answer: {0}")]
    Unanswered(String),
    /// No response head within the response timeout. Sent; counts; 504.
    #[error("no response within {0:?}")]
    ResponseTimeout(Duration),
    /// The member broke the protocol or closed the connection before a complete response head.
    /// Sent; counts; 502.
    #[error("bad response from member: {0}")]
    Response(String),
    /// The client's body failed (client hung up, bad chunked framing) while being forwarded.
    /// Sent; never counts; 400.
    #[error("client body failed: {0}")]
    ClientBody(String),
    /// The request cannot be encoded for this upstream (e.g. headers exceed the AJP packet).
    /// Nothing sent; never counts; `status` (431, 414 or 400).
    #[error("request not encodable: {reason}")]
    Unencodable {
        /// What did not fit.
        reason: String,
        /// The client's status.
        status: ::http::StatusCode,
    },
    /// The member's response head cannot be passed on (valid framing, invalid content, e.g.
    /// AJP response headers larger than the packet): the application's answer, the same on
    /// every member. Sent; does not count; no failover; 502.
    #[error("unreadable response head: {0}")]
    BadHead(String),
}

impl UpstreamError {
    /// Whether any of the request may have reached the member (then only idempotent requests
    /// with a replayable body may go to another member).
    pub fn was_sent(&self) -> bool {
        match self {
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Stale(_) | Self::Busy(_) => false,
            Self::Unencodable { .. } => false,
            Self::Send(_)
            | Self::Unanswered(_)
            | Self::ResponseTimeout(_)
            | Self::Response(_)
            | Self::BadHead(_)
            | Self::ClientBody(_) => true,
        }
    }

    /// Whether this failure puts the member in error (passive health). Client errors never do.
    pub fn counts_against_member(&self) -> bool {
        match self {
            Self::Connect(_)
            | Self::ConnectTimeout(_)
            | Self::Send(_)
            | Self::ResponseTimeout(_)
            | Self::Response(_) => true,
            Self::Stale(_)
            | Self::Unanswered(_)
            | Self::Busy(_)
            | Self::BadHead(_)
            | Self::ClientBody(_)
            | Self::Unencodable { .. } => false,
        }
    }

    /// Whether any member would fail the same way: no failover.
    pub fn is_deterministic(&self) -> bool {
        self.is_client_error() || matches!(self, Self::BadHead(_))
    }

    /// Whether this is the client's fault (no failover: another member would fail too).
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::ClientBody(_) | Self::Unencodable { .. })
    }

    /// Why the client got [`client_status`](Self::client_status), as Envoy's router names it
    /// (`envoy/stream_info/stream_info.h` `ResponseCodeDetailValues`; an early reset carries
    /// `Http::Utility::resetReasonToString` in braces, `source/common/router/router.cc`
    /// `onUpstreamReset`); none for the client's own errors, which Envoy's router never sees.
    pub fn code_details(&self) -> Option<&'static str> {
        Some(match self {
            Self::Connect(_) => "upstream_reset_before_response_started{remote_connection_failure}",
            Self::ConnectTimeout(_) => "upstream_reset_before_response_started{connection_timeout}",
            Self::Stale(_) | Self::Send(_) | Self::Unanswered(_) | Self::Response(_) => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            Self::Busy(_) => "upstream_reset_before_response_started{overflow}",
            Self::BadHead(_) => "upstream_reset_before_response_started{protocol_error}",
            Self::ResponseTimeout(_) => "upstream_per_try_timeout",
            Self::ClientBody(_) | Self::Unencodable { .. } => return None,
        })
    }

    /// The status the client gets when this is the last attempt.
    pub fn client_status(&self) -> ::http::StatusCode {
        use ::http::StatusCode as S;
        match self {
            Self::ConnectTimeout(_) | Self::ResponseTimeout(_) => S::GATEWAY_TIMEOUT,
            Self::Connect(_)
            | Self::Stale(_)
            | Self::Send(_)
            | Self::Unanswered(_)
            | Self::BadHead(_)
            | Self::Response(_) => S::BAD_GATEWAY,
            Self::Busy(_) => S::SERVICE_UNAVAILABLE,
            Self::ClientBody(_) => S::BAD_REQUEST,
            Self::Unencodable { status, .. } => *status,
        }
    }
}

/// A member's transport.
pub trait Upstream: Send + Sync + 'static {
    /// Sends one attempt and resolves to the response head (body streaming). The upstream
    /// applies its own connect and response-header timeouts.
    fn send(&self, request: UpstreamRequest) -> Sending;

    /// One active health check: HTTP `GET <path>` expecting a non-5xx status, or AJP
    /// CPING/CPONG. `Ok` means healthy.
    fn health_check(&self, timeout: Duration) -> BoxFuture<'static, Result<(), UpstreamError>>;

    /// The transport's own counters (its connection pool's), exported on `/metrics` with the
    /// member's route as the label. None by default.
    fn counters(&self) -> Vec<TransportCounter> {
        Vec::new()
    }
}

/// One counter of a member's transport, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCounter {
    /// The metric name (`keel_ajp_connects_total`).
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// The value now.
    pub value: u64,
}

/// Settings for AJP members (from the `balancer.ajp` configuration section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AjpSettings {
    /// The connector's `secret` (from `balancer.ajp.secret_file`).
    pub secret: Option<String>,
    /// `false` only when the configuration says explicitly that the connector has no secret
    /// (`balancer.ajp.secret_required: false`, Tomcat `secretRequired="false"`).
    pub secret_required: bool,
    /// Packet size (8192..=65536), equal to Tomcat's `packetSize`.
    pub packet_size: usize,
    /// When connections are checked with CPING before a request.
    pub ping: keel_ajp::client::Ping,
    /// The most header fields a forward request carries (Tomcat's `maxHeaderCount`).
    pub max_headers: usize,
    /// At most this many connections per member (`None`: no limit).
    pub max_connections: Option<usize>,
    /// How long a CPONG may take.
    pub ping_timeout: Duration,
}

/// Everything needed to build one member's upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The member's route (jvmRoute).
    pub route: String,
    /// The member's address (resolved from the URL at configuration time).
    pub address: SocketAddr,
    /// `host:port` as written in the URL (for the HTTP upstream's absolute URI).
    pub authority: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time from request sent to response head.
    pub response_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// At most this many idle pooled connections per member.
    pub pool_max_idle: usize,
    /// The path for active HTTP health checks (unused by AJP).
    pub health_path: String,
    /// AJP settings (used by AJP only).
    pub ajp: AjpSettings,
    /// The number of workers (a connection pool each, see [`crate::worker`]).
    pub workers: usize,
}

/// Builds an AJP upstream ([`ajp::build`]). A build without AJP would return `None` from
/// [`ajp_constructor`], and configuration with an `ajp://` member would fail with "ajp upstream
/// not available".
pub type AjpConstructor = fn(&UpstreamSpec) -> Result<Arc<dyn Upstream>, String>;

/// The AJP constructor, if the AJP upstream is built in.
pub fn ajp_constructor() -> Option<AjpConstructor> {
    Some(ajp::build)
}
