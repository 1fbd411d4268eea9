//! Trailers of an http callout (`proxy_http_call`) in `keel serve`, against a real HTTP/1.1
//! server that reads request trailers and answers with a chunked body and a trailer. keel's
//! http callouts speak HTTP/1.1, and Envoy's HTTP/1 codec, without the cluster's
//! `enable_trailers` (default false), neither sends a request's trailers
//! (`source/common/http/http1/codec_impl.cc` `StreamEncoderImpl::encodeTrailersBase`:
//! `endEncode()` instead; and `httpCall` sets Content-Length for a body, so there is no chunked
//! encoding to carry them) nor keeps a response's (`ConnectionImpl::onHeaderFieldImpl`: "Ignore
//! trailers"). So the filter's trailer never reaches the server, and the response arrives with
//! `num_trailers` 0 and no trailers map (`source/extensions/common/wasm/context.cc`
//! `getConstMap`: `(*response)->trailers()` is null; `getHeaderMapValue` on it: BadArgument).
//! An upstream declared `protocol: http2` gets the call over HTTP/2 (h2c), whose codec in
//! Envoy sends the message's trailers and keeps the response's
//! (`source/common/http/http2/codec_impl.cc`): both pass.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::{Backend, Http, Keel, config, filters_dir};

/// A server on a free port, HTTP/1.1 or HTTP/2 (h2c), that records each request as its
/// version, authority (`:authority`, else Host) and trailers (or "none"), and answers `ok`
/// with the trailer `x-res-trailer: t` (over HTTP/1.1 in chunks, when the request accepts them).
async fn trailer_server(http2: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let record = record.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let collected = body.collect().await.ok();
                    let trailers = collected
                        .as_ref()
                        .and_then(|c| c.trailers())
                        .map_or_else(|| "none".to_owned(), |t| format!("{t:?}"));
                    let authority = match parts.uri.authority() {
                        Some(authority) => authority.to_string(),
                        None => parts.headers["host"].to_str().unwrap().to_owned(),
                    };
                    record
                        .lock()
                        .unwrap()
                        .push(format!("{:?} {authority} {trailers}", parts.version));
                    let mut trailer = http::HeaderMap::new();
                    trailer.insert("x-res-trailer", http::HeaderValue::from_static("t"));
                    let body = Full::new(Bytes::from_static(b"ok"))
                        .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailer))));
                    let mut response = http::Response::builder();
                    if !http2 {
                        response = response
                            .header("transfer-encoding", "chunked")
                            .header("trailer", "x-res-trailer");
                    }
                    Ok::<_, Infallible>(response.body(body).unwrap())
                }
            });
            let io = TokioIo::new(tcp);
            if http2 {
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service),
                );
            } else {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service),
                );
            }
        }
    });
    (port, seen)
}

/// The trailers the server sends a plain HTTP/1.1 client that accepts them (the server is
/// checked too: the filter's empty answer must not come from a server that sends none).
async fn direct_trailers(port: u16) -> Option<http::HeaderMap> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://127.0.0.1:{port}/"))
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
}

/// What the probe (mode `callout store`) copied of its callout's answer into the request the
/// member echoes: the status, the body, and `num_trailers` with the trailer's value or status.
async fn callout_answer(keel: &Keel) -> [String; 3] {
    let r = Http::new()
        .get(&keel.url("/echo-headers"), &[("x-id", "1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    ["x-callout-status", "x-callout-body", "x-callout-trailers"].map(|name| {
        r.body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {name} in {:?}", r.body))
            .to_owned()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_callout_sends_and_gets_no_trailers_over_http1() {
    let a = Backend::start("a");
    let (port, seen) = trailer_server(false).await;
    let direct = direct_trailers(port)
        .await
        .expect("the server sends trailers");
    assert_eq!(direct["x-res-trailer"], "t");
    let filters = format!(
        "filters:\n  - name: probe\n    wasm: {}\n    config: callout store\n\
         callout_upstreams:\n  store: http://127.0.0.1:{port}\n",
        filters_dir().join("test_probe.wasm").display()
    );
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", &filters));
    let [status, body, trailers] = callout_answer(&keel).await;
    assert_eq!((status.as_str(), body.as_str()), ("200", "ok"));
    assert_eq!(
        trailers, "0 BadArgument",
        "no trailers delivered, and no trailers map"
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            format!("HTTP/1.1 127.0.0.1:{port} none"),
            "HTTP/1.1 store none".to_owned()
        ],
        "the filter's request trailer is not sent"
    );
}

/// With `protocol: http2` the call goes over HTTP/2 with the filter's `:authority` and its
/// trailer (Envoy `context.cc` `httpCall`: `message->trailers(...)`), and the response's
/// trailer is delivered: `num_trailers` 1 and the map readable (`onHttpCallSuccess`:
/// `headerSize(response->trailers())`; `getConstMap` gives `(*response)->trailers()`).
#[tokio::test(flavor = "multi_thread")]
async fn an_http_callout_over_http2_sends_and_gets_trailers() {
    let a = Backend::start("a");
    let (port, seen) = trailer_server(true).await;
    let filters = format!(
        "filters:\n  - name: probe\n    wasm: {}\n    config: callout store\n\
         callout_upstreams:\n  store:\n    url: http://127.0.0.1:{port}\n    protocol: http2\n",
        filters_dir().join("test_probe.wasm").display()
    );
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", &filters));
    for round in 0..2 {
        let [status, body, trailers] = callout_answer(&keel).await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("200", "ok"),
            "round {round}"
        );
        assert_eq!(
            trailers, "1 t",
            "one trailer delivered, readable in the trailers map"
        );
    }
    // Two calls, the second on the same connection or a new one: both carry the trailer.
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            "HTTP/2.0 store {\"x-req-trailer\": \"t\"}",
            "HTTP/2.0 store {\"x-req-trailer\": \"t\"}"
        ],
        "the filter's request trailer is sent over HTTP/2, with its :authority"
    );
}
