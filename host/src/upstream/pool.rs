//! The HTTP/1.1 connections of one member on one worker: connected on demand (with the connect
//! timeout), kept while idle (at most `pool_max_idle`, for at most `pool_idle_timeout`), and
//! reused last-in first-out, so that the warmest connection serves the next request.
//!
//! Each connection is hyper's client connection (`hyper::client::conn::http1`) driven by a task
//! of the worker that opened it. A response hands its connection back to the pool when its body
//! ends ([`PooledBody`]), so a request costs no pool-wide lookup, no task spawned per exchange
//! and no lock held across an await. Upgrades (101) keep their connection: it becomes the
//! tunnel. A connection that idled past the timeout is dropped by the next checkout or checkin,
//! or by the sweep that runs while idle connections exist and no request comes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::write_deadline::with_deadline;
use super::{Body, BoxError, UpstreamError};

/// One member's connections on one worker.
pub(crate) struct Pool {
    address: SocketAddr,
    connect_timeout: Duration,
    /// How long a write may wait for the member ([`with_deadline`]).
    write_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    state: Mutex<Idle>,
}

/// The idle connections, oldest first, and whether a sweep is waiting for them.
#[derive(Default)]
struct Idle {
    connections: Vec<IdleConnection>,
    sweeping: bool,
}

struct IdleConnection {
    sender: SendRequest<Body>,
    local: SocketAddr,
    since: Instant,
}

/// A connection taken from the pool (or just opened) for one request.
pub(crate) struct Connection {
    pub(crate) sender: SendRequest<Body>,
    /// The connection's local address (`upstream.local_address`).
    pub(crate) local: SocketAddr,
    /// Whether it served a request before (a send that fails on it before anything was written
    /// is an idle close racing the request, and the request may go again).
    pub(crate) reused: bool,
    /// How long it had been idle in the pool (zero for a new one).
    pub(crate) idle: Duration,
}

impl Pool {
    pub(crate) fn new(
        address: SocketAddr,
        connect_timeout: Duration,
        write_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Self {
            address,
            connect_timeout,
            write_timeout,
            idle_timeout,
            max_idle,
            state: Mutex::new(Idle::default()),
        }
    }

    /// The member's address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// The most recently used idle connection that is still open, or a new one.
    pub(crate) async fn checkout(self: &Arc<Self>) -> Result<Connection, UpstreamError> {
        loop {
            let idle = {
                let mut state = self.lock();
                self.expire(&mut state.connections, Instant::now());
                state.connections.pop()
            };
            let Some(idle) = idle else { break };
            // Only ready connections are idle (see `checkin`); one that closed since, or that
            // the member left in a state hyper cannot reuse, is let go.
            if !idle.sender.is_ready() {
                continue;
            }
            return Ok(Connection {
                sender: idle.sender,
                local: idle.local,
                reused: true,
                idle: idle.since.elapsed(),
            });
        }
        self.connect().await
    }

    /// Opens a connection and hands its driving task to the current worker.
    pub(crate) async fn connect(&self) -> Result<Connection, UpstreamError> {
        let timeout = self.connect_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.address))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(timeout))?
            .map_err(|e| UpstreamError::Connect(format!("{}: {e}", self.address)))?;
        // Requests are written whole: Nagle's delay would only hold the last segment back.
        stream
            .set_nodelay(true)
            .map_err(|e| UpstreamError::Connect(format!("{}: TCP_NODELAY: {e}", self.address)))?;
        let local = stream
            .local_addr()
            .map_err(|e| UpstreamError::Connect(format!("{}: local address: {e}", self.address)))?;
        let stream = with_deadline(stream, self.write_timeout);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Connect(format!("{}: {e}", self.address)))?;
        let address = self.address;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                log::debug!("connection to member {address} ended: {e}");
            }
        });
        Ok(Connection {
            sender,
            local,
            reused: false,
            idle: Duration::ZERO,
        })
    }

    /// Takes a connection back after its exchange ended (the response body read to its end).
    /// hyper's connection task has usually seen the end first and is ready for the next
    /// request; if not (a member that answered before it read the whole request body), the
    /// connection comes back once it is, from a task of its own.
    fn checkin(self: &Arc<Self>, mut sender: SendRequest<Body>, local: SocketAddr) {
        if sender.is_closed() {
            return;
        }
        if !sender.is_ready() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pool = self.clone();
                runtime.spawn(async move {
                    if sender.ready().await.is_ok() {
                        pool.checkin(sender, local);
                    }
                });
            }
            return;
        }
        let now = Instant::now();
        let sweep = {
            let mut state = self.lock();
            self.expire(&mut state.connections, now);
            if state.connections.len() >= self.max_idle {
                return;
            }
            state.connections.push(IdleConnection {
                sender,
                local,
                since: now,
            });
            if state.sweeping {
                None
            } else {
                // Bodies end on the worker that owns the pool; outside a runtime (a body
                // dropped elsewhere) the next checkout or checkin expires the connection.
                let runtime = tokio::runtime::Handle::try_current().ok();
                state.sweeping = runtime.is_some();
                runtime
            }
        };
        if let Some(runtime) = sweep {
            runtime.spawn(sweep_while_idle(Arc::downgrade(self)));
        }
    }

    /// Drops the connections idle for longer than the timeout (the oldest are first).
    fn expire(&self, connections: &mut Vec<IdleConnection>, now: Instant) {
        let stale = connections
            .iter()
            .take_while(|c| now.saturating_duration_since(c.since) >= self.idle_timeout)
            .count();
        connections.drain(..stale);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while the lock was held cannot leave the list half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of idle connections (tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().connections.len()
    }
}

/// Closes the pool's connections once they idled past the timeout, for as long as the pool
/// holds any (one timer per pool while it has idle connections, none per request).
async fn sweep_while_idle(pool: Weak<Pool>) {
    loop {
        let wait = {
            let Some(pool) = pool.upgrade() else { return };
            let mut state = pool.lock();
            let now = Instant::now();
            pool.expire(&mut state.connections, now);
            match state.connections.first() {
                Some(oldest) => (oldest.since + pool.idle_timeout).saturating_duration_since(now),
                None => {
                    state.sweeping = false;
                    return;
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A response body that gives its connection back to the pool once it has been read to the end
/// (or, if it was empty, when it is dropped). A body dropped before its end takes the
/// connection with it: hyper closes a connection whose response was not read.
pub(crate) struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<Pool>, SendRequest<Body>, SocketAddr)>,
}

impl PooledBody {
    /// `connection` goes back to `pool` after `inner`; `None` keeps it out (an upgrade).
    pub(crate) fn new(inner: Incoming, back: Option<(Arc<Pool>, Connection)>) -> Self {
        Self {
            inner,
            back: back.map(|(pool, c)| (pool, c.sender, c.local)),
        }
    }

    fn give_back(&mut self) {
        if let Some((pool, sender, local)) = self.back.take() {
            pool.checkin(sender, local);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A member that answers every request on a connection with a small body, counting the
    /// connections it accepted.
    async fn member() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    fn pool(address: SocketAddr, idle_timeout: Duration, max_idle: usize) -> Arc<Pool> {
        Arc::new(Pool::new(
            address,
            Duration::from_secs(1),
            Duration::from_secs(5),
            idle_timeout,
            max_idle,
        ))
    }

    fn request() -> http::Request<Body> {
        http::Request::get("/")
            .header("host", "member")
            .body(super::super::empty_body())
            .unwrap()
    }

    async fn get(pool: &Arc<Pool>) -> (bool, Bytes) {
        let mut connection = pool.checkout().await.unwrap();
        let reused = connection.reused;
        let response = connection.sender.send_request(request()).await.unwrap();
        let body = PooledBody::new(response.into_body(), Some((pool.clone(), connection)));
        (reused, body.collect().await.unwrap().to_bytes())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_read_to_the_end_serves_the_next_request() {
        let (address, accepted) = member().await;
        let pool = pool(address, Duration::from_secs(60), 4);
        assert_eq!(get(&pool).await, (false, Bytes::from_static(b"ok")));
        assert_eq!(pool.idle(), 1);
        for _ in 0..3 {
            assert_eq!(get(&pool).await, (true, Bytes::from_static(b"ok")));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_are_closed_after_the_timeout_and_bounded_in_number() {
        let (address, accepted) = member().await;
        let pool = pool(address, Duration::from_millis(100), 1);
        // Two at once: two connections, of which the pool keeps one.
        let (mut a, mut b) = (
            pool.checkout().await.unwrap(),
            pool.checkout().await.unwrap(),
        );
        for c in [&mut a, &mut b] {
            let response = c.sender.send_request(request()).await.unwrap();
            response.into_body().collect().await.unwrap();
        }
        pool.checkin(a.sender, a.local);
        pool.checkin(b.sender, b.local);
        assert_eq!(pool.idle(), 1);
        // The sweep drops it once it idled past the timeout, with no request coming.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle(), 0);
        assert_eq!(get(&pool).await, (false, Bytes::from_static(b"ok")));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// A request body that comes as the test sends it.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for ChannelBody {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_still_sending_its_request_comes_back_only_when_it_is_done() {
        let (address, accepted) = member().await;
        let pool = pool(address, Duration::from_secs(60), 4);
        let mut first = pool.checkout().await.unwrap();
        let (body, rx) = tokio::sync::mpsc::channel(1);
        let request = http::Request::post("/")
            .header("host", "member")
            .header("content-length", "5")
            .body(ChannelBody(rx).boxed_unsync())
            .unwrap();
        // The member answers at the head, before the body.
        let response = first.sender.send_request(request).await.unwrap();
        let answer = PooledBody::new(response.into_body(), Some((pool.clone(), first)));
        assert_eq!(answer.collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(
            pool.idle(),
            0,
            "handed out while its request was still going"
        );
        // The next request does not wait for it: a second connection.
        assert_eq!(get(&pool).await, (false, Bytes::from_static(b"ok")));
        body.send(Bytes::from_static(b"hello")).await.unwrap();
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.idle() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            pool.idle(),
            2,
            "the first connection came back once its request was sent"
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_member_that_is_down_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let pool = pool(address, Duration::from_secs(60), 4);
        let error = pool.checkout().await.err().unwrap();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error}");
        assert!(!error.was_sent());
    }
}
