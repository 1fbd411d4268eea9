//! The request path: one [`Proxy`] per configuration generation (swapped whole on reload),
//! built from the settings, and its request handler with the access log and request metrics.
//! A request is checked (framing, limits), passed through the filter chain, routed (routing
//! header → sticky member, else the balancer), sent with failover, and its response streamed
//! back through the chain: [`exchange`] and [`failover`].

pub mod body;
mod exchange;
mod failover;
pub mod filter;
pub mod filtered;
pub mod headers;
mod request_id;
mod series;
pub mod upgrade;
pub mod wasm;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::access_log;
use crate::balancer::health::{self, CheckSettings};
use crate::balancer::{Balancer, Ejection, Member};
use crate::callout::{Callouts, LocalStore};
use crate::config::{Scheme, Settings};
use crate::metrics::Metrics;
use crate::upstream::http::HttpUpstream;
use crate::upstream::{
    Body, BoxError, TlsInfo, Upstream, UpstreamSpec, ajp_constructor, full_body,
};
use exchange::Outcome;
use filter::{Bodies, ChainBuilder, ChainContext, CodeDetails, FilterChain, LocalResponse};
use headers::ForwardedSettings;

/// The client connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The connection's number in this process (property `connection.id` for filters).
    pub id: u64,
    /// Client address.
    pub remote: SocketAddr,
    /// The client's IP as X-Forwarded-For names it ([`headers::ip_value`] of `remote`).
    pub remote_ip: Option<HeaderValue>,
    /// Listener address.
    pub local: SocketAddr,
    /// TLS facts.
    pub tls: Option<TlsInfo>,
    /// The TLS session as filters read it (made once per connection).
    pub downstream_tls: Option<Arc<keel_wasm::DownstreamTls>>,
    /// Set when an HTTP/1 request head on this connection had both Content-Length and
    /// Transfer-Encoding (hyper hides this; see `server::framing`).
    pub ambiguous_framing: Arc<AtomicBool>,
}

/// One configuration generation: settings, members, filter chain.
pub struct Proxy {
    /// The validated configuration.
    pub settings: Settings,
    /// The members.
    pub balancer: Arc<Balancer>,
    /// The filter chain.
    pub chain: Arc<dyn FilterChain>,
    /// The bodies that go through it (asked once, not per request).
    bodies: Bodies,
    /// Process metrics.
    pub metrics: Metrics,
    /// Callout upstreams (shared with the filter chain).
    pub callouts: Arc<Callouts>,
    /// Where access-log lines go (a file is opened again by each generation).
    access_log: access_log::Sink,
    routing_header: HeaderName,
    forwarded: ForwardedSettings,
    /// The request metrics' series of the members.
    series: series::Series,
}

pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A plain-text response from keel itself.
pub fn local(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full_body(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// [`local`], with Envoy's response code details for the filters' `response.code_details`.
pub(crate) fn local_because(
    status: StatusCode,
    text: &str,
    details: Option<&'static str>,
) -> Response<Body> {
    let mut r = local(status, text);
    if let Some(details) = details {
        r.extensions_mut().insert(CodeDetails(details));
    }
    r
}

fn from_local(lr: LocalResponse) -> Response<Body> {
    let mut r = Response::new(full_body(lr.body));
    *r.status_mut() = lr.status;
    for (k, v) in lr.headers {
        r.headers_mut().append(k, v);
    }
    r
}

impl Proxy {
    /// Builds a generation: upstreams, balancer (starting its health checks: needs a tokio
    /// runtime), filter chain.
    pub fn build(
        settings: Settings,
        metrics: Metrics,
        chain_builder: &ChainBuilder,
        store: Option<LocalStore>,
    ) -> Result<Arc<Self>, String> {
        let b = &settings.config.balancer;
        // Each member gets a connection pool per worker, and the chain an instance per worker.
        let workers = crate::worker::count(settings.config.workers);
        let mut members = Vec::new();
        for m in &settings.members {
            let spec = UpstreamSpec {
                route: m.route.clone(),
                address: m.address,
                authority: m.authority.clone(),
                connect_timeout: b.timeouts.connect.0,
                response_timeout: b.timeouts.response_header.0,
                pool_idle_timeout: b.pool.idle_timeout.0,
                pool_max_idle: b.pool.max_idle,
                health_path: b.health.path.clone(),
                ajp: settings.ajp.clone(),
                workers,
            };
            let upstream: Arc<dyn Upstream> = match m.scheme {
                Scheme::Http => Arc::new(HttpUpstream::new(&spec)),
                Scheme::Ajp => {
                    let ctor = ajp_constructor().ok_or("ajp upstream not available")?;
                    ctor(&spec).map_err(|e| format!("member {}: {e}", m.route))?
                }
            };
            members.push(Arc::new(Member::new(
                m.route.clone(),
                m.url.clone(),
                m.address,
                upstream,
                m.weight,
                m.status,
            )));
        }
        let ejection = Ejection {
            interval: b.retry.interval.0,
            backoff: b.retry.backoff,
            max_interval: b.retry.max_interval.0,
        };
        let balancer = Arc::new(Balancer::new(members, b.lbmethod, b.sticky.force, ejection));
        let series = series::Series::new(
            &metrics,
            balancer.members().iter().map(|m| m.route.as_str()),
        );
        // Before anything starts tasks: a file that cannot be opened refuses the generation.
        let al = &settings.config.access_log;
        let access_log = if al.enabled {
            access_log::Sink::open(al.path.as_deref(), &metrics.access_log)?
        } else {
            access_log::Sink::Log
        };
        let callouts = Arc::new(
            Callouts::new(settings.callouts.clone(), store)
                .with_http2(settings.callouts_http2.clone()),
        );
        let chain = chain_builder(&ChainContext {
            filters: &settings.filters,
            registry: &metrics.registry,
            callouts: callouts.clone(),
            workers,
        })?;
        if b.health.enabled {
            health::spawn(
                &balancer,
                CheckSettings {
                    interval: b.health.interval.0,
                    timeout: b.health.timeout.0,
                    passes: b.health.passes,
                    fails: b.health.fails,
                },
            );
        }
        let routing_header = HeaderName::from_bytes(b.sticky.header.as_bytes())
            .map_err(|e| format!("balancer.sticky.header: {e}"))?;
        let f = &settings.config.forwarded;
        let forwarded = ForwardedSettings {
            xff: f.x_forwarded_for,
            proto: f.x_forwarded_proto,
            host: f.x_forwarded_host,
            forwarded: f.forwarded,
        };
        let bodies = chain.bodies();
        Ok(Arc::new(Self {
            settings,
            balancer,
            chain,
            bodies,
            metrics,
            callouts,
            access_log,
            routing_header,
            forwarded,
            series,
        }))
    }

    /// Handles one request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>, conn: Arc<ConnInfo>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let al = &self.settings.config.access_log;
        let seen = al.enabled.then(|| access_log::Seen::new(&parts, al));
        let mut outcome = Outcome::default();
        let res = self.exchange(parts, body, &conn, &mut outcome).await;
        let member = outcome.member.as_ref().map(|m| m.route.as_str());
        self.series.request(
            member.map(|route| (outcome.member_index, route)),
            res.status(),
        );
        if let Some(seen) = &seen {
            let entry = access_log::Entry {
                remote: conn.remote.ip(),
                request: seen,
                status: res.status().as_u16(),
                bytes: headers::content_length(res.headers())
                    .or_else(|| http_body::Body::size_hint(res.body()).exact()),
                member,
                route: outcome.route.as_ref().and_then(|v| v.to_str().ok()),
                upstream_time: outcome.upstream_time,
            };
            self.access_log.write(access_log::format(&entry));
        }
        res
    }
}
