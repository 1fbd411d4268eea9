//! The client-facing listeners: a socket per listener and worker ([`bind`], [`run_worker`]),
//! accept, optional TLS (ALPN picks h2 or http/1.1), each connection's next request head read
//! whole before hyper serves it ([`whole_head`]), HTTP/1.1 as sessions of hyper's HTTP/1 server
//! between which an idle connection is parked ([`http1`]), HTTP/2 by hyper's automatic server,
//! idle connections shut down ([`idle`]), and graceful shutdown (stop accepting, let in-flight
//! requests finish up to the grace deadline).

#[macro_use]
mod write_through;
mod certificate;
mod framing;
mod http1;
mod idle;
pub mod tls;
mod whole_head;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::proxy::body::Keep;
use crate::proxy::{ConnInfo, headers};
use crate::recycled::Recycled;
use crate::runtime::Shared;
use framing::Sniff;
use http1::{Ended, UpgradeSlot};
use idle::{Activity, Holding};
use whole_head::WholeHead;

/// A bound listening socket of one worker.
pub struct Bound {
    /// The socket (non-blocking; registered with the worker's runtime when it serves).
    pub listener: std::net::TcpListener,
    /// TLS, if configured.
    pub tls: Option<tls::ListenerTls>,
}

/// Binds every configured listener once per worker, all on the same address with
/// `SO_REUSEPORT` (the kernel spreads new connections over the workers' sockets; port 0 is
/// resolved by the first socket), before anything serves, so that errors come early. The
/// result is indexed `[worker][listener]`.
pub fn bind(shared: &Shared, workers: usize) -> Result<Vec<Vec<Bound>>, String> {
    let proxy = shared.current();
    let mut out: Vec<Vec<Bound>> = (0..workers.max(1)).map(|_| Vec::new()).collect();
    for (i, l) in proxy.settings.listeners.iter().enumerate() {
        let tls = match &l.tls {
            Some((cert, key)) => {
                Some(tls::acceptor(cert, key).map_err(|e| format!("listeners[{i}].tls: {e}"))?)
            }
            None => None,
        };
        let mut address = l.address;
        for sockets in &mut out {
            let listener = reuse_port_listener(address)
                .map_err(|e| format!("listeners[{i}].address: cannot bind {address}: {e}"))?;
            address = listener
                .local_addr()
                .map_err(|e| format!("listeners[{i}].address: {e}"))?;
            sockets.push(Bound {
                listener,
                tls: tls.clone(),
            });
        }
    }
    Ok(out)
}

/// A non-blocking listening socket on `address` that other sockets may share (also the
/// benchmark's floor under keel, `host/examples/hyper_floor.rs`).
pub fn reuse_port_listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Runs worker `index` on `runtime` (a single-threaded one, see [`crate::worker`]): serves its
/// sockets until `shutdown` turns true and their connections are done (or `grace` is over).
pub fn run_worker(
    index: usize,
    runtime: tokio::runtime::Runtime,
    sockets: Vec<Bound>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    crate::worker::enter(index);
    runtime.block_on(async {
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|b| tokio::spawn(serve(b, shared.clone(), shutdown.clone(), grace)))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
}

fn builders(shared: &Shared) -> Builders {
    let lim = &shared.current().settings.config.limits;
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(lim.max_header_bytes).unwrap_or(u32::MAX));
    Builders {
        http1: http1::builder(shared),
        auto,
    }
}

/// The limits of a client connection (`limits`).
#[derive(Clone, Copy)]
struct ConnLimits {
    /// No request in flight this long: graceful shutdown.
    idle: Duration,
    /// HTTP/1: no whole request head this long: closed.
    head: Duration,
    /// HTTP/1: the client took none of the output this long: closed.
    send: Duration,
    /// The longest request head (hyper refuses a longer one).
    head_bytes: usize,
}

/// hyper's servers for a worker's connections.
struct Builders {
    http1: hyper::server::conn::http1::Builder,
    auto: auto::Builder<TokioExecutor>,
}

/// Serves one accepted connection (plain or TLS, behind the framing sniffer): its next request
/// head is read whole before hyper takes the connection ([`whole_head`]), unless keel shuts down
/// or `header_read_timeout` (or `idle_timeout`, if shorter) passes first; then HTTP/2 goes to
/// [`serve_h2`] and HTTP/1 to [`http1::session`], again after each time it was parked.
async fn serve_connection<T>(
    builders: &Builders,
    io: Sniff<T>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = WholeHead::new(io);
    // No request in flight yet: the idle timeout holds too, if it is the shorter.
    let mut wait = limits.head.min(limits.idle);
    let mut parked: Option<Open> = None;
    loop {
        tokio::select! {
            read = io.fill(limits.head_bytes) => if let Err(e) = read {
                log::debug!("connection from {}: {e}", conn.remote);
                return;
            },
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(wait) => {
                log::debug!(
                    "connection from {}: no request head within {wait:?}: closed",
                    conn.remote
                );
                return;
            }
        }
        drop(parked.take());
        if io.is_h2_preface() {
            // Boxed: a connection that waits for a head holds a small task, not hyper's state.
            Box::pin(serve_h2(&builders.auto, io, shared, conn, limits, stop)).await;
            return;
        }
        let session = http1::session(
            &builders.http1,
            io,
            shared.clone(),
            conn.clone(),
            limits,
            stop.clone(),
        );
        match Box::pin(session).await {
            Ended::Closed => return,
            Ended::Parked(next) => {
                log::trace!("connection from {}: parked", conn.remote);
                parked = Some(Open::new(&shared.metrics.client_connections_parked));
                io = next;
                // It has been idle since before it was parked.
                wait = limits
                    .head
                    .min(limits.idle)
                    .saturating_sub(http1::PARK_AFTER);
            }
        }
    }
}

/// hyper's HTTP/2 server on a connection, to its end, or, when keel shuts down or the
/// connection has been idle for `idle_timeout`, into a graceful shutdown (GOAWAY) and then to
/// its end.
async fn serve_h2<T>(
    builder: &auto::Builder<TokioExecutor>,
    io: WholeHead<T>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = conn.remote;
    let tls = conn.tls.is_some();
    let activity = Arc::new(Activity::default());
    let svc = service(shared, conn, activity.clone(), None);
    let mut c = pin!(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned()
    );
    let head_overdue = || head_overdue(&activity, limits.head, tls, remote);
    let ended = tokio::select! {
        r = c.as_mut() => Some(r),
        _ = stop.wait_for(|stop| *stop) => None,
        () = activity.idle_for(limits.idle) => None,
        () = head_overdue() => return,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            c.as_mut().graceful_shutdown();
            // A head still on its way keeps its deadline while the connection winds down.
            tokio::select! {
                r = c.as_mut() => r,
                () = head_overdue() => return,
            }
        }
    };
    if let Err(e) = result {
        log::debug!("{} from {remote}: {e}", what(tls));
    }
}

/// How log lines name a client connection.
fn what(tls: bool) -> &'static str {
    if tls { "TLS connection" } else { "connection" }
}

/// Resolves, with a log line, when an HTTP/1 connection has waited `timeout` for a whole
/// request head ([`Activity::head_overdue`]).
async fn head_overdue(activity: &Activity, timeout: Duration, tls: bool, remote: SocketAddr) {
    activity.head_overdue(timeout).await;
    head_overdue_log(timeout, tls, remote);
}

/// The log line for an HTTP/1 connection closed without a whole request head in `timeout`.
fn head_overdue_log(timeout: Duration, tls: bool, remote: SocketAddr) {
    log::debug!(
        "{} from {remote}: no request head within {timeout:?}: closed",
        what(tls)
    );
}

/// Serves one listener until `shutdown` turns true, then waits up to `grace` for its
/// connections to finish their requests.
pub async fn serve(
    bound: Bound,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let local = bound
        .listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let listener = match TcpListener::from_std(bound.listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{local}: cannot serve on this runtime: {e}");
            return;
        }
    };
    let builders = Arc::new(builders(&shared));
    let limits = {
        let lim = &shared.current().settings.config.limits;
        ConnLimits {
            idle: lim.idle_timeout.0,
            head: lim.header_read_timeout.0,
            send: lim.send_timeout.0,
            head_bytes: lim.max_header_bytes,
        }
    };
    // Every connection task holds a sender: once all are dropped, every connection has ended.
    let (live, mut ended) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, remote) = match accepted {
            // An IPv4 client on a dual-stack listener is 1.2.3.4, not ::ffff:1.2.3.4.
            Ok((tcp, remote)) => (tcp, canonical(remote)),
            Err(e) => {
                log::warn!("accept on {local}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // The address this connection reached (a wildcard listener's is 0.0.0.0 or ::).
        let local = tcp.local_addr().map_or(local, canonical);
        let builders = builders.clone();
        let shared = shared.clone();
        let tls = bound.tls.clone();
        let stop = shutdown.clone();
        let live = live.clone();
        let open = Open::new(&shared.metrics.client_connections);
        tokio::spawn(async move {
            let _live = (live, open);
            let Some(listener_tls) = tls else {
                let ambiguous = Arc::new(AtomicBool::new(false));
                let conn = Arc::new(ConnInfo {
                    id: next_connection_id(),
                    remote,
                    remote_ip: headers::ip_value(remote.ip()),
                    local,
                    tls: None,
                    downstream_tls: None,
                    ambiguous_framing: ambiguous.clone(),
                });
                let io = Sniff::new(tcp, ambiguous);
                serve_connection(&builders, io, shared, conn, limits, stop).await;
                return;
            };
            // Boxed: a plain connection's task stays the size of the plain path.
            Box::pin(serve_tls(
                listener_tls,
                tcp,
                remote,
                local,
                &builders,
                shared,
                limits,
                stop,
            ))
            .await;
        });
    }
    drop(listener);
    drop(live);
    log::info!("{local}: stopped accepting; waiting up to {grace:?} for in-flight requests");
    if tokio::time::timeout(grace, ended.recv()).await.is_err() {
        log::warn!("{local}: grace period over; closing remaining connections");
    }
}

/// The TLS handshake, then the connection as [`serve_connection`] serves it.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    listener_tls: tls::ListenerTls,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    builders: &Builders,
    shared: Arc<Shared>,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
) {
    let stream = match listener_tls.acceptor.accept(tcp).await {
        Ok(s) => s,
        Err(e) => {
            log::debug!("TLS handshake from {remote}: {e}");
            return;
        }
    };
    let (_, sc) = stream.get_ref();
    let info = tls::info(sc);
    let downstream_tls = Some(Arc::new(tls::for_filters(sc, &info, &listener_tls)));
    let h2 = tls::is_h2(sc);
    let ambiguous = Arc::new(AtomicBool::new(false));
    let conn = Arc::new(ConnInfo {
        id: next_connection_id(),
        remote,
        remote_ip: headers::ip_value(remote.ip()),
        local,
        tls: Some(info),
        downstream_tls,
        ambiguous_framing: ambiguous.clone(),
    });
    // HTTP/2 has no such ambiguity (h2 rejects Transfer-Encoding).
    let io = if h2 {
        Sniff::off(stream)
    } else {
        Sniff::new(stream, ambiguous)
    };
    serve_connection(builders, io, shared, conn, limits, stop).await;
}

/// Counts a client connection while it lives (`keel_client_connections`), or while it is
/// parked (`keel_client_connections_parked`).
struct Open(prometheus::IntGauge);

impl Open {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as plain IPv4.
/// The next client connection's number (from 1, unique in the process).
fn next_connection_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A response body as hyper sends it: the proxy's, carrying the request's [`idle::Active`]
/// (not boxed again).
type ResBody = Keep<idle::Active>;

/// A response of the proxy, on the heap: an HTTP/1 session is driven with hyper's
/// `poll_without_shutdown`, which needs a future that can move; in a recycled block, since
/// every request makes one (about 3.4 KB).
type Responding = Recycled<Result<http::Response<ResBody>, std::convert::Infallible>>;

/// The proxy as hyper's service; each response body carries the request's [`idle::Active`]
/// until it is done. On an HTTP/1 session an upgrade request's handle is keel's
/// ([`UpgradeSlot::prepare`]).
fn service(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    activity: Arc<Activity>,
    upgrades: Option<Arc<UpgradeSlot>>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<ResBody>,
    Error = std::convert::Infallible,
    Future = Responding,
> + Clone {
    service_fn(move |req| -> Responding {
        let proxy = shared.current();
        let conn = conn.clone();
        let active = activity.begin();
        let mut req = req.map(|body| Holding::new(body, activity.hold()));
        if req.version() == http::Version::HTTP_2 {
            activity.mark_h2();
        }
        if let Some(upgrades) = &upgrades {
            upgrades.prepare(&mut req);
        }
        Recycled::new(async move {
            let res = proxy.handle(req, conn).await;
            Ok(res.map(|body| Keep::new(body, active)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn ipv4_mapped_addresses_become_plain_ipv4() {
        let mapped: std::net::SocketAddr = "[::ffff:10.1.2.3]:40000"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(canonical(mapped).to_string(), "10.1.2.3:40000");
        let v6: std::net::SocketAddr = "[2001:db8::1]:443"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(canonical(v6), v6, "a real IPv6 address stays");
    }
}
