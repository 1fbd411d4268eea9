//! Helpers shared by the tests that load the built `.wasm` filters (see `tests/`): where the
//! filters are, a chain builder, stream information, requests and responses, a callout handler
//! that answers from a table (and a scripted gRPC stream, `grpc_echo`), polling for what arrives on the runtime's own time, and
//! [`fake_store`], a test double of the session store's API.

pub mod fake_store;
mod grpc_echo;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use keel_wasm::{
    CalloutError, CalloutFuture, CalloutHandler, FilterChain, FilterSpec, GrpcFuture, GrpcOutgoing,
    GrpcStreamFuture, StreamInfo,
};

/// The directory of the built filters: `KEEL_FILTERS_DIR`, else `<workspace>/target/filters`.
pub fn filters_dir() -> PathBuf {
    match std::env::var_os("KEEL_FILTERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters"),
    }
}

/// The path of a built filter; panics, saying how to build it, when the file is missing.
pub fn filter(name: &str) -> PathBuf {
    let path = filters_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "missing filter {} — run `cargo xtask build-wasm` first (or set KEEL_FILTERS_DIR)",
        path.display()
    );
    path
}

/// A spec for a built filter with the given plugin configuration.
pub fn spec(name: &str, file: &str, config: &str) -> FilterSpec {
    let mut spec = FilterSpec::new(name, filter(file), config.as_bytes().to_vec());
    spec.root_id = format!("{name}_root");
    spec.vm_id = format!("{name}_vm");
    spec
}

/// A chain of the given specs on one worker, with a fresh registry and `callouts`.
pub fn chain_with(
    specs: Vec<FilterSpec>,
    callouts: Arc<dyn CalloutHandler>,
) -> (FilterChain, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let chain = FilterChain::new(specs, 1, &registry, callouts).expect("the chain starts");
    (chain, registry)
}

/// A chain with no callout upstreams.
pub fn chain(specs: Vec<FilterSpec>) -> (FilterChain, prometheus::Registry) {
    chain_with(specs, Arc::new(keel_wasm::NoCallouts))
}

/// A stream of `chain` whose GET `uri` went through the request headers callbacks (without a
/// body when `end_of_stream`), every filter continuing; the stream and the request as the
/// filters left it.
pub async fn continued_get(
    chain: &FilterChain,
    uri: &str,
    end_of_stream: bool,
) -> (keel_wasm::Stream, http::request::Parts) {
    let mut stream = chain.stream(info());
    let mut req = request(uri, &[]);
    assert_eq!(
        stream.request_headers(&mut req, end_of_stream).await,
        keel_wasm::HeadersVerdict::Continue
    );
    (stream, req)
}

/// Stream information for a plain HTTP/1.1 request from 127.0.0.1:40000 to keel on :8080.
pub fn info() -> StreamInfo {
    StreamInfo {
        source: ([127, 0, 0, 1], 40000).into(),
        destination: ([127, 0, 0, 1], 8080).into(),
        tls: false,
        protocol: http::Version::HTTP_11,
        request_id: 7,
        connection_id: 7,
        route_name: "default_route".into(),
        cluster_name: "tomcats".into(),
        endpoints: 2,
        downstream_tls: None,
    }
}

/// A request head: `GET uri` with a Host header and the given extra headers.
pub fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder()
        .method("GET")
        .uri(uri)
        .header("host", "keel.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("a valid request").into_parts().0
}

/// A response head with a status and headers.
pub fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("a valid response").into_parts().0
}

/// The value of a header as a string ("" when absent).
pub fn header(map: &http::HeaderMap, name: &str) -> String {
    map.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// The first value of header `name` of a local response ("" when it has none).
pub fn local_header(local: &keel_wasm::LocalResponse, name: &str) -> String {
    local
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// The value of a counter or gauge sample in `registry` (with the given label values), if any.
pub fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .find_map(|family| {
            family.get_metric().iter().find_map(|m| {
                let matches = labels.iter().all(|(key, value)| {
                    m.get_label()
                        .iter()
                        .any(|pair| pair.name() == *key && pair.value() == *value)
                });
                if !matches {
                    return None;
                }
                if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                    Some(m.get_counter().get_value())
                } else {
                    Some(m.get_gauge().get_value())
                }
            })
        })
}

/// Polls `check` until it is true or five seconds passed (for what the runtime delivers on its
/// own time: queue items, timer ticks).
pub async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// One scripted callout answer.
#[derive(Clone)]
pub enum Answer {
    /// Answer with this status and body after the delay.
    Reply(u16, &'static str, Duration),
    /// Fail after the delay (a reset once connected).
    Fail(Duration),
    /// The upstream cannot be connected to.
    Unreachable,
    /// Never answer.
    Hang,
    /// A gRPC answer after the delay: status 0 with this message, or another status with this
    /// text as its `grpc-message`.
    Grpc(u32, &'static str, Duration),
}

/// A callout handler with one upstream, `store`, answering by the request's `id` query.
#[derive(Default)]
pub struct ScriptedCallouts {
    answers: Mutex<HashMap<String, Answer>>,
    /// The requests seen (path and query).
    pub seen: Mutex<Vec<String>>,
    /// The requests answered (path and query): their future ran to its end, as a real request's
    /// must for it to reach the upstream.
    pub completed: Arc<Mutex<Vec<String>>>,
}

impl ScriptedCallouts {
    /// The requests answered so far.
    pub fn completed(&self) -> Vec<String> {
        self.completed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ScriptedCallouts {
    /// Records a request to `path` and finds the answer for `id`.
    fn note(&self, path: &str, id: &str) -> Option<Answer> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path.to_owned());
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Sets the answer for `id`.
    pub fn answer(&self, id: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), answer);
    }
}

impl CalloutHandler for ScriptedCallouts {
    fn call(
        &self,
        _upstream: &str,
        request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> CalloutFuture {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let id = path.rsplit("id=").next().unwrap_or_default().to_owned();
        let answer = self.note(&path, &id);
        let completed = self.completed.clone();
        Box::pin(async move {
            match answer {
                Some(Answer::Reply(status, body, delay)) => {
                    tokio::time::sleep(delay).await;
                    completed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(path);
                    Ok(http::Response::builder()
                        .status(status)
                        .header("x-store", "1")
                        .body(Bytes::from_static(body.as_bytes()))
                        .map_err(|e| CalloutError::Failed(e.to_string()))?)
                }
                Some(Answer::Fail(delay)) => {
                    tokio::time::sleep(delay).await;
                    Err(CalloutError::Failed("scripted failure".into()))
                }
                Some(Answer::Unreachable) => {
                    Err(CalloutError::Connect("scripted: connection refused".into()))
                }
                Some(Answer::Hang | Answer::Grpc(..)) | None => std::future::pending().await,
            }
        })
    }

    /// A gRPC call answered by the `x-id` metadata of its request, over no wire: the response
    /// as an HTTP/2 gRPC server sends it (one framed message, `grpc-status` in the trailers).
    fn grpc_call(
        &self,
        _upstream: &str,
        request: http::Request<Bytes>,
        _timeout: Duration,
    ) -> GrpcFuture {
        let path = request.uri().path().to_owned();
        let answer = self.note(&path, &header(request.headers(), "x-id"));
        let completed = self.completed.clone();
        Box::pin(async move {
            let (code, text, delay) = match answer {
                Some(Answer::Grpc(code, text, delay)) => (code, text, delay),
                Some(Answer::Unreachable) => {
                    return Err(CalloutError::Connect("scripted: connection refused".into()));
                }
                Some(Answer::Fail(delay)) => {
                    tokio::time::sleep(delay).await;
                    return Err(CalloutError::Failed("scripted reset".into()));
                }
                _ => return std::future::pending().await,
            };
            tokio::time::sleep(delay).await;
            completed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(path);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from(code));
            let body = if code == 0 {
                let mut framed = vec![0u8];
                framed.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
                framed.extend_from_slice(text.as_bytes());
                Bytes::from(framed)
            } else {
                trailers.insert("grpc-message", http::HeaderValue::from_static(text));
                Bytes::new()
            };
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .map_err(|e| CalloutError::Failed(e.to_string()))?;
            Ok((response, trailers))
        })
    }

    /// A gRPC stream answered by the `x-id` metadata of its request (see [`grpc_echo`]);
    /// `x-id: unreachable` cannot connect.
    fn grpc_stream(
        &self,
        _upstream: &str,
        request: http::Request<GrpcOutgoing>,
    ) -> GrpcStreamFuture {
        let path = request.uri().path().to_owned();
        let id = header(request.headers(), "x-id");
        self.note(&path, &id);
        if id == "unreachable" {
            return Box::pin(async {
                Err(CalloutError::Connect("scripted: connection refused".into()))
            });
        }
        grpc_echo::answer(&id, request, self.completed.clone())
    }

    fn has_upstream(&self, upstream: &str) -> bool {
        upstream == "store"
    }
}
