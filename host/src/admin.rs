//! The admin listener (loopback by default; every request needs `Authorization: Bearer
//! <token>`): `GET /status` (JSON), `GET /metrics` (Prometheus text), and the
//! balancer-manager actions `POST /members/<route>/{drain,disable,enable,hot_standby}`,
//! `POST /members/<route>/weight/<n>`, `POST /reload`.

use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::MemberStatus;
use crate::proxy::local;
use crate::runtime::Shared;
use crate::upstream::{Body, full_body};

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request<hyper::body::Incoming>, token: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|t| same(t, token.as_bytes()))
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full_body(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The `/status` document.
pub fn status(shared: &Shared) -> serde_json::Value {
    let proxy = shared.current();
    let now = Instant::now();
    let members: Vec<serde_json::Value> = proxy
        .balancer
        .members()
        .iter()
        .map(|m| {
            let h = m.health();
            let last_check = h.last_check.map(|(at, latency, ok)| {
                json!({
                    "at_unix_ms": at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                    "latency_ms": latency.as_secs_f64() * 1000.0,
                    "ok": ok,
                })
            });
            json!({
                "route": m.route,
                "url": m.url,
                "address": m.address.to_string(),
                "status": m.status(),
                "weight": m.weight(),
                "healthy": m.is_healthy(now),
                "in_error": h.error_until.is_some_and(|t| t > now),
                "check_down": h.check_down,
                "in_flight": m.in_flight(),
                "requests": m.requests(),
                "errors": m.errors(),
                "last_check": last_check,
                "last_error": h.last_error,
            })
        })
        .collect();
    json!({ "version": env!("CARGO_PKG_VERSION"), "members": members })
}

fn metrics_text(shared: &Shared) -> String {
    let proxy = shared.current();
    let now = Instant::now();
    for m in proxy.balancer.members() {
        let r = m.route.as_str();
        shared
            .metrics
            .member_healthy
            .with_label_values(&[r])
            .set(i64::from(m.is_healthy(now)));
        shared
            .metrics
            .member_in_flight
            .with_label_values(&[r])
            .set(i64::try_from(m.in_flight()).unwrap_or(i64::MAX));
    }
    let members = proxy.balancer.members();
    let counters: Vec<(&str, Vec<_>)> = members
        .iter()
        .map(|m| (m.route.as_str(), m.upstream.counters()))
        .collect();
    shared.metrics.render(&counters, shared.store_metrics())
}

fn action(shared: &Shared, path: &str) -> Response<Body> {
    if path == "/reload" {
        return match shared.reload() {
            Ok(()) => json_response(StatusCode::OK, &json!({"reloaded": true})),
            Err(e) => json_response(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": e})),
        };
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let proxy = shared.current();
    let (route, verb, arg) = match parts.as_slice() {
        ["members", route, verb] => (*route, *verb, None),
        ["members", route, verb, arg] => (*route, *verb, Some(*arg)),
        _ => return local(StatusCode::NOT_FOUND, "no such action"),
    };
    let Some(m) = proxy.balancer.member(route) else {
        return local(StatusCode::NOT_FOUND, "no such member");
    };
    match (verb, arg) {
        ("drain", None) => m.set_status(MemberStatus::Drain),
        ("disable", None) => m.set_status(MemberStatus::Disabled),
        ("enable", None) => m.set_status(MemberStatus::Active),
        ("hot_standby", None) => m.set_status(MemberStatus::HotStandby),
        ("weight", Some(n)) => match n.parse::<u32>() {
            Ok(w) if (1..=1000).contains(&w) => m.set_weight(w),
            _ => return local(StatusCode::BAD_REQUEST, "weight must be 1..=1000"),
        },
        _ => return local(StatusCode::NOT_FOUND, "no such action"),
    }
    log::info!(
        "admin: member {} now {:?}, weight {}",
        m.route,
        m.status(),
        m.weight()
    );
    json_response(
        StatusCode::OK,
        &json!({"route": m.route, "status": m.status(), "weight": m.weight()}),
    )
}

async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let token = shared
        .current()
        .settings
        .admin
        .as_ref()
        .map(|a| a.token.clone())
        .unwrap_or_default();
    if token.is_empty() || !authorized(&req, &token) {
        let mut r = local(StatusCode::UNAUTHORIZED, "bearer token required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/status") => json_response(StatusCode::OK, &status(&shared)),
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full_body(metrics_text(&shared)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::POST, p) => action(&shared, p),
        _ => local(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Serves the admin listener until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
