//! The client-facing listeners: accept, optional TLS (ALPN picks h2 or http/1.1), hyper's
//! automatic HTTP/1.1 + HTTP/2 server, idle connections shut down ([`idle`]), and graceful
//! shutdown (stop accepting, let in-flight requests finish up to the grace deadline).

mod framing;
mod idle;
pub mod tls;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::proxy::ConnInfo;
use crate::proxy::body::Keep;
use crate::runtime::Shared;
use framing::Sniff;
use idle::Activity;

/// A bound listener.
pub struct Bound {
    /// The socket.
    pub listener: TcpListener,
    /// TLS, if configured.
    pub tls: Option<TlsAcceptor>,
}

/// Binds every configured listener (before serving, so that errors come early).
pub async fn bind(shared: &Shared) -> Result<Vec<Bound>, String> {
    let proxy = shared.current();
    let mut out = Vec::new();
    for (i, l) in proxy.settings.listeners.iter().enumerate() {
        let listener = TcpListener::bind(l.address)
            .await
            .map_err(|e| format!("listeners[{i}].address: cannot bind {}: {e}", l.address))?;
        let tls = match &l.tls {
            Some((cert, key)) => {
                Some(tls::acceptor(cert, key).map_err(|e| format!("listeners[{i}].tls: {e}"))?)
            }
            None => None,
        };
        out.push(Bound { listener, tls });
    }
    Ok(out)
}

fn builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let lim = &shared.current().settings.config.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(lim.header_read_timeout.0)
        .max_headers(lim.max_headers)
        .max_buf_size(lim.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(lim.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Serves one accepted connection (plain or TLS, behind the framing sniffer): hyper's automatic
/// HTTP/1.1 + HTTP/2 with upgrades, to its end, or, when keel shuts down or the connection has
/// been idle for `idle_timeout`, into a graceful shutdown and then to its end.
async fn serve_connection<T>(
    builder: &auto::Builder<TokioExecutor>,
    io: Sniff<T>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (remote, what) = (
        conn.remote,
        if conn.tls.is_some() {
            "TLS connection"
        } else {
            "connection"
        },
    );
    let activity = Arc::new(Activity::default());
    let svc = service(shared, conn, activity.clone());
    let mut c = pin!(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned()
    );
    let ended = tokio::select! {
        r = c.as_mut() => Some(r),
        _ = stop.wait_for(|stop| *stop) => None,
        () = activity.idle_for(idle_timeout) => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = result {
        log::debug!("{what} from {remote}: {e}");
    }
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
    let builder = Arc::new(builder(&shared));
    let idle_timeout = shared.current().settings.config.limits.idle_timeout.0;
    // Every connection task holds a sender: once all are dropped, every connection has ended.
    let (live, mut ended) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = bound.listener.accept() => a,
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
        let builder = builder.clone();
        let shared = shared.clone();
        let tls = bound.tls.clone();
        let stop = shutdown.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let _live = live;
            let ambiguous = Arc::new(AtomicBool::new(false));
            let Some(acceptor) = tls else {
                let conn = Arc::new(ConnInfo {
                    remote,
                    local,
                    tls: None,
                    ambiguous_framing: ambiguous.clone(),
                });
                let io = Sniff::new(tcp, ambiguous);
                serve_connection(&builder, io, shared, conn, idle_timeout, stop).await;
                return;
            };
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("TLS handshake from {remote}: {e}");
                    return;
                }
            };
            let (_, sc) = stream.get_ref();
            let info = tls::info(sc);
            let h2 = tls::is_h2(sc);
            let conn = Arc::new(ConnInfo {
                remote,
                local,
                tls: Some(info),
                ambiguous_framing: ambiguous.clone(),
            });
            // HTTP/2 has no such ambiguity (h2 rejects Transfer-Encoding).
            let io = if h2 {
                Sniff::off(stream)
            } else {
                Sniff::new(stream, ambiguous)
            };
            serve_connection(&builder, io, shared, conn, idle_timeout, stop).await;
        });
    }
    drop(bound.listener);
    drop(live);
    log::info!("{local}: stopped accepting; waiting up to {grace:?} for in-flight requests");
    if tokio::time::timeout(grace, ended.recv()).await.is_err() {
        log::warn!("{local}: grace period over; closing remaining connections");
    }
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The proxy as hyper's service; each response body carries the request's [`idle::Active`]
/// until it is done.
fn service(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::upstream::Body>,
    Error = std::convert::Infallible,
    Future = impl Future<
        Output = Result<http::Response<crate::upstream::Body>, std::convert::Infallible>,
    > + Send,
> + Clone {
    service_fn(move |req| {
        let proxy = shared.current();
        let conn = conn.clone();
        let active = activity.begin();
        async move {
            let res = proxy.handle(req, conn).await;
            Ok(res.map(|body| Keep::new(body, active).boxed_unsync()))
        }
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
