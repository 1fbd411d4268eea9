//! Per-request cost of the runtime (headers only): a stream opened, request headers, response
//! headers, then on_log/on_done/on_delete — with the no-op test filter, and with keel's
//! sticky + route_suffix chain. Needs the built filters (`cargo xtask build-wasm`, or
//! `KEEL_FILTERS_DIR`). Also prints each instance's linear memory.

#![allow(missing_docs)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use keel_wasm::{FilterChain, FilterSpec, HeadersVerdict, NoCallouts, StreamInfo, UpstreamInfo};

fn filters_dir() -> PathBuf {
    match std::env::var_os("KEEL_FILTERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/filters"),
    }
}

fn filter(name: &str) -> PathBuf {
    let path = filters_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "missing {} — run `cargo xtask build-wasm` first",
        path.display()
    );
    path
}

/// Polls a future that never waits (no pause, no callout) to completion.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the benchmark's stream paused"),
    }
}

fn info() -> StreamInfo {
    StreamInfo {
        source: ([127, 0, 0, 1], 40000).into(),
        destination: ([127, 0, 0, 1], 8080).into(),
        tls: false,
        protocol: http::Version::HTTP_11,
        request_id: 1,
        route_name: "default".into(),
        cluster_name: "tomcats".into(),
    }
}

/// The request and response heads every iteration starts from (built once: the benchmark
/// measures the runtime, not header parsing).
struct Template {
    uri: http::Uri,
    request_headers: http::HeaderMap,
    response_headers: http::HeaderMap,
}

fn template() -> Template {
    let (req, ()) = http::Request::builder()
        .uri("/shop/cart?item=7")
        .header("host", "shop.example")
        .header("user-agent", "bench/1.0")
        .header("accept", "text/html")
        .header(
            "cookie",
            "theme=dark; JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F-n1.tomcat1",
        )
        .body(())
        .expect("request")
        .into_parts();
    let (res, ()) = http::Response::builder()
        .header("content-type", "text/html")
        .header(
            "set-cookie",
            "JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F-n1.tomcat1; Path=/; HttpOnly",
        )
        .body(())
        .expect("response")
        .into_parts();
    Template {
        uri: req.uri,
        request_headers: req.headers,
        response_headers: res.headers,
    }
}

fn one_request(chain: &FilterChain, upstream: &UpstreamInfo, template: &Template) {
    let mut stream = chain.stream(info());
    let (mut req, ()) = http::Request::new(()).into_parts();
    req.uri = template.uri.clone();
    req.headers = template.request_headers.clone();
    let verdict = now(stream.request_headers(&mut req, true));
    if verdict != HeadersVerdict::Continue {
        let failures: Vec<String> = prometheus::default_registry()
            .gather()
            .iter()
            .map(|f| format!("{f:?}"))
            .filter(|f| f.contains("keel_wasm_failures_total"))
            .collect();
        panic!("{verdict:?}: {failures:?}");
    }
    let (mut res, ()) = http::Response::new(()).into_parts();
    res.headers = template.response_headers.clone();
    assert_eq!(
        now(stream.response_headers(&mut res, Some(upstream), false)),
        HeadersVerdict::Continue
    );
    stream.finish();
}

fn chain(specs: Vec<FilterSpec>) -> FilterChain {
    let registry = prometheus::default_registry();
    let chain = FilterChain::new(specs, 1, registry, Arc::new(NoCallouts)).expect("chain");
    for (name, bytes) in chain.memory_per_instance() {
        eprintln!(
            "instance memory: {name}: {bytes} bytes ({:.2} MiB)",
            bytes as f64 / (1 << 20) as f64
        );
    }
    chain
}

/// Resident memory of the process, in bytes (Linux `/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Prints the resident memory one more instance costs: a 16-worker chain of `file`, measured
/// after the module was compiled once (so only instances are counted).
fn resident_per_instance(name: &str, file: &str, config: &str) {
    let spec = FilterSpec::new(name, filter(file), config.as_bytes().to_vec());
    let registry = prometheus::Registry::new();
    let warm =
        FilterChain::new(vec![spec.clone()], 1, &registry, Arc::new(NoCallouts)).expect("chain");
    let before = rss();
    let many = FilterChain::new(vec![spec], 16, &registry, Arc::new(NoCallouts)).expect("chain");
    let after = rss();
    eprintln!(
        "resident memory per instance: {name}: {:.0} KiB (16 instances: {} KiB)",
        after.saturating_sub(before) as f64 / 16.0 / 1024.0,
        after.saturating_sub(before) / 1024
    );
    drop((warm, many));
}

/// The CPU time this thread has used, in nanoseconds (Linux `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Prints the CPU time (not wall time: the machine is shared) one request takes.
fn cpu_per_request(name: &str, chain: &FilterChain, upstream: &UpstreamInfo, heads: &Template) {
    const N: u32 = 20_000;
    for _ in 0..1_000 {
        one_request(chain, upstream, heads);
    }
    let before = thread_cpu_ns();
    for _ in 0..N {
        one_request(chain, upstream, heads);
    }
    let spent = thread_cpu_ns().saturating_sub(before);
    eprintln!(
        "cpu time per request: {name}: {:.2} µs",
        spent as f64 / f64::from(N) / 1000.0
    );
}

fn bench(c: &mut Criterion) {
    resident_per_instance("noop", "test_noop", "");
    resident_per_instance("sticky", "sticky", "");
    let upstream = UpstreamInfo {
        address: "127.0.0.1:8081".parse().expect("addr"),
        route: "tomcat1".into(),
    };
    let heads = template();
    let noop = chain(vec![FilterSpec::new(
        "noop",
        filter("test_noop"),
        Vec::new(),
    )]);
    cpu_per_request("noop", &noop, &upstream, &heads);
    c.bench_function("noop filter, headers only", |b| {
        b.iter(|| one_request(&noop, &upstream, &heads))
    });

    let routes = r#"{"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}"#;
    let sticky = FilterSpec::new(
        "sticky",
        filter("sticky"),
        format!(r#"{{"routes": {routes}}}"#).into_bytes(),
    );
    let suffix = FilterSpec::new(
        "route_suffix",
        filter("route_suffix"),
        format!(r#"{{"routes": {routes}, "mode": "rewrite"}}"#).into_bytes(),
    );
    let pair = chain(vec![sticky, suffix]);
    cpu_per_request("sticky + route_suffix", &pair, &upstream, &heads);
    c.bench_function("sticky + route_suffix, headers only", |b| {
        b.iter(|| one_request(&pair, &upstream, &heads))
    });

    let empty = FilterChain::new(
        Vec::new(),
        1,
        &prometheus::Registry::new(),
        Arc::new(NoCallouts),
    )
    .expect("chain");
    cpu_per_request("empty chain", &empty, &upstream, &heads);
    c.bench_function("empty chain, headers only", |b| {
        b.iter(|| one_request(&empty, &upstream, &heads))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
