//! The attempt loop: pick a member, send, and on failure decide whether another member may
//! get the request — before anything was sent: any method (while a streaming body is still
//! untaken); after: only idempotent methods with an empty or whole-held body; `failonstatus`
//! statuses put the member in error for any method and move idempotent, replayable requests
//! on (when no other member can take it, the member's own answer goes back); at most
//! `maxattempts`; client errors, and answers any member would give the same way (an
//! unreadable response head), end it and never count against the member.

use std::time::Instant;

use http::{Request, Response, StatusCode};

use super::{ConnInfo, Outcome, Proxy, idempotent, local, local_because};
use crate::balancer::{InFlight, Member, PickError, Tried};
use crate::upstream::{Body, ClientInfo, RequestBody, UpstreamRequest, UpstreamResponse};

/// Envoy's router when no host can take the request (`ResponseCodeDetailValues`
/// `NoHealthyUpstream`).
const NO_HEALTHY_UPSTREAM: &str = "no_healthy_upstream";

/// How the attempts so far ended, for the client when no further attempt is made.
type Answer = Result<(UpstreamResponse, InFlight), Response<Body>>;

impl Proxy {
    /// The attempt loop with failover; on success the response and the in-flight guard.
    pub(super) async fn attempts(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        conn: &ConnInfo,
        sticky: Option<&str>,
        outcome: &mut Outcome,
    ) -> Answer {
        let b = &self.balancer;
        let retry = &self.settings.config.balancer.retry;
        let max = match retry.maxattempts {
            0 => b.members().len(),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let safe_method = idempotent(&parts.method);
        let replayable = !matches!(body, RequestBody::Streaming { .. });
        let client = ClientInfo {
            remote: conn.remote,
            local: conn.local,
            tls: conn.tls.clone(),
        };
        let mut tried = Tried::default();
        let mut last: Option<Answer> = None;
        // When the attempt whose answer `last` holds began.
        let mut held_sent_at = None;
        for n in 0..max {
            let guard = match b.pick(sticky, tried) {
                Ok(g) => g,
                Err(PickError::StickyUnavailable(r)) => {
                    if let Some(Ok(held)) = last {
                        outcome.sent_at = held_sent_at;
                        return Ok(held);
                    }
                    log::info!("sticky member {r} unavailable and sticky_force is set");
                    return Err(local_because(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "sticky member unavailable",
                        Some(NO_HEALTHY_UPSTREAM),
                    ));
                }
                Err(PickError::NoMember) => break,
            };
            tried.add(guard.index());
            outcome.attempts = outcome.attempts.saturating_add(1);
            let member = guard.member().clone();
            let request = UpstreamRequest {
                parts: clone_parts(parts),
                body: body.clone(),
                client: client.clone(),
            };
            let started = Instant::now();
            let result = member.upstream.send(request).await;
            let elapsed = started.elapsed();
            outcome.member = Some(member.clone());
            outcome.member_index = guard.index();
            outcome.upstream_time = Some(elapsed);
            let more = n + 1 < max;
            match result {
                Ok(res) => {
                    self.series.upstream_seconds(
                        guard.index(),
                        &member.route,
                        elapsed.as_secs_f64(),
                    );
                    let status = res.response.status();
                    if !retry.failonstatus.contains(&status.as_u16()) {
                        member.record_success();
                        outcome.sent_at = Some(started);
                        return Ok((res, guard));
                    }
                    member.record_failure(&b.ejection, Instant::now(), status.as_str());
                    self.count_failure(&member, "status");
                    if !(safe_method && replayable && more) {
                        outcome.sent_at = Some(started);
                        return Ok((res, guard));
                    }
                    self.count_failover(&member);
                    // Kept for the client in case no other member can take the request.
                    last = Some(Ok((res, guard)));
                    held_sent_at = Some(started);
                }
                Err(e) => {
                    if e.counts_against_member() {
                        log::warn!("member {}: {e}", member.route);
                        member.record_failure(&b.ejection, Instant::now(), &e.to_string());
                    } else {
                        log::info!("member {} (not its fault): {e}", member.route);
                    }
                    let kind = if e.is_client_error() {
                        "client"
                    } else {
                        "upstream"
                    };
                    self.count_failure(&member, kind);
                    if e.is_client_error() {
                        return Err(local(e.client_status(), "bad request"));
                    }
                    let failed =
                        || local_because(e.client_status(), "upstream failed", e.code_details());
                    if e.is_deterministic() {
                        return Err(failed());
                    }
                    let may_retry = if e.was_sent() {
                        safe_method && replayable
                    } else {
                        match &body {
                            RequestBody::Streaming { body, .. } => !body.is_taken(),
                            RequestBody::Empty | RequestBody::Whole(_) => true,
                        }
                    };
                    let answer = failed();
                    if !(may_retry && more) {
                        return Err(answer);
                    }
                    self.count_failover(&member);
                    last = Some(Err(answer));
                }
            }
        }
        match last {
            Some(answer) => {
                if answer.is_ok() {
                    outcome.sent_at = held_sent_at;
                }
                answer
            }
            None => Err(local_because(
                StatusCode::SERVICE_UNAVAILABLE,
                "no member available",
                Some(NO_HEALTHY_UPSTREAM),
            )),
        }
    }

    fn count_failure(&self, member: &Member, kind: &str) {
        self.metrics
            .upstream_failures
            .with_label_values(&[member.route.as_str(), kind])
            .inc();
    }

    fn count_failover(&self, member: &Member) {
        self.metrics
            .failovers
            .with_label_values(&[member.route.as_str()])
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
