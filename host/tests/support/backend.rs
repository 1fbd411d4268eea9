//! A tiny HTTP backend for keel's integration tests (not part of keel): it says which member
//! served (`x-served-by` header and body), counts requests, and can be told to fail, hang,
//! answer slowly or die.
//!
//! `keel-test-backend <route> <port>` (port 0: any); prints `listening <port>` on stdout.
//! Paths: `/health` (200, or 503 after `/control/unhealthy`), `/fail?route=R` (503 if R is
//! this route), `/hang`, `/slow/<ms>`, `/die` (reads the body, then exits without answering;
//! the member named `b` answers it instead, to show a replay),
//! `/stream` (a chunk now, one 2 s later), `/stall` (a chunk, then silence), `/big/<n>` (`n`
//! bytes, at most 64 MiB),
//! `/early` (answers before it reads the request body, then drains it, as nginx's `return`),
//! `/early-stall` (answers before it reads the request body, then neither reads nor closes),
//! `/stats` (`get=N post=M`), `/echo-headers`, `/echo-upgrade` (switches to `keel-echo`: says
//! its route, then echoes), `/app/...` (a session-holding page, as Tomcat
//! with a `jvmRoute` would serve it: a `JSESSIONID=<32 hex>.<route>` cookie for a client without
//! a session this member knows, and a hit counter per session), `/counter` (the same counter
//! kept by keel's `session` filter instead: state in the `keel-session` header, nothing kept
//! here; `/counter/slow` answers the same after 300 ms), anything else: 200 with the route and `x-body-len`.
//!
//! `cargo xtask cluster` runs two of these behind keel as the README's first command.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Default)]
struct State {
    route: String,
    gets: AtomicU64,
    posts: AtomicU64,
    unhealthy: AtomicBool,
    /// Session id (with its route suffix) → hits.
    sessions: Mutex<HashMap<String, u64>>,
    /// Makes session ids unpredictable enough for a test backend (not a CSPRNG).
    id_seed: RandomState,
}

type Out = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body fed by an mpsc channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

fn reply(state: &State, status: StatusCode, body: String) -> Response<Out> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    if let Ok(v) = state.route.parse() {
        r.headers_mut().insert("x-served-by", v);
    }
    r
}

/// `/echo-upgrade`: switches to protocol `keel-echo` (101), then writes back what it reads,
/// prefixed once with its route and a newline.
fn echo_upgrade(state: &State, mut req: Request<Incoming>) -> Response<Out> {
    if req
        .headers()
        .get(http::header::UPGRADE)
        .map(|v| v.as_bytes())
        != Some(b"keel-echo")
    {
        return reply(
            state,
            StatusCode::BAD_REQUEST,
            "upgrade: keel-echo expected".into(),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let route = state.route.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        if io.write_all(format!("{route}\n").as_bytes()).await.is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut r = reply(state, StatusCode::SWITCHING_PROTOCOLS, String::new());
    r.headers_mut()
        .insert(http::header::CONNECTION, "upgrade".parse().expect("value"));
    r.headers_mut()
        .insert(http::header::UPGRADE, "keel-echo".parse().expect("value"));
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Out>, Infallible> {
    if req.uri().path() == "/echo-upgrade" {
        return Ok(echo_upgrade(&state, req));
    }
    if req.uri().path() == "/early-stall" {
        // Answers before reading the request body, then neither reads it nor closes.
        let body = req.into_body();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(body);
        });
        return Ok(reply(&state, StatusCode::OK, "early".into()));
    }
    if req.uri().path() == "/early" {
        // Answers before reading the request body, then reads and drops it (as nginx's
        // `return 200` does): the connection stays usable once the body is in.
        let mut body = req.into_body();
        tokio::spawn(async move { while body.frame().await.is_some() {} });
        return Ok(reply(&state, StatusCode::OK, "early".into()));
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path != "/health" && !path.starts_with("/stats") && !path.starts_with("/control") {
        match *req.method() {
            Method::POST => state.posts.fetch_add(1, Ordering::SeqCst),
            _ => state.gets.fetch_add(1, Ordering::SeqCst),
        };
    }
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let r = &state.route;
    Ok(match path.as_str() {
        "/health" if state.unhealthy.load(Ordering::SeqCst) => {
            reply(&state, StatusCode::SERVICE_UNAVAILABLE, "unhealthy".into())
        }
        "/health" => reply(&state, StatusCode::OK, "ok".into()),
        "/control/unhealthy" => {
            state.unhealthy.store(true, Ordering::SeqCst);
            reply(&state, StatusCode::OK, "ok".into())
        }
        "/control/healthy" => {
            state.unhealthy.store(false, Ordering::SeqCst);
            reply(&state, StatusCode::OK, "ok".into())
        }
        "/fail" if query == format!("route={r}") => reply(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{r} failing"),
        ),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            reply(&state, StatusCode::OK, r.clone())
        }
        // Dies after reading the request, unless another member got it replayed.
        "/die" if state.route == "b" => reply(&state, StatusCode::OK, r.clone()),
        "/die" => std::process::exit(3),
        "/stall" => {
            // One chunk, then silence with the stream open.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"first\n"))))
                    .await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(tx);
            });
            let mut r = Response::new(ChannelBody(rx).boxed());
            if let Ok(v) = state.route.parse() {
                r.headers_mut().insert("x-served-by", v);
            }
            return Ok(r);
        }
        "/stream" => {
            // One chunk now, the next after 2 s: a proxy that buffers shows the first late.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"first\n"))))
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"second\n"))))
                    .await;
            });
            let mut r = Response::new(ChannelBody(rx).boxed());
            if let Ok(v) = state.route.parse() {
                r.headers_mut().insert("x-served-by", v);
            }
            return Ok(r);
        }
        "/stats" => {
            let s = format!(
                "get={} post={}",
                state.gets.load(Ordering::SeqCst),
                state.posts.load(Ordering::SeqCst)
            );
            reply(&state, StatusCode::OK, s)
        }
        "/echo-headers" => {
            let mut s = String::new();
            for (k, v) in &headers {
                s.push_str(&format!(
                    "{}: {}\n",
                    k,
                    String::from_utf8_lossy(v.as_bytes())
                ));
            }
            reply(&state, StatusCode::OK, s)
        }
        p if p.starts_with("/app") => session_page(&state, &headers),
        // Two requests of one session in flight together (a CAS conflict in the store).
        p if p.starts_with("/counter/slow") => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            counter_page(&state, &headers, &query)
        }
        p if p.starts_with("/counter") => counter_page(&state, &headers, &query),
        // `n` bytes (at most 64 MiB) with their Content-Length.
        p if p.starts_with("/big/") => {
            let n: usize = p["/big/".len()..].parse().unwrap_or(0).min(64 << 20);
            reply(&state, StatusCode::OK, "k".repeat(n))
        }
        p if p.starts_with("/slow/") => {
            let ms: u64 = p["/slow/".len()..].parse().unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            reply(&state, StatusCode::OK, r.clone())
        }
        _ => {
            let mut res = reply(&state, StatusCode::OK, r.clone());
            if let Ok(v) = body.len().to_string().parse() {
                res.headers_mut().insert("x-body-len", v);
            }
            res
        }
    })
}

/// The session page: finds this member's session in the `JSESSIONID` cookie or starts one.
fn session_page(state: &State, headers: &http::HeaderMap) -> Response<Out> {
    let presented = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("JSESSIONID="))
        .map(str::to_string)
        .collect::<Vec<_>>();
    let Ok(mut sessions) = state.sessions.lock() else {
        return reply(state, StatusCode::INTERNAL_SERVER_ERROR, "poisoned".into());
    };
    let known = presented
        .iter()
        .find(|id| sessions.contains_key(*id))
        .cloned();
    let (id, new) = match known {
        Some(id) => (id, false),
        None => {
            let n = sessions.len() as u64;
            let id = format!(
                "{:016X}{:016X}.{}",
                state.id_seed.hash_one(n),
                state.id_seed.hash_one(!n),
                state.route
            );
            (id, true)
        }
    };
    let hits = sessions.entry(id.clone()).or_insert(0);
    *hits += 1;
    let body = format!(
        "served by {} session {} hits {}{}\n",
        state.route,
        id,
        hits,
        if new { " (new session)" } else { "" }
    );
    let mut res = reply(state, StatusCode::OK, body);
    if new && let Ok(v) = format!("JSESSIONID={id}; Path=/; HttpOnly").parse() {
        res.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    res
}

/// `/counter`: a stateless page that keeps its state with keel's `session` filter (the
/// header contract of the README): the state `n=<count>` comes in `keel-session`, the page
/// answers `n=<count + 1>`; `?invalidate` and `?rotate` send those headers. The body says the
/// count, the member, the session id keel sent and whether the store was unavailable.
fn counter_page(state: &State, headers: &http::HeaderMap, query: &str) -> Response<Out> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let count: u64 = text("keel-session")
        .strip_prefix("n=")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        + 1;
    let body = format!(
        "counter={count} served-by={} session-id={} store={}\n",
        state.route,
        text("keel-session-id"),
        if text("keel-session-store").is_empty() {
            "ok"
        } else {
            text("keel-session-store")
        },
    );
    let mut res = reply(state, StatusCode::OK, body);
    let h = res.headers_mut();
    match query {
        "invalidate" => {
            h.insert(
                "keel-session-invalidate",
                http::HeaderValue::from_static("1"),
            );
        }
        other => {
            if let Ok(v) = format!("n={count}").parse() {
                h.insert("keel-session", v);
            }
            if other == "rotate" {
                h.insert("keel-session-rotate", http::HeaderValue::from_static("1"));
            }
        }
    }
    res
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let route = args.next().expect("route");
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut out = std::io::stdout();
    writeln!(out, "listening {port}").expect("stdout");
    out.flush().expect("stdout");
    let state = Arc::new(State {
        route,
        ..State::default()
    });
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
