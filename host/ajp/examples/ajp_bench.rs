//! A first throughput figure: requests per second through keel-ajp's client to a real Tomcat
//! 10 over AJP, side by side with the same Tomcat reached directly over HTTP/1.1 (keep-alive),
//! same servlet, same concurrency, both on 127.0.0.1.
//!
//! `cargo run --release -p keel-ajp --example ajp_bench [concurrency] [seconds]`
//!
//! `... --example ajp_bench serve` only starts the Tomcat, prints `ajp=<addr> http=<addr>
//! secret=<secret>` and keeps it running until stdin closes (for a side-by-side run of `wrk`
//! through keel and directly).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/support/tomcat.rs"]
mod tomcat;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, Request};
use keel_ajp::client::{AjpClient, AjpRequest, ClientConfig, Peer, RequestBody, Secret};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SECRET: &str = "bench-secret";
const PATH: &str = "/app/echo?bench=1";

fn ajp_request() -> AjpRequest {
    let (parts, ()) = Request::builder()
        .method(Method::GET)
        .uri(PATH)
        .header("host", "bench")
        .body(())
        .unwrap()
        .into_parts();
    AjpRequest {
        parts,
        body: RequestBody::Empty,
        peer: Peer {
            remote: "127.0.0.1:50000".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            tls: None,
        },
        route: Some("tc1".into()),
        retry_unanswered: false,
    }
}

async fn ajp_worker(client: AjpClient, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        let res = client.send(ajp_request()).await.expect("AJP request");
        let mut body = res.into_body();
        while let Some(c) = body.chunk().await {
            c.expect("AJP body");
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn http_worker(addr: SocketAddr, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let req = format!("GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n");
    let mut line = String::new();
    // Tomcat closes a keep-alive connection after maxKeepAliveRequests (100): reconnect then.
    'connection: while !stop.load(Ordering::Relaxed) {
        let mut s = BufReader::new(TcpStream::connect(addr).await.unwrap());
        s.get_mut().set_nodelay(true).unwrap();
        while !stop.load(Ordering::Relaxed) {
            s.get_mut().write_all(req.as_bytes()).await.unwrap();
            let (mut len, mut close) = (0usize, false);
            loop {
                line.clear();
                if s.read_line(&mut line).await.unwrap() == 0 {
                    continue 'connection;
                }
                if line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                close |= lower.starts_with("connection: close");
            }
            let mut body = vec![0; len];
            s.read_exact(&mut body).await.unwrap();
            done.fetch_add(1, Ordering::Relaxed);
            if close {
                continue 'connection;
            }
        }
    }
}

async fn measure<F, Fut>(concurrency: usize, secs: u64, spawn: F) -> f64
where
    F: Fn(Arc<AtomicBool>, Arc<AtomicU64>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(spawn(stop.clone(), done.clone())))
        .collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / elapsed
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let t = tomcat::Tomcat::start("tc1", SECRET);
        println!("ajp={} http={} secret={SECRET}", t.ajp, t.http);
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        return;
    }
    let concurrency: usize = args.get(1).map_or(16, |a| a.parse().unwrap());
    let secs: u64 = args.get(2).map_or(10, |a| a.parse().unwrap());
    let t = tomcat::Tomcat::start("tc1", SECRET);
    let client = AjpClient::new(t.ajp, ClientConfig::new(Secret::Value(SECRET.into()))).unwrap();
    let ajp = |stop, done| ajp_worker(client.clone(), stop, done);
    let http = |stop, done| http_worker(t.http, stop, done);
    // Warm the JIT on both paths, then alternate.
    measure(concurrency, 3, ajp).await;
    measure(concurrency, 3, http).await;
    let mut rows = Vec::new();
    for round in 1..=2 {
        let a = measure(concurrency, secs, ajp).await;
        let h = measure(concurrency, secs, http).await;
        rows.push((round, a, h));
    }
    println!("concurrency {concurrency}, {secs} s per run, GET {PATH} (Tomcat 10 echo servlet)");
    for (round, a, h) in rows {
        println!(
            "round {round}: AJP client {a:>8.0} req/s   direct HTTP {h:>8.0} req/s   ratio {:.2}",
            a / h
        );
    }
    let s = client.stats();
    println!(
        "AJP connections opened: {}, requests on pooled connections: {}",
        s.connects, s.reused
    );
}
