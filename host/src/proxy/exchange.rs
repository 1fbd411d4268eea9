//! One request's exchange: the checks on the request head (framing, limits), the filter
//! chain's request phase, routing (the routing header), the headers the member sees, the
//! request body (empty, held whole when replayable, or streaming), the attempts, and the
//! response on its way back through the chain (a 101 to an upgrade request becomes a tunnel:
//! [`super::upgrade`]). Nothing here allocates for a request that needs nothing (no filters, no
//! body) but its generated `x-request-id` ([`super::request_id`], which
//! `forwarded.generate_request_id: false` turns off).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::body::{IdleTimeout, Keep, Limited};
use super::filter::{BodyVerdict, HeadersVerdict, StreamInfo};
use super::filtered::{Direction, Filtered, SharedStream};
use super::{
    ConnInfo, Proxy, from_local, headers, idempotent, local, local_because, request_id, upgrade,
};
use crate::balancer::{InFlight, Member};
use crate::upstream::{Body, BoxError, RequestBody, StreamingBody};

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// What the access log needs about how a request went.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) member: Option<Arc<Member>>,
    /// The place of `member` in the balancer.
    pub(super) member_index: usize,
    /// The routing header's value (text).
    pub(super) route: Option<HeaderValue>,
    pub(super) upstream_time: Option<Duration>,
    /// Upstream attempts made.
    pub(super) attempts: u32,
    /// When the attempt whose answer goes back began (`response.backend_latency` runs from
    /// there to the end of the member's response).
    pub(super) sent_at: Option<Instant>,
}

fn over_limit(exceeded: Option<&AtomicBool>) -> bool {
    exceeded.is_some_and(|e| e.load(Ordering::Acquire))
}

/// keel's own answer `res` through the response callbacks of the stream's filters (headers
/// with no upstream, then the body at its end); what they make of it. Boxed where it is
/// awaited: a rare path, whose state would otherwise widen every request's future (the
/// service's: 3 568 bytes, 3 376 with the box), which is moved into its box once per request.
async fn through_chain(
    stream: Option<&Arc<SharedStream>>,
    res: Response<Body>,
    attempts: u32,
) -> Response<Body> {
    let Some(s) = stream else { return res };
    let (mut parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut st = s.lock().await;
    let eos = bytes.is_empty();
    st.upstream_attempts(attempts, None, None);
    if let HeadersVerdict::Respond(lr) = st.response_headers(&mut parts, None, eos).await {
        return from_local(lr);
    }
    let bytes = if eos {
        bytes
    } else {
        match st.response_body(bytes, true).await {
            BodyVerdict::Forward(b) => b,
            BodyVerdict::Hold => Bytes::new(),
            BodyVerdict::Respond(lr) => return from_local(lr),
        }
    };
    Response::from_parts(parts, super::full_body(bytes))
}

impl Proxy {
    pub(super) async fn exchange<B>(
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
        let upgrade = upgrade::requested(&mut parts);
        // The client's authority: the Host header, or HTTP/2's :authority.
        let host: Option<HeaderValue> = match parts.headers.get(header::HOST) {
            Some(h) => Some(h.clone()),
            None => {
                let h = parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                if let Some(h) = &h {
                    parts.headers.insert(header::HOST, h.clone());
                }
                h
            }
        };

        // Envoy's connection manager names the request before any filter runs.
        if cfg.forwarded.generate_request_id {
            request_id::ensure(&mut parts.headers);
        }

        // The filter chain, request headers.
        // Shared by the exchange and the filtered bodies; the stream finishes when the response
        // and every filtered body are done.
        let stream: Option<Arc<SharedStream>> = if self.chain.is_empty() {
            None
        } else {
            let mut s = self.chain.stream(StreamInfo {
                source: conn.remote,
                destination: conn.local,
                tls: conn.tls.is_some(),
                protocol: parts.version,
                request_id: REQUEST_IDS.fetch_add(1, Ordering::Relaxed),
                connection_id: conn.id,
                route_name: "default".into(),
                cluster_name: "balancer".into(),
                endpoints: u32::try_from(self.balancer.members().len()).unwrap_or(u32::MAX),
                downstream_tls: conn.downstream_tls.clone(),
            });
            if let HeadersVerdict::Respond(lr) = s.request_headers(&mut parts, no_body).await {
                s.finish();
                return from_local(lr);
            }
            Some(SharedStream::new(s))
        };

        // Routing, then the headers the member sees.
        // Kept as the header value (no copy): a route is text.
        let sticky = parts
            .headers
            .remove(&self.routing_header)
            .filter(|v| v.to_str().is_ok());
        headers::remove_hop_by_hop(&mut parts.headers);
        if let Some(up) = &upgrade {
            up.forward(&mut parts.headers);
        }
        headers::add_forwarded(
            &mut parts.headers,
            self.forwarded,
            conn.remote,
            conn.remote_ip.as_ref(),
            conn.tls.is_some(),
            host.as_ref(),
        );
        // The limit holds for what the member gets, keel's own headers included (Tomcat
        // answers 500 and closes beyond its maxHeaderCount).
        if parts.headers.len() > lim.max_headers {
            return local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers with the forwarding headers",
            );
        }
        if parts.uri.scheme().is_some()
            && let Some(pq) = parts.uri.path_and_query().cloned()
        {
            parts.uri = http::Uri::from(pq);
        }

        // The body: empty, held whole (idempotent and small: replayable), or streaming.
        let body_idle = cfg.balancer.timeouts.body_idle.0;
        // Set by the body's limit (no body, nothing to set: no allocation).
        let mut exceeded = None;
        let req_body = if no_body {
            RequestBody::Empty
        } else {
            let flag = Arc::new(AtomicBool::new(false));
            exceeded = Some(flag.clone());
            let mut client_body: Body = IdleTimeout::new(
                Limited::new(body, lim.max_body_bytes, flag).boxed_unsync(),
                body_idle,
            )
            .boxed_unsync();
            // Content-Length stays as the filters left it (as in Envoy): a filter that
            // changes the body's length removes or fixes the header itself.
            let length = if stream.is_some() {
                headers::content_length(&parts.headers)
            } else {
                length
            };
            // Through the chain only when a filter takes part in the request body.
            let filtered = stream.as_ref().filter(|_| self.bodies.request);
            if let Some(s) = filtered {
                client_body = Filtered::new(client_body, s.clone(), Direction::Request, length)
                    .boxed_unsync();
            }
            let replay_limit = cfg.balancer.retry.max_replay_body;
            if idempotent(&parts.method)
                && filtered.is_none()
                && length.is_some_and(|n| n <= replay_limit)
            {
                match client_body.collect().await {
                    Ok(c) => RequestBody::Whole(c.to_bytes()),
                    Err(_) if over_limit(exceeded.as_deref()) => {
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
                    length,
                }
            }
        };

        let total = cfg.balancer.timeouts.total.0;
        let route = sticky.as_ref().and_then(|v| v.to_str().ok());
        let attempt = self.attempts(&parts, req_body, conn, route, outcome);
        let result = match tokio::time::timeout(total, attempt).await {
            Ok(r) => r,
            // Envoy's route timeout (`ResponseCodeDetailValues` `ResponseTimeout`).
            Err(_) => Err(local_because(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream timed out",
                Some("response_timeout"),
            )),
        };
        outcome.route = sticky;
        if let Some(lr) = stream.as_ref().and_then(|s| s.take_local()) {
            return from_local(lr);
        }
        if over_limit(exceeded.as_deref()) {
            let res = local_because(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
                Some("request_payload_too_large"),
            );
            return Box::pin(through_chain(stream.as_ref(), res, outcome.attempts)).await;
        }
        let (res, guard) = match result {
            Ok(ok) => ok,
            // keel's own 502/503/504 go through the filters' response callbacks, as Envoy's
            // router replies go through the encoder chain (`source/common/http/
            // filter_manager.cc` `sendLocalReply`).
            Err(res) => {
                return Box::pin(through_chain(stream.as_ref(), res, outcome.attempts)).await;
            }
        };

        // The response.
        let came_on = res.connection;
        let (mut rparts, rbody) = res.response.into_parts();
        let rbody = IdleTimeout::new(rbody, body_idle);
        let switched_to = rparts.headers.get(header::UPGRADE).cloned();
        headers::remove_hop_by_hop(&mut rparts.headers);
        if let Some(s) = &stream {
            let info = &guard.member().info;
            let eos = http_body::Body::is_end_stream(&rbody);
            let verdict = {
                let mut st = s.lock().await;
                st.upstream_attempts(outcome.attempts, Some(came_on), outcome.sent_at);
                if eos {
                    st.upstream_received(Instant::now());
                }
                st.response_headers(&mut rparts, Some(info), eos).await
            };
            if let HeadersVerdict::Respond(lr) = verdict {
                return from_local(lr);
            }
            // Through the chain only when a filter takes part in the response body; else it
            // goes to the client as the member sent it.
            if !eos && self.bodies.response {
                let declared = headers::content_length(&rparts.headers);
                let rbody = Filtered::new(rbody, s.clone(), Direction::Response, declared);
                return respond(rparts, rbody, upgrade, switched_to, guard, stream);
            }
        }
        respond(rparts, rbody, upgrade, switched_to, guard, stream)
    }
}

/// The member's response on its way to the client: its body (the idle timeout, and the filters
/// when they take part, in one allocation) keeps the in-flight guard and the filter stream
/// until it ends; a 101 to an upgrade request becomes the tunnel.
fn respond<B>(
    mut rparts: http::response::Parts,
    rbody: B,
    upgrade: Option<upgrade::Upgrade>,
    switched_to: Option<HeaderValue>,
    guard: InFlight,
    stream: Option<Arc<SharedStream>>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static,
{
    if let Some(up) = upgrade
        && rparts.status == StatusCode::SWITCHING_PROTOCOLS
    {
        // The tunnel keeps the member busy (bybusyness, in-flight) while it lasts.
        if let Err(why) = up.finish(&mut rparts, switched_to, guard) {
            log::warn!("upgrade: {why}");
            return local(StatusCode::BAD_GATEWAY, why);
        }
        return Response::from_parts(rparts, Keep::new(rbody, stream).boxed_unsync());
    }
    Response::from_parts(rparts, Keep::new(rbody, (guard, stream)).boxed_unsync())
}
