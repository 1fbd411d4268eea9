//! Per-request cost of the runtime (headers only): a stream opened, request headers, response
//! headers, then on_log/on_done/on_delete — for an empty chain (the reference), the no-op test
//! filter and keel's sticky + route_suffix chain. Needs the built filters (`cargo xtask
//! build-wasm`, or `KEEL_FILTERS_DIR`).
//!
//! Before criterion's wall-time figures it prints the CPU time per request of each case, from
//! interleaved rounds, as median, best and ratio to the empty chain; and the memory per instance
//! (linear memory, and the resident memory one more instance costs).

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
        connection_id: 1,
        route_name: "default".into(),
        cluster_name: "tomcats".into(),
        endpoints: 2,
        downstream_tls: None,
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

/// CPU time (not wall time: the machine is shared) of one request through `chain`, in
/// nanoseconds, averaged over a batch. The thread's CPU time advances in scheduler ticks (4 ms
/// here), so a batch is long enough for a tick to be under 1% of the chain's figure.
fn cpu_per_request(chain: &FilterChain, upstream: &UpstreamInfo, heads: &Template) -> f64 {
    const N: u32 = 100_000;
    let before = thread_cpu_ns();
    for _ in 0..N {
        one_request(chain, upstream, heads);
    }
    thread_cpu_ns().saturating_sub(before) as f64 / f64::from(N)
}

/// Prints the CPU time per request of each case, measured in interleaved rounds (so that a noisy
/// moment hits every case alike): the median and the best round, and the median as a ratio to
/// the first case (the reference, measured in the same run).
fn cpu_time_table(cases: &[(&str, &FilterChain)], upstream: &UpstreamInfo, heads: &Template) {
    const ROUNDS: usize = 5;
    for (_, chain) in cases {
        for _ in 0..2_000 {
            one_request(chain, upstream, heads);
        }
    }
    let mut rounds = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for ((_, chain), times) in cases.iter().zip(&mut rounds) {
            times.push(cpu_per_request(chain, upstream, heads));
        }
    }
    let medians: Vec<f64> = rounds
        .iter_mut()
        .map(|times| {
            times.sort_by(f64::total_cmp);
            times[ROUNDS / 2]
        })
        .collect();
    for (((name, _), times), median) in cases.iter().zip(&rounds).zip(&medians) {
        eprintln!(
            "cpu time per request: {name}: median {:.2} µs, best {:.2} µs, {:.1}× the {}",
            median / 1000.0,
            times[0] / 1000.0,
            median / medians[0],
            cases[0].0,
        );
    }
}

fn bench(c: &mut Criterion) {
    resident_per_instance("noop", "test_noop", "");
    resident_per_instance("sticky", "sticky", "");
    let upstream = UpstreamInfo::new("127.0.0.1:8081".parse().expect("addr"), "tomcat1");
    let heads = template();
    let empty = FilterChain::new(
        Vec::new(),
        1,
        &prometheus::Registry::new(),
        Arc::new(NoCallouts),
    )
    .expect("chain");
    let noop = chain(vec![FilterSpec::new(
        "noop",
        filter("test_noop"),
        Vec::new(),
    )]);
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
    cpu_time_table(
        &[
            ("empty chain", &empty),
            ("noop filter", &noop),
            ("sticky + route_suffix", &pair),
        ],
        &upstream,
        &heads,
    );

    c.bench_function("empty chain, headers only", |b| {
        b.iter(|| one_request(&empty, &upstream, &heads))
    });
    c.bench_function("noop filter, headers only", |b| {
        b.iter(|| one_request(&noop, &upstream, &heads))
    });
    c.bench_function("sticky + route_suffix, headers only", |b| {
        b.iter(|| one_request(&pair, &upstream, &heads))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
