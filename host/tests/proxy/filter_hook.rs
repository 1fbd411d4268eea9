//! The filter-chain hook, driven by a Rust filter chain in place of keel-wasm: a sticky-like
//! filter turns the cookie's route into the routing header (sticky header in), a
//! route-suffix-like filter learns the serving member from `UpstreamInfo` (route suffix out);
//! body verdicts (Hold, Forward changed bytes) and local responses work; `finish` runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use keel::proxy::filter::{
    BodyVerdict, ChainBuilder, ChainStream, FilterChain, FilterStream, HeadersVerdict,
    LocalResponse, StreamInfo, TrailersVerdict, UpstreamInfo,
};
use keel::upstream::BoxFuture;

use crate::harness::{Backend, Http, config, eventually};

struct Chain {
    finished: Arc<AtomicUsize>,
}

struct Stream {
    finished: Arc<AtomicUsize>,
    held: BytesMut,
}

impl FilterChain for Chain {
    fn is_empty(&self) -> bool {
        false
    }
    fn stream(&self, _info: StreamInfo) -> ChainStream {
        Stream {
            finished: self.finished.clone(),
            held: BytesMut::new(),
        }
        .into()
    }
}

impl FilterStream for Stream {
    fn request_headers<'a>(
        &'a mut self,
        req: &'a mut http::request::Parts,
        _eos: bool,
    ) -> BoxFuture<'a, HeadersVerdict> {
        Box::pin(async move {
            if req.uri.path() == "/blocked" {
                return HeadersVerdict::Respond(LocalResponse {
                    status: StatusCode::FORBIDDEN,
                    headers: vec![(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain"),
                    )],
                    body: Bytes::from_static(b"blocked by filter"),
                    details: "blocked".into(),
                });
            }
            req.headers.remove("x-keel-route");
            // The body callback adds a byte: the length is no longer known (as in Envoy, the
            // filter that changes a body fixes Content-Length itself).
            if req.uri.path() != "/keeps-length" {
                req.headers.remove(http::header::CONTENT_LENGTH);
            }
            let route = req
                .headers
                .get(http::header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|c| c.strip_prefix("JSESSIONID="))
                .and_then(|id| id.rsplit_once('.'))
                .map(|(_, r)| r.to_string());
            if let Some(r) = route.and_then(|r| HeaderValue::from_str(&r).ok()) {
                req.headers.insert("x-keel-route", r);
            }
            HeadersVerdict::Continue
        })
    }
    fn request_body(&mut self, chunk: Bytes, eos: bool) -> BoxFuture<'_, BodyVerdict> {
        Box::pin(async move {
            self.held.extend_from_slice(&chunk);
            if eos {
                self.held.extend_from_slice(b"!");
                BodyVerdict::Forward(self.held.split().freeze())
            } else {
                BodyVerdict::Hold
            }
        })
    }
    fn request_trailers<'a>(&'a mut self, _t: &'a mut HeaderMap) -> BoxFuture<'a, TrailersVerdict> {
        Box::pin(async { TrailersVerdict::Continue(Bytes::new()) })
    }
    fn response_headers<'a>(
        &'a mut self,
        res: &'a mut http::response::Parts,
        upstream: Option<&'a UpstreamInfo>,
        _eos: bool,
    ) -> BoxFuture<'a, HeadersVerdict> {
        Box::pin(async move {
            if let Some(u) = upstream {
                let cookie = format!("JSESSIONID=abc.{}; Path=/", u.route());
                res.headers
                    .insert("set-cookie", HeaderValue::from_str(&cookie).unwrap());
                let addr = u.address().to_string();
                res.headers
                    .insert("x-upstream-address", HeaderValue::from_str(&addr).unwrap());
            }
            HeadersVerdict::Continue
        })
    }
    fn response_body(&mut self, chunk: Bytes, _eos: bool) -> BoxFuture<'_, BodyVerdict> {
        Box::pin(async move { BodyVerdict::Forward(Bytes::from(chunk.to_ascii_uppercase())) })
    }
    fn response_trailers<'a>(
        &'a mut self,
        _t: &'a mut HeaderMap,
    ) -> BoxFuture<'a, TrailersVerdict> {
        Box::pin(async { TrailersVerdict::Continue(Bytes::new()) })
    }
    fn finish(self: Box<Self>) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_header_in_route_suffix_out_through_the_hook() {
    let mut a = Backend::start("a");
    let b = Backend::start("b");
    let text = config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        "",
        "",
    );
    let settings = keel::config::parse(&text, std::path::Path::new(".")).expect("config");
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let builder: ChainBuilder = Arc::new(move |_ctx| {
        Ok(Arc::new(Chain {
            finished: f.clone(),
        }) as Arc<dyn FilterChain>)
    });
    let metrics = keel::metrics::Metrics::new().expect("metrics");
    let shared = keel::runtime::Shared::new(settings, None, metrics, builder).expect("shared");
    let mut bound = keel::server::bind(&shared, 1).expect("bind");
    let listener = bound.remove(0).remove(0);
    let addr = listener.listener.local_addr().expect("addr");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(keel::server::serve(
        listener,
        shared,
        rx,
        Duration::from_secs(1),
    ));
    let url = |p: &str| format!("http://{addr}{p}");
    let http = Http::new();

    // Sticky header in: the cookie's route picks the member.
    for _ in 0..4 {
        let r = http.get(&url("/"), &[("cookie", "JSESSIONID=xyz.b")]).await;
        assert_eq!(r.served_by(), "b");
        assert_eq!(r.body, "B", "response body transformed by the filter");
        assert_eq!(r.headers["set-cookie"], "JSESSIONID=abc.b; Path=/");
        assert_eq!(
            r.headers["x-upstream-address"],
            b.url().trim_start_matches("http://")
        );
    }
    // Route suffix out: after a failover the cookie names the member that really served.
    a.kill();
    let r = http.get(&url("/"), &[("cookie", "JSESSIONID=xyz.a")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.served_by(), "b");
    assert_eq!(r.headers["set-cookie"], "JSESSIONID=abc.b; Path=/");

    // Request body held, then forwarded changed.
    let r = http
        .send(Method::POST, &url("/"), &[], "hello")
        .await
        .expect("post");
    assert_eq!(
        r.headers["x-body-len"], "6",
        "held body forwarded with the filter's byte"
    );
    // The same filter leaving Content-Length as it was: the body is cut (the member sees a
    // request that never completes), never passed on under a false length.
    let r = http
        .send(Method::POST, &url("/keeps-length"), &[], "hello")
        .await
        .expect("post");
    assert!(
        r.status.is_server_error() || r.status.is_client_error(),
        "{r:?}"
    );

    // A local response from request headers never reaches a member.
    let r = http.get(&url("/blocked"), &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "blocked by filter");
    assert_eq!(r.served_by(), "");

    eventually("every stream finished", Duration::from_secs(5), || async {
        (finished.load(Ordering::SeqCst) >= 7).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callouts_reach_the_named_upstreams() {
    let a = Backend::start("a");
    let addr: std::net::SocketAddr = a.url().trim_start_matches("http://").parse().unwrap();
    let callouts = keel::callout::Callouts::new([("store".to_string(), addr)].into(), None);
    assert!(callouts.has_upstream("store"));
    assert!(!callouts.has_upstream("other"));
    // The filter's :authority (keel-wasm puts it in the URI) is the Host the upstream sees,
    // as Envoy sends it; the connection goes to the configured address.
    let req = http::Request::post("http://auth.example/echo-headers")
        .header("x-callout", "1")
        .body(Bytes::from_static(b"payload"))
        .unwrap();
    let res = callouts
        .call("store", req, Duration::from_secs(5))
        .await
        .expect("callout");
    assert_eq!(res.status(), 200);
    let echoed = String::from_utf8_lossy(res.body());
    assert!(echoed.contains("x-callout: 1"), "{echoed}");
    assert!(echoed.contains("host: auth.example\n"), "{echoed}");
    // Nothing listens on port 1: a connect failure, told apart from a reset (keel-wasm makes
    // it the router's 503, as Envoy's async client does).
    let closed = keel::callout::Callouts::new(
        [("gone".to_string(), "127.0.0.1:1".parse().unwrap())].into(),
        None,
    );
    let req = http::Request::get("/").body(Bytes::new()).unwrap();
    let err = closed
        .call("gone", req, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, keel::callout::CalloutError::Connect(_)),
        "{err}"
    );
    let req = http::Request::get("/").body(Bytes::new()).unwrap();
    let err = callouts
        .call("other", req, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown callout upstream"),
        "{err}"
    );
    let req = http::Request::get("/hang").body(Bytes::new()).unwrap();
    let err = callouts
        .call("store", req, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(err, keel::callout::CalloutError::Timeout(_)),
        "{err}"
    );
}
