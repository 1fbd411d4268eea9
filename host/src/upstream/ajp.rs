//! The AJP upstream: an adapter from keel's [`Upstream`] to `keel-ajp`'s client (one pool per
//! member and worker). It maps the proxy's request and client facts to AJP, converts the bodies, and maps
//! every client error to the [`UpstreamError`] variant with the same retry-safety and health
//! meaning. A member without a configured secret is refused at startup.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use keel_ajp::client::{
    AjpClient, AjpRequest, BodySource, BodyStream, ClientConfig, ClientError, Peer, PoolConfig,
    RequestBody as AjpBody, Secret, StatsSnapshot,
};
use keel_ajp::{PacketSize, TlsAttributes};

use crate::recycled::Recycled;
use crate::worker::PerWorker;

use super::{
    BoxError, BoxFuture, RequestBody, Sending, TransportCounter, Upstream, UpstreamError,
    UpstreamRequest, UpstreamResponse, UpstreamSpec,
};

/// The message when no secret is configured.
pub const NO_SECRET: &str = "no AJP secret configured: write the Tomcat AJP connector's \
    `secret` (server.xml: <Connector protocol=\"AJP/1.3\" secretRequired=\"true\" \
    secret=\"...\"/>) into a file and set `balancer.ajp.secret_file` to it";

/// Builds an AJP member (the [`super::AjpConstructor`]).
pub fn build(spec: &UpstreamSpec) -> Result<Arc<dyn Upstream>, String> {
    Ok(Arc::new(AjpUpstream::new(spec)?))
}

/// An AJP member: a client (and its pool) per worker, or one shared by all when
/// `max_connections` limits the member's connections (the limit is then exact: an idle
/// connection in one worker's pool never keeps another worker waiting).
pub struct AjpUpstream {
    clients: PerWorker<AjpClient>,
    route: Arc<str>,
}

impl AjpUpstream {
    /// The member's client and pool (no connection is opened yet).
    pub fn new(spec: &UpstreamSpec) -> Result<Self, String> {
        let secret = match &spec.ajp.secret {
            Some(s) => Secret::Value(s.clone()),
            None if !spec.ajp.secret_required => Secret::ExplicitlyNone,
            None => return Err(NO_SECRET.to_owned()),
        };
        let mut config = ClientConfig::new(secret);
        config.packet_size = PacketSize::new(spec.ajp.packet_size).map_err(|e| e.to_string())?;
        config.connect_timeout = spec.connect_timeout;
        config.response_timeout = spec.response_timeout;
        config.pool = PoolConfig {
            max_connections: spec.ajp.max_connections,
            wait_timeout: spec.connect_timeout,
            max_idle: spec.pool_max_idle,
            idle_timeout: spec.pool_idle_timeout,
            // CPING a connection before reusing it once it idled for a fifth of the idle
            // timeout (at most 5 s): cheap, and it catches a Tomcat restarted meanwhile.
            cping_after_idle: (spec.pool_idle_timeout / 5).min(Duration::from_secs(5)),
            cping_timeout: spec.ajp.ping_timeout,
            ping: spec.ajp.ping,
        };
        config.max_headers = spec.ajp.max_headers;
        let workers = if spec.ajp.max_connections.is_some() {
            0
        } else {
            spec.workers
        };
        let clients = PerWorker::try_new(workers, || AjpClient::new(spec.address, config.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            clients,
            route: spec.route.as_str().into(),
        })
    }
}

fn body(body: RequestBody) -> AjpBody {
    match body {
        RequestBody::Empty => AjpBody::Empty,
        RequestBody::Whole(b) => AjpBody::Full(b),
        RequestBody::Streaming { body, length } => AjpBody::Stream {
            // Taken only when the connection is up (and CPING passed): an attempt that fails
            // before leaves the body to the next member.
            source: BodySource::deferred(move || body.take().map(|b| Box::pin(b) as BodyStream)),
            length,
        },
    }
}

/// The proxy's error for a client error, same meaning (sent? counts? status?).
fn map_error(e: ClientError) -> UpstreamError {
    let m = e.to_string();
    match e {
        ClientError::Connect(_) | ClientError::Cping(_) => UpstreamError::Connect(m),
        ClientError::PoolTimeout(_) => UpstreamError::Busy(m),
        ClientError::ConnectTimeout(d) | ClientError::CpingTimeout(d) => {
            UpstreamError::ConnectTimeout(d)
        }
        ClientError::BadHead(_) => UpstreamError::BadHead(m),
        ClientError::Stale(_) | ClientError::BodyUnavailable => UpstreamError::Stale(m),
        ClientError::Unencodable(_) | ClientError::Framing(_) => UpstreamError::Unencodable {
            status: e.client_status(),
            reason: m,
        },
        ClientError::Write(_) => UpstreamError::Send(m),
        ClientError::ResponseTimeout(d) => UpstreamError::ResponseTimeout(d),
        ClientError::ClientBody(_) => UpstreamError::ClientBody(m),
        ClientError::Unanswered(_) => UpstreamError::Unanswered(m),
        ClientError::Read(_)
        | ClientError::Truncated
        | ClientError::Protocol(_)
        | ClientError::Aborted => UpstreamError::Response(m),
    }
}

impl Upstream for AjpUpstream {
    fn send(&self, request: UpstreamRequest) -> Sending {
        let client = self.clients.get().clone();
        let peer = Peer {
            remote: request.client.remote,
            local: request.client.local,
            tls: request.client.tls.map(|t| TlsAttributes {
                cipher: Some(t.cipher),
                session: None,
                // Sent only when known, as httpd does.
                key_size: (t.key_size > 0).then_some(t.key_size),
                cert: None,
                protocol: Some(t.protocol),
            }),
        };
        let mut parts = request.parts;
        // AJP has no upgrades: the member answers the request as a plain one.
        parts.headers.remove(http::header::UPGRADE);
        parts.headers.remove(http::header::CONNECTION);
        // The client may send it once more on a new connection when a pooled one closes
        // before any answer: only what the proxy may replay anyway.
        let retry_unanswered = crate::proxy::idempotent(&parts.method)
            && !matches!(request.body, RequestBody::Streaming { .. });
        let req = AjpRequest {
            parts,
            body: body(request.body),
            peer,
            route: Some(self.route.clone()),
            retry_unanswered,
        };
        Recycled::new(async move {
            let res = client.send(req).await.map_err(map_error)?;
            let (parts, body) = res.into_parts();
            let connected = body.connected();
            let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
            Ok(UpstreamResponse {
                response: http::Response::from_parts(parts, body),
                connection: crate::proxy::filter::UpstreamConnection {
                    local: connected.local,
                    pool_wait: connected.pool_wait,
                },
            })
        })
    }

    fn health_check(&self, timeout: Duration) -> BoxFuture<'static, Result<(), UpstreamError>> {
        let client = self.clients.get().clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, client.cping()).await {
                Ok(r) => r.map_err(map_error),
                Err(_) => Err(UpstreamError::ConnectTimeout(timeout)),
            }
        })
    }

    fn counters(&self) -> Vec<TransportCounter> {
        let s = self
            .clients
            .iter()
            .map(AjpClient::stats)
            .fold(StatsSnapshot::default(), |a, b| a + b);
        let c = |name, help, value| TransportCounter { name, help, value };
        vec![
            c(
                "keel_ajp_connects_total",
                "New AJP connections.",
                s.connects,
            ),
            c(
                "keel_ajp_reused_total",
                "Requests on a pooled AJP connection.",
                s.reused,
            ),
            c(
                "keel_ajp_cpings_total",
                "CPINGs sent (pool and health checks).",
                s.cpings,
            ),
            c(
                "keel_ajp_cping_failures_total",
                "CPINGs without a CPONG.",
                s.cping_failures,
            ),
            c(
                "keel_ajp_idle_closed_total",
                "Idle AJP connections closed by keel after the idle timeout.",
                s.idle_closed,
            ),
            c(
                "keel_ajp_stale_dropped_total",
                "Pooled AJP connections found closed by the member.",
                s.stale_dropped,
            ),
            c(
                "keel_ajp_protocol_errors_total",
                "AJP protocol violations by the member (connection closed).",
                s.protocol_errors,
            ),
            c(
                "keel_ajp_secret_rejections_total",
                "403 answers that look like an AJP secret mismatch.",
                s.secret_rejections,
            ),
            c(
                "keel_ajp_closed_after_response_total",
                "AJP exchanges after which the connection was closed, not pooled.",
                s.closed_after_response,
            ),
        ]
    }
}
