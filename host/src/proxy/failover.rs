//! The attempt loop: pick a member, send, and on failure decide whether another member may
//! get the request — before anything was sent: any method (while a streaming body is still
//! untaken); after: only idempotent methods with an empty or whole-held body; `failonstatus`
//! statuses count as failures for those; at most `maxattempts`; client errors end it.

use std::time::Instant;

use http::{Request, Response, StatusCode};

use super::{ConnInfo, Outcome, Proxy, idempotent, local};
use crate::balancer::{InFlight, Member, PickError};
use crate::upstream::{Body, ClientInfo, RequestBody, UpstreamRequest, UpstreamResponse};

impl Proxy {
    /// The attempt loop with failover; on success the response and the in-flight guard.
    pub(super) async fn attempts(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        conn: &ConnInfo,
        sticky: Option<&str>,
        outcome: &mut Outcome,
    ) -> Result<(UpstreamResponse, InFlight), Response<Body>> {
        let b = &self.balancer;
        let retry = &self.settings.config.balancer.retry;
        let max = if retry.maxattempts == 0 {
            b.members().len()
        } else {
            retry.maxattempts as usize
        };
        let safe_method = idempotent(&parts.method);
        let mut tried = Vec::new();
        let mut last: Option<Response<Body>> = None;
        for n in 0..max {
            let i = match b.pick(sticky, &tried) {
                Ok(i) => i,
                Err(PickError::StickyUnavailable(r)) => {
                    log::info!("sticky member {r} unavailable and sticky_force is set");
                    return Err(local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "sticky member unavailable",
                    ));
                }
                Err(PickError::NoMember) => break,
            };
            tried.push(i);
            let member = b.at(i).clone();
            let guard = member.begin();
            let request = UpstreamRequest {
                parts: clone_parts(parts),
                body: body.clone(),
                client: ClientInfo {
                    remote: conn.remote,
                    local: conn.local,
                    tls: conn.tls.clone(),
                },
                route: member.route.clone(),
            };
            let started = Instant::now();
            let result = member.upstream.send(request).await;
            let elapsed = started.elapsed();
            outcome.member = Some(member.clone());
            outcome.upstream_time = Some(elapsed);
            let replayable = match &body {
                RequestBody::Empty | RequestBody::Whole(_) => true,
                RequestBody::Streaming { .. } => false,
            };
            match result {
                Ok(res) => {
                    self.metrics
                        .upstream_seconds
                        .with_label_values(&[member.route.as_str()])
                        .observe(elapsed.as_secs_f64());
                    let status = res.status();
                    if retry.failonstatus.contains(&status.as_u16())
                        && safe_method
                        && replayable
                        && n + 1 < max
                    {
                        member.record_failure(
                            &b.ejection,
                            Instant::now(),
                            &format!("status {status}"),
                        );
                        self.count_failure(&member, "status");
                        last = Some(local(status, "member failed"));
                        continue;
                    }
                    member.record_success();
                    return Ok((res, guard));
                }
                Err(e) => {
                    if e.counts_against_member() {
                        log::warn!("member {}: {e}", member.route);
                    } else {
                        log::info!("member {} (not its fault): {e}", member.route);
                    }
                    let kind = if e.is_client_error() {
                        "client"
                    } else {
                        "upstream"
                    };
                    if e.counts_against_member() {
                        member.record_failure(&b.ejection, Instant::now(), &e.to_string());
                    }
                    self.count_failure(&member, kind);
                    if e.is_client_error() {
                        return Err(local(e.client_status(), "bad request"));
                    }
                    let body_left = match &body {
                        RequestBody::Streaming { body, .. } => !body.is_taken(),
                        _ => true,
                    };
                    let may_retry = if e.was_sent() {
                        safe_method && replayable
                    } else {
                        body_left
                    };
                    last = Some(local(e.client_status(), "upstream failed"));
                    if !may_retry {
                        return Err(last
                            .unwrap_or_else(|| local(StatusCode::BAD_GATEWAY, "upstream failed")));
                    }
                    self.metrics
                        .failovers
                        .with_label_values(&[member.route.as_str()])
                        .inc();
                }
            }
        }
        Err(last.unwrap_or_else(|| local(StatusCode::SERVICE_UNAVAILABLE, "no member available")))
    }

    fn count_failure(&self, member: &Member, kind: &str) {
        self.metrics
            .upstream_failures
            .with_label_values(&[member.route.as_str(), kind])
            .inc();
    }
}

/// `Parts` is not `Clone` (extensions); each attempt gets method, URI, version and headers.
fn clone_parts(p: &http::request::Parts) -> http::request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = p.method.clone();
    *req.uri_mut() = p.uri.clone();
    *req.version_mut() = p.version;
    *req.headers_mut() = p.headers.clone();
    req.into_parts().0
}
