//! The request path: one [`Proxy`] per configuration generation (swapped whole on reload).
//! A request is checked (framing, limits), passed through the filter chain, routed (routing
//! header → sticky member, else the balancer), sent with failover, and its response streamed
//! back through the chain.

pub mod body;
mod failover;
pub mod filter;
pub mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::access_log;
use crate::balancer::health::{self, CheckSettings};
use crate::balancer::{Balancer, Ejection, Member};
use crate::callout::Callouts;
use crate::config::{Scheme, Settings};
use crate::metrics::Metrics;
use crate::upstream::http::HttpUpstream;
use crate::upstream::{
    Body, BoxError, RequestBody, StreamingBody, TlsInfo, Upstream, UpstreamSpec, ajp_constructor,
    full_body,
};
use body::{Direction, IdleTimeout, Keep, Limited, SharedStream};
use filter::{
    ChainBuilder, ChainContext, FilterChain, HeadersVerdict, LocalResponse, StreamInfo,
    UpstreamInfo,
};
use headers::ForwardedSettings;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// The client connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Client address.
    pub remote: SocketAddr,
    /// Listener address.
    pub local: SocketAddr,
    /// TLS facts.
    pub tls: Option<TlsInfo>,
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
    /// Process metrics.
    pub metrics: Metrics,
    /// Callout upstreams (shared with the filter chain).
    pub callouts: Arc<Callouts>,
    routing_header: HeaderName,
    forwarded: ForwardedSettings,
}

fn idempotent(m: &Method) -> bool {
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

fn from_local(lr: LocalResponse) -> Response<Body> {
    let mut r = Response::new(full_body(lr.body));
    *r.status_mut() = lr.status;
    for (k, v) in lr.headers {
        r.headers_mut().append(k, v);
    }
    r
}

/// Ends the filter stream when the response body is done (or dropped).
struct Finish(Option<SharedStream>);

impl Drop for Finish {
    fn drop(&mut self) {
        let Some(s) = self.0.take() else { return };
        // Usually uncontended (the pumps are done): finish right here.
        if let Ok(mut guard) = s.try_lock() {
            if let Some(stream) = guard.take() {
                stream.finish();
            }
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(stream) = s.lock().await.take() {
                    stream.finish();
                }
            });
        }
    }
}

/// What the access log needs about how a request went.
#[derive(Default)]
struct Outcome {
    member: Option<Arc<Member>>,
    route: Option<String>,
    upstream_time: Option<Duration>,
}

impl Proxy {
    /// Builds a generation: upstreams, balancer (starting its health checks: needs a tokio
    /// runtime), filter chain.
    pub fn build(
        settings: Settings,
        metrics: Metrics,
        chain_builder: &ChainBuilder,
    ) -> Result<Arc<Self>, String> {
        let b = &settings.config.balancer;
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
        let callouts = Arc::new(Callouts::new(settings.callouts.clone()));
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
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
        Ok(Arc::new(Self {
            settings,
            balancer,
            chain,
            metrics,
            callouts,
            routing_header,
            forwarded,
        }))
    }

    /// Handles one request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>, conn: Arc<ConnInfo>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let method = parts.method.clone();
        let version = parts.version;
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let log_headers = self
            .settings
            .config
            .access_log
            .enabled
            .then(|| parts.headers.clone());
        let mut outcome = Outcome::default();
        let res = self.proxy(parts, body, &conn, &mut outcome).await;
        let member_label = outcome.member.as_ref().map_or("-", |m| m.route.as_str());
        self.metrics
            .requests
            .with_label_values(&[member_label, res.status().as_str()])
            .inc();
        if let Some(h) = log_headers {
            let al = &self.settings.config.access_log;
            let sid = access_log::session_id(
                &h,
                &target,
                &al.session_cookies,
                &al.session_path_parameter,
            )
            .map(access_log::hash_id);
            let entry = access_log::Entry {
                remote: conn.remote.ip(),
                method: method.as_str(),
                target: &target,
                version: headers::version_str(version),
                status: res.status().as_u16(),
                bytes: headers::content_length(res.headers())
                    .or_else(|| http_body::Body::size_hint(res.body()).exact()),
                headers: &h,
                member: outcome.member.as_ref().map(|m| m.route.as_str()),
                route: outcome.route.as_deref(),
                upstream_time: outcome.upstream_time,
            };
            log::info!(target: "keel::access", "{}", access_log::format(&entry, sid.as_deref()));
        }
        res
    }

    async fn proxy<B>(
        &self,
        mut parts: http::request::Parts,
        body: B,
        conn: &ConnInfo,
        outcome: &mut Outcome,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let cfg = &self.settings.config;
        let lim = &cfg.limits;
        if conn.ambiguous_framing.load(Ordering::Acquire) {
            return local(
                StatusCode::BAD_REQUEST,
                "Content-Length together with Transfer-Encoding",
            );
        }
        if let Err((status, why)) =
            headers::check_request(&parts.headers, lim.max_headers, lim.max_header_bytes)
        {
            return local(status, why);
        }
        let length = headers::content_length(&parts.headers);
        if length.is_some_and(|n| n > lim.max_body_bytes) {
            return local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        let no_body = body.is_end_stream() || length == Some(0);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        if !parts.headers.contains_key(header::HOST)
            && let Some(v) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
        {
            parts.headers.insert(header::HOST, v);
        }

        // The filter chain, request headers.
        let stream: Option<SharedStream> = if self.chain.is_empty() {
            None
        } else {
            let mut s = self.chain.stream(StreamInfo {
                source: conn.remote,
                destination: conn.local,
                tls: conn.tls.is_some(),
                protocol: parts.version,
                request_id: REQUEST_IDS.fetch_add(1, Ordering::Relaxed),
                route_name: "default".into(),
                cluster_name: "balancer".into(),
            });
            if let HeadersVerdict::Respond(lr) = s.request_headers(&mut parts, no_body).await {
                s.finish();
                return from_local(lr);
            }
            Some(Arc::new(tokio::sync::Mutex::new(Some(s))))
        };
        let finish = Finish(stream.clone());

        // Routing, then the headers the member sees.
        let sticky = parts
            .headers
            .remove(&self.routing_header)
            .and_then(|v| v.to_str().ok().map(str::to_string));
        outcome.route = sticky.clone();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::add_forwarded(
            &mut parts.headers,
            self.forwarded,
            conn.remote,
            conn.tls.is_some(),
            host.as_deref(),
        );
        if let Some(pq) = parts.uri.path_and_query().cloned() {
            parts.uri = http::Uri::from(pq);
        }

        // The body: empty, held whole (idempotent and small: replayable), or streaming.
        let exceeded = Arc::new(AtomicBool::new(false));
        let local_slot = Arc::new(std::sync::Mutex::new(None::<LocalResponse>));
        let body_idle = cfg.balancer.timeouts.body_idle.0;
        let mut client_body: Body = IdleTimeout::new(
            Limited::new(body, lim.max_body_bytes, exceeded.clone()).boxed_unsync(),
            body_idle,
        )
        .boxed_unsync();
        if let Some(s) = &stream
            && !no_body
        {
            client_body = body::pump(
                client_body,
                s.clone(),
                Direction::Request,
                local_slot.clone(),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        let replay_limit = cfg.balancer.retry.max_replay_body;
        let req_body = if no_body {
            RequestBody::Empty
        } else if idempotent(&parts.method)
            && stream.is_none()
            && length.is_some_and(|n| n <= replay_limit)
        {
            match client_body.collect().await {
                Ok(c) => RequestBody::Whole(c.to_bytes()),
                Err(_) if exceeded.load(Ordering::Acquire) => {
                    return local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                }
                Err(e) => {
                    log::debug!("client body failed: {e}");
                    return local(StatusCode::BAD_REQUEST, "request body incomplete");
                }
            }
        } else {
            RequestBody::Streaming {
                body: StreamingBody::new(client_body),
                length: if stream.is_some() { None } else { length },
            }
        };

        let total = cfg.balancer.timeouts.total.0;
        let attempt = self.attempts(&parts, req_body, conn, sticky.as_deref(), outcome);
        let result = match tokio::time::timeout(total, attempt).await {
            Ok(r) => r,
            Err(_) => Err(local(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")),
        };
        if let Some(lr) = local_slot.lock().ok().and_then(|mut s| s.take()) {
            return from_local(lr);
        }
        if exceeded.load(Ordering::Acquire) {
            return local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        let (res, guard) = match result {
            Ok(ok) => ok,
            Err(res) => return res,
        };

        // The response.
        let member = guard.member().clone();
        let (mut rparts, rbody) = res.into_parts();
        let mut rbody = IdleTimeout::new(rbody, body_idle).boxed_unsync();
        headers::remove_hop_by_hop(&mut rparts.headers);
        if let Some(s) = &stream {
            let info = UpstreamInfo {
                address: member.address,
                route: member.route.clone(),
            };
            let eos = http_body::Body::is_end_stream(&rbody);
            let verdict = match s.lock().await.as_mut() {
                Some(st) => st.response_headers(&mut rparts, Some(&info), eos).await,
                None => HeadersVerdict::Continue,
            };
            if let HeadersVerdict::Respond(lr) = verdict {
                return from_local(lr);
            }
            if !eos {
                rbody = body::pump(rbody, s.clone(), Direction::Response, local_slot.clone());
                rparts.headers.remove(header::CONTENT_LENGTH);
            }
        }
        let body = Keep::new(rbody, (guard, finish)).boxed_unsync();
        Response::from_parts(rparts, body)
    }
}
