//! `keel bridge`: the session store's HTTP API (`keel_store::api`, the handler keel serves in
//! process) over HTTP/1.1, for stock Envoy, whose wasm filters reach memcached only through a
//! callout to a cluster. `GET /metrics` gives the store's counters (Prometheus text).
//!
//! ```text
//! keel bridge --listen 127.0.0.1:8099 --nodes n1:127.0.0.1:11211,n2:127.0.0.1:11212 \
//!     [--failover-nodes n2] [--max-state-bytes 4096] [--op-timeout-ms 1000] [--retry-delay-ms 1000]
//! keel bridge --listen 127.0.0.1:8099 --memory      # one bridge, sessions in its memory
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_store::node::TransportConfig;
use keel_store::{Nodes, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The bridge's command line.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// memcached nodes (`n1:host:port,…`); `None` with `--memory`.
    pub nodes: Option<Nodes>,
    /// Size limit and default TTL.
    pub config: StoreConfig,
    /// memcached timeouts and retry delay.
    pub transport: TransportConfig,
}

/// The usage line.
pub const USAGE: &str = "keel bridge --listen ADDR (--nodes n1:host:port,... [--failover-nodes IDS] | --memory) [--max-state-bytes N] [--op-timeout-ms N] [--retry-delay-ms N]";

impl BridgeArgs {
    /// Parses the arguments after `bridge`; the error names the flag.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut listen = None;
        let mut nodes = None;
        let mut failover = String::new();
        let mut memory = false;
        let mut config = StoreConfig::default();
        let mut transport = TransportConfig::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--memory" {
                memory = true;
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))?;
            let ms = |v: &str| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("{flag}: {v:?} is not a positive number of ms"))
            };
            match flag.as_str() {
                "--listen" => {
                    listen = Some(
                        value
                            .parse()
                            .map_err(|e| format!("--listen: {value:?}: {e}"))?,
                    );
                }
                "--nodes" => nodes = Some(value.clone()),
                "--failover-nodes" => failover.clone_from(value),
                "--max-state-bytes" => {
                    config.max_state_bytes = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1024 * 1024).contains(n))
                        .ok_or_else(|| {
                            format!("--max-state-bytes: {value:?} is not 1..=1048576")
                        })?;
                }
                "--op-timeout-ms" => transport.op_timeout = ms(value)?,
                "--retry-delay-ms" => transport.retry_delay = ms(value)?,
                other => return Err(format!("unknown flag {other:?}; usage: {USAGE}")),
            }
        }
        let listen = listen.ok_or_else(|| format!("--listen is required; usage: {USAGE}"))?;
        let nodes = match (nodes, memory) {
            (Some(n), false) => {
                Some(Nodes::parse(&n, &failover).map_err(|e| format!("--nodes: {e}"))?)
            }
            (None, true) if failover.is_empty() => None,
            _ => return Err(format!("give --nodes or --memory; usage: {USAGE}")),
        };
        Ok(BridgeArgs {
            listen,
            nodes,
            config,
            transport,
        })
    }

    /// The store these arguments describe.
    pub fn store(&self) -> Store {
        match &self.nodes {
            Some(nodes) => Store::memcached(nodes, self.transport.clone(), self.config.clone()),
            None => Store::memory(self.config.clone()),
        }
    }
}

/// The largest request body the bridge reads: the largest state, with room to spare.
fn body_limit(store: &Store) -> usize {
    store.config().max_state_bytes + 1024
}

/// Serves the store's API on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    log::warn!("bridge: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let store = store.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&store, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn handle(store: &Store, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/metrics" {
        let text = crate::metrics::render_store(store.metrics_snapshot());
        return Response::new(Full::new(Bytes::from(text)));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, body_limit(store)).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let (status, text) = if e.downcast_ref::<LengthLimitError>().is_some() {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            } else {
                (StatusCode::BAD_REQUEST, "request body incomplete\n")
            };
            let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            *r.status_mut() = status;
            return r;
        }
    };
    keel_store::api::handle(store, Request::from_parts(parts, body))
        .await
        .map(Full::new)
}
