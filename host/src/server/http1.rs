//! An HTTP/1 client connection as a series of hyper sessions. hyper serves requests until the
//! connection ends, keel shuts down, the connection is idle for `idle_timeout` (closed), a head
//! is overdue (closed), the client takes none of its output for `send_timeout` (closed) — or
//! the connection has been idle for [`PARK_AFTER`]: then keel *parks*
//! it. hyper lets it go with the bytes it had read of the next head
//! (`poll_without_shutdown`, `into_parts`), its connection state goes (an 8 KiB read buffer, an
//! 8 KiB write buffer, the dispatcher), and keel waits for the next head with a buffer just as
//! large as the bytes that come ([`WholeHead`]); a new session starts when it is whole. A busy
//! connection is never parked, so the cost of a new session falls only on requests that come
//! after a pause. An upgrade (101) hands the connection to the tunnel through the request's
//! [`ClientUpgrade`].

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use super::idle::{Activity, Quiet, Watched, watched};
use super::whole_head::WholeHead;
use super::{ConnLimits, service};
use crate::proxy::ConnInfo;
use crate::proxy::upgrade::{ClientIo, ClientUpgrade};
use crate::runtime::Shared;

/// How long an HTTP/1 connection carries no request before keel parks it.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// Where a session's upgrade request leaves the way to hand the connection to its tunnel.
#[derive(Default)]
pub struct UpgradeSlot(Mutex<Option<oneshot::Sender<Box<dyn ClientIo>>>>);

impl UpgradeSlot {
    /// Replaces hyper's upgrade handle of an upgrade request with keel's (a session is served
    /// without hyper's upgrade support, which would not let the connection be parked).
    pub fn prepare<B>(&self, req: &mut http::Request<B>) {
        if req
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>()
            .is_none()
        {
            return;
        }
        let (to_tunnel, client) = oneshot::channel();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(to_tunnel);
        }
        req.extensions_mut().insert(ClientUpgrade::new(client));
    }

    /// The way to the tunnel, if a 101 went out for an upgrade request (its tunnel waits).
    fn take(&self) -> Option<oneshot::Sender<Box<dyn ClientIo>>> {
        self.0
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .filter(|to_tunnel| !to_tunnel.is_closed())
    }
}

/// How a session ended.
pub enum Ended<T> {
    /// The connection is done (closed, upgraded, shut down).
    Closed,
    /// The connection was parked: the next head is to be waited for.
    Parked(WholeHead<T>),
}

/// hyper's HTTP/1 server for a session.
pub fn builder(shared: &Shared) -> http1::Builder {
    let lim = &shared.current().settings.config.limits;
    let mut b = http1::Builder::new();
    // The head deadline is the connection's own (`idle::Activity::head_overdue`): hyper's
    // arms a timer for every request head, and each wakes the runtime through its eventfd.
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(lim.max_headers)
        .max_buf_size(lim.max_header_bytes.max(8192));
    b
}

/// Serves one session of the connection `io` (its next head whole, or as much of it as came).
pub async fn session<T>(
    builder: &http1::Builder,
    io: WholeHead<T>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) -> Ended<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (remote, tls) = (conn.remote, conn.tls.is_some());
    let activity = Arc::new(Activity::default());
    let upgrades = Arc::new(UpgradeSlot::default());
    let svc = service(shared, conn, activity.clone(), Some(upgrades.clone()));
    let io = watched(io, activity.clone());
    let mut c = builder.serve_connection(TokioIo::new(io), svc);
    // The first quiet moment that ends the session, polled as one timer with the send limit:
    // at `PARK_AFTER` it is parked (when the idle timeout is longer), at the head timeout it
    // is closed, at the idle timeout it winds down; the shortest comes first.
    let park = limits.idle > PARK_AFTER;
    let (quiet_after, on_quiet) = [
        (limits.head, OnQuiet::HeadOverdue),
        (limits.idle, OnQuiet::Close),
        (if park { PARK_AFTER } else { Duration::MAX }, OnQuiet::Park),
    ]
    .into_iter()
    .min_by_key(|(after, _)| *after)
    .unwrap_or((limits.idle, OnQuiet::Close));
    let stopped = async {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    // Why the session is being wound down, if it is.
    let winding = tokio::select! {
        r = poll_fn(|cx| c.poll_without_shutdown(cx)) => Err(r),
        () = stopped => Ok(Wind::Close),
        quiet = activity.quiet(quiet_after, Some(limits.send)) => match (quiet, on_quiet) {
            (Quiet::Idle, OnQuiet::Park) => Ok(Wind::Park(activity.begun())),
            (Quiet::Idle, OnQuiet::Close) => Ok(Wind::Close),
            (Quiet::Idle, OnQuiet::HeadOverdue) => {
                super::head_overdue_log(limits.head, tls, remote);
                return Ended::Closed;
            }
            (Quiet::Stalled, _) => {
                stalled(tls, remote, limits.send);
                return Ended::Closed;
            }
        },
    };
    let winding = match winding {
        Ok(winding) => winding,
        Err(r) => return finish(c, r, &upgrades, &limits, tls, remote).await,
    };
    Pin::new(&mut c).graceful_shutdown();
    // A head still on its way keeps its deadline while the session winds down.
    let r = tokio::select! {
        r = poll_fn(|cx| c.poll_without_shutdown(cx)) => r,
        quiet = activity.quiet(limits.head, Some(limits.send)) => {
            match quiet {
                Quiet::Idle => super::head_overdue_log(limits.head, tls, remote),
                Quiet::Stalled => stalled(tls, remote, limits.send),
            }
            return Ended::Closed;
        }
    };
    match winding {
        // No request came meanwhile (hyper would have told it the connection closes).
        Wind::Park(begun) if r.is_ok() && activity.begun() == begun => {
            let parts = c.into_parts();
            let mut io = parts.io.into_inner().into_inner();
            io.resume(&parts.read_buf);
            Ended::Parked(io)
        }
        _ => finish(c, r, &upgrades, &limits, tls, remote).await,
    }
}

/// What the first quiet moment of a session means.
#[derive(Clone, Copy)]
enum OnQuiet {
    /// The head timeout: closed.
    HeadOverdue,
    /// The idle timeout: wound down and closed.
    Close,
    /// [`PARK_AFTER`]: parked.
    Park,
}

/// Why a session is wound down.
enum Wind {
    Close,
    /// Parked, if no request begins after the `begun`th.
    Park(u64),
}

/// The log line for a client that took none of its output for `limit`.
fn stalled(tls: bool, remote: std::net::SocketAddr, limit: Duration) {
    log::debug!(
        "{} from {remote}: the client took nothing for {limit:?}: closed",
        super::what(tls)
    );
}

/// The end of a session that is not parked: an upgraded connection goes to its tunnel, any
/// other is shut down (TLS: close_notify, given at most `send_timeout`: a client that takes
/// nothing more cannot hold it) and closed.
async fn finish<T, S>(
    c: http1::Connection<TokioIo<Watched<WholeHead<T>>>, S>,
    result: hyper::Result<()>,
    upgrades: &UpgradeSlot,
    limits: &ConnLimits,
    tls: bool,
    remote: std::net::SocketAddr,
) -> Ended<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = super::ResBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Err(e) = result {
        log::debug!("{} from {remote}: {e}", super::what(tls));
        return Ended::Closed;
    }
    let parts = c.into_parts();
    let mut io = parts.io.into_inner().into_inner();
    io.resume(&parts.read_buf);
    match upgrades.take() {
        Some(to_tunnel) => {
            // The tunnel is gone only if its member side failed: nothing to do then.
            let _ = to_tunnel.send(Box::new(io));
        }
        None => {
            if tokio::time::timeout(limits.send, io.shutdown())
                .await
                .is_err()
            {
                stalled(tls, remote, limits.send);
            }
        }
    }
    Ended::Closed
}
