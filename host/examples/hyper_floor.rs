//! The floor under keel, for `cargo xtask bench`: the least an HTTP/1 reverse proxy built on
//! the same libraries (hyper, tokio) does per request, with keel's threading model and none of
//! keel's own work. It tells how much of keel's CPU per request is keel's and how much the
//! libraries'; it is a reference row of the benchmark, not a proxy to run.
//!
//! * One single-threaded tokio runtime per worker, each with its own `SO_REUSEPORT` listener and
//!   its own pool of member connections, as keel's workers (`host/src/worker.rs`).
//! * Every request goes to the one member (as a sticky session does) on a pooled keep-alive
//!   connection, without its hop-by-hop headers (keel's own `remove_hop_by_hop`: what any proxy
//!   must do); the response comes back the same way. A connection goes back to the pool when
//!   its response body has ended.
//! * No filters, balancer, health checks, metrics, timeouts, forwarding headers or logging. A
//!   member that cannot be reached is a bare 502.
//!
//! `hyper_floor <listen address> <member address> [workers]`; it prints
//! `hyper_floor: listening on <address>` when it serves, and runs until it is killed.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Either;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keel::proxy::headers::remove_hop_by_hop;

/// A worker's idle member connections.
type Pool = Rc<RefCell<Vec<SendRequest<Incoming>>>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(member)) = (args.get(1), args.get(2)) else {
        bail!("usage: hyper_floor <listen address> <member address> [workers]");
    };
    let listen: SocketAddr = listen.parse().context("listen address")?;
    let member: SocketAddr = member.parse().context("member address")?;
    let workers = match args.get(3) {
        Some(n) => n.parse().context("workers")?,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let mut address = listen;
    let mut threads = Vec::new();
    for _ in 0..workers.max(1) {
        // The same listening socket as keel's workers'.
        let listener = keel::server::reuse_port_listener(address)
            .with_context(|| format!("cannot bind {address}"))?;
        address = listener.local_addr()?;
        threads.push(std::thread::spawn(move || serve(listener, member)));
    }
    println!("hyper_floor: listening on {address}");
    for thread in threads {
        if let Ok(Err(e)) = thread.join() {
            eprintln!("hyper_floor: {e:#}");
        }
    }
    Ok(())
}

/// One worker: accepts and serves its connections on a single-threaded runtime.
fn serve(listener: std::net::TcpListener, member: SocketAddr) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let pool = Pool::default();
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors, say: the worker goes on once some are back.
                    eprintln!("hyper_floor: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let service = hyper::service::service_fn(move |request| {
                    forward(request, member, pool.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    })
}

/// The response body, handing its member connection back to the pool once it has ended.
type Answer = Either<GiveBack, Empty<Bytes>>;

async fn forward(
    mut request: Request<Incoming>,
    member: SocketAddr,
    pool: Pool,
) -> Result<Response<Answer>, Infallible> {
    let Ok(mut sender) = checkout(member, &pool).await else {
        return Ok(bad_gateway());
    };
    remove_hop_by_hop(request.headers_mut());
    match sender.send_request(request).await {
        Ok(mut response) => {
            remove_hop_by_hop(response.headers_mut());
            Ok(response.map(|body| {
                Either::Left(GiveBack {
                    body,
                    sender: Some(sender),
                    pool,
                })
            }))
        }
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<Answer> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// An idle pooled connection that is still open, or a new one.
async fn checkout(member: SocketAddr, pool: &Pool) -> Result<SendRequest<Incoming>> {
    loop {
        let idle = pool.borrow_mut().pop();
        let Some(mut sender) = idle else { break };
        // Ready once its connection task has seen the last response's end; an error if the
        // member closed it.
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let tcp = tokio::net::TcpStream::connect(member).await?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::task::spawn_local(connection);
    Ok(sender)
}

/// A member's response body; its connection goes back to the pool at the body's end.
struct GiveBack {
    body: Incoming,
    sender: Option<SendRequest<Incoming>>,
    pool: Pool,
}

impl GiveBack {
    fn give_back(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.borrow_mut().push(sender);
        }
    }
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        // hyper's server drops an empty body (HEAD, 204, 304, `Content-Length: 0`) without
        // polling it: its connection is done all the same.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

impl Body for GiveBack {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            // Trailers end a body; hyper's server reads nothing after them.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || self.body.is_end_stream() => {
                self.give_back();
            }
            Poll::Ready(Some(Err(_))) => self.sender = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
