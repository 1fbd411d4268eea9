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
use hyper_util::rt::TokioIo;

use crate::harness::{Backend, Http, Keel, config, filters_dir};

/// An HTTP/1.1 server on a free port that records the trailers of each request (or "none") and
/// answers `ok` in chunks, with the trailer `x-res-trailer: t` when the request accepts them.
async fn trailer_server() -> (u16, Arc<Mutex<Vec<String>>>) {
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
                    let collected = request.into_body().collect().await.ok();
                    let trailers = collected
                        .as_ref()
                        .and_then(|c| c.trailers())
                        .map_or_else(|| "none".to_owned(), |t| format!("{t:?}"));
                    record.lock().unwrap().push(trailers);
                    let mut trailer = http::HeaderMap::new();
                    trailer.insert("x-res-trailer", http::HeaderValue::from_static("t"));
                    let body = Full::new(Bytes::from_static(b"ok"))
                        .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailer))));
                    let response = http::Response::builder()
                        .header("transfer-encoding", "chunked")
                        .header("trailer", "x-res-trailer")
                        .body(body)
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (port, seen)
}

/// The trailers the server sends a plain HTTP/1.1 client that accepts them (the server is
/// checked too: the filter's empty answer must not come from a server that sends none).
async fn direct_trailers(port: u16) -> Option<http::HeaderMap> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
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

#[tokio::test(flavor = "multi_thread")]
async fn an_http_callout_sends_and_gets_no_trailers_over_http1() {
    let a = Backend::start("a");
    let (port, seen) = trailer_server().await;
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
    let http = Http::new();
    let r = http.get(&keel.url("/echo-headers"), &[("x-id", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let line = |name: &str| {
        r.body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {name} in {:?}", r.body))
            .to_owned()
    };
    assert_eq!(line("x-callout-status"), "200");
    assert_eq!(line("x-callout-body"), "ok");
    assert_eq!(
        line("x-callout-trailers"),
        "0 BadArgument",
        "no trailers delivered, and no trailers map"
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["none", "none"],
        "the filter's request trailer is not sent"
    );
}

/// An HTTP/2 (h2c) server on a free port that records, for each request, its version,
/// `:authority` and trailers, and answers `ok` with the trailer `x-res-trailer: t`.
async fn h2_trailer_server() -> (u16, Arc<Mutex<Vec<String>>>) {
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
                    let authority = parts.uri.authority().map(|a| a.to_string());
                    record.lock().unwrap().push(format!(
                        "{:?} {} {trailers}",
                        parts.version,
                        authority.unwrap_or_default()
                    ));
                    let mut trailer = http::HeaderMap::new();
                    trailer.insert("x-res-trailer", http::HeaderValue::from_static("t"));
                    let body = Full::new(Bytes::from_static(b"ok"))
                        .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailer))));
                    Ok::<_, Infallible>(http::Response::new(body))
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (port, seen)
}

/// With `protocol: http2` the call goes over HTTP/2 with the filter's `:authority` and its
/// trailer (Envoy `context.cc` `httpCall`: `message->trailers(...)`), and the response's
/// trailer is delivered: `num_trailers` 1 and the map readable (`onHttpCallSuccess`:
/// `headerSize(response->trailers())`; `getConstMap` gives `(*response)->trailers()`).
#[tokio::test(flavor = "multi_thread")]
async fn an_http_callout_over_http2_sends_and_gets_trailers() {
    let a = Backend::start("a");
    let (port, seen) = h2_trailer_server().await;
    let filters = format!(
        "filters:\n  - name: probe\n    wasm: {}\n    config: callout store\n\
         callout_upstreams:\n  store:\n    url: http://127.0.0.1:{port}\n    protocol: http2\n",
        filters_dir().join("test_probe.wasm").display()
    );
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", &filters));
    let http = Http::new();
    for round in 0..2 {
        let r = http.get(&keel.url("/echo-headers"), &[("x-id", "1")]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let line = |name: &str| {
            r.body
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .unwrap_or_else(|| panic!("no {name} in {:?}", r.body))
                .to_owned()
        };
        assert_eq!(line("x-callout-status"), "200", "round {round}");
        assert_eq!(line("x-callout-body"), "ok");
        assert_eq!(
            line("x-callout-trailers"),
            "1 t",
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
