//! Idle client connections: one that carries no request for `limits.idle_timeout` is shut down
//! gracefully (HTTP/2: GOAWAY, then closed; HTTP/1.1: closed between requests). A request counts
//! from its head until its response body is done and its request body is dropped (read by the
//! member, or given up), so a slow backend, a long download or an upload that outlasts an early
//! answer never makes a connection idle; so does output the client has not taken yet
//! ([`Watched`]), for at most `send_timeout` ([`Activity::quiet`]). An HTTP/1 connection
//! whose next request head has not come whole within `header_read_timeout` (since it opened, or
//! since the last request ended) is closed ([`Activity::head_overdue`]): one deadline per
//! connection, no timer per request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::write_hook::{Hooked, WriteHook};

/// The requests in flight on one connection, and when the last one ended. Nothing wakes the
/// connection per request: [`idle_for`](Activity::idle_for) checks these when its one timer
/// fires, and sets it again for the earliest moment the connection can be idle.
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun so far.
    begun: AtomicU64,
    /// The connection speaks HTTP/2 (its requests say so): no head deadline.
    h2: AtomicBool,
    /// Since when a write waits for the client to take what was sent before ([`Watched`]), in
    /// nanoseconds after `start` plus one (0: none waits).
    write_blocked: AtomicU64,
    /// When the connection started.
    start: Instant,
    /// When the last request ended, in nanoseconds after `start` (0: none yet).
    last_end: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            write_blocked: AtomicU64::new(0),
            start: Instant::now(),
            last_end: AtomicU64::new(0),
        }
    }
}

/// A request in flight (or its request body still being read): dropped when it is done.
pub struct Active(Arc<Activity>);

impl Activity {
    /// A request starts.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    /// The request body of a request that began: the connection stays busy until the body is
    /// dropped (read by the member, or given up), even when the response ended first.
    pub fn hold(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    /// A write of the connection returned: `blocked` when it waits for the client. Output
    /// that waited counts as activity until it went.
    fn wrote(&self, blocked: bool) {
        if blocked {
            if self.write_blocked.load(Ordering::Acquire) == 0 {
                self.write_blocked
                    .store(self.now().saturating_add(1), Ordering::Release);
            }
        } else if self.write_blocked.load(Ordering::Acquire) != 0 {
            self.touch();
            self.write_blocked.store(0, Ordering::Release);
        }
    }

    /// Now, in nanoseconds after `start`.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Something happened on the connection now (the idle and head deadlines count from here).
    fn touch(&self) {
        self.last_end.fetch_max(self.now(), Ordering::AcqRel);
    }

    /// How many requests have begun.
    pub fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// The connection carries HTTP/2 (its streams are watched by hyper's own keep-alive).
    pub fn mark_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// Resolves when an HTTP/1 connection has waited `timeout` for a whole request head: since
    /// it opened, or since its last response ended (hyper's `header_read_timeout`, kept per
    /// connection instead of a timer per request). Never for HTTP/2.
    pub async fn head_overdue(&self, timeout: Duration) {
        self.idle_for(timeout).await;
        if self.h2.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once no request has been in flight for `timeout` in a row.
    pub async fn idle_for(&self, timeout: Duration) {
        self.quiet(timeout, None).await;
    }

    /// Resolves when no request has been in flight for `idle` in a row ([`Quiet::Idle`]) or,
    /// with a `send` limit, when a write has waited that long for the client to take earlier
    /// output, a client that reads nothing more ([`Quiet::Stalled`]) — whichever comes first.
    /// One timer for both, set again for the earliest moment either can be reached: a
    /// connection's task polls it at each wake-up, so one timer costs less than two.
    pub async fn quiet(&self, idle: Duration, send: Option<Duration>) -> Quiet {
        let now = Instant::now();
        let mut deadline = earliest(self.start + idle, send.map(|send| now + send));
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let now = Instant::now();
            let blocked = self.write_blocked.load(Ordering::Acquire);
            let stall_at = match send {
                None => None,
                Some(send) if blocked == 0 => Some(now + send),
                Some(send) => {
                    let since = self.start + Duration::from_nanos(blocked - 1);
                    if now.saturating_duration_since(since) >= send {
                        return Quiet::Stalled;
                    }
                    Some(since + send)
                }
            };
            let idle_at = if self.in_flight.load(Ordering::Acquire) > 0 || blocked != 0 {
                // Busy: it cannot be idle before a whole timeout after this request ends.
                now + idle
            } else {
                let ended =
                    self.start + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
                if now.saturating_duration_since(ended) >= idle {
                    return Quiet::Idle;
                }
                ended + idle
            };
            deadline = earliest(idle_at, stall_at);
        }
    }
}

/// What [`Activity::quiet`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// No request in flight for the idle time.
    Idle,
    /// A write waited the send limit for the client.
    Stalled,
}

fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

impl Drop for Active {
    fn drop(&mut self) {
        // The end is recorded before the count drops, so an idle check never sees 0 in flight
        // with an older end.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that holds its connection busy ([`Activity::hold`]) until it is dropped.
pub struct Holding<B> {
    inner: B,
    _held: Active,
}

impl<B> Holding<B> {
    /// `inner`, holding `held` until it is dropped.
    pub fn new(inner: B, held: Active) -> Self {
        Self { inner, _held: held }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Holding<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection's transport, its writes watched: while one waits for the client to take
/// earlier output, the connection is busy, and the head deadline starts once that output went
/// (hyper lets a response go as soon as its last bytes are in its buffer, not on the wire).
pub type Watched<T> = Hooked<T, Watch>;

/// `io`, its writes reported to `activity`.
pub fn watched<T>(io: T, activity: Arc<Activity>) -> Watched<T> {
    Hooked::new(io, Watch(activity))
}

/// Reports each write to the connection's [`Activity`].
pub struct Watch(Arc<Activity>);

impl WriteHook for Watch {
    fn after<R>(
        &mut self,
        _: &mut Context<'_>,
        r: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        self.0.wrote(r.is_pending());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lower bounds only: a loaded machine can make things late, never early.
    #[tokio::test]
    async fn idle_only_after_the_last_request_and_the_whole_timeout() {
        let activity = Arc::new(Activity::default());
        let timeout = Duration::from_millis(200);
        let request = activity.begin();
        let idle = activity.idle_for(timeout);
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(3 * timeout, idle.as_mut())
                .await
                .is_err(),
            "a request in flight: never idle"
        );
        drop(request);
        let started = Instant::now();
        // A request that comes and goes half-way restarts the count.
        let restart = async {
            tokio::time::sleep(timeout / 2).await;
            drop(activity.begin());
        };
        tokio::join!(idle, restart);
        let waited = started.elapsed();
        assert!(waited >= timeout + timeout / 2, "{waited:?}");
    }

    /// Output waiting for the client keeps the connection busy, and the deadline counts from
    /// the moment it went; a held request body keeps it busy without counting as a request.
    #[tokio::test]
    async fn unsent_output_and_an_unread_body_keep_the_connection_busy() {
        let timeout = Duration::from_millis(100);
        let activity = Arc::new(Activity::default());
        activity.wrote(true);
        assert!(
            tokio::time::timeout(4 * timeout, activity.head_overdue(timeout))
                .await
                .is_err(),
            "a write waiting for the client: not overdue"
        );
        activity.wrote(false);
        let went = Instant::now();
        activity.head_overdue(timeout).await;
        assert!(went.elapsed() >= timeout, "{:?}", went.elapsed());

        let held = activity.hold();
        assert_eq!(activity.begun(), 0, "a body is not a request");
        assert!(
            tokio::time::timeout(4 * timeout, activity.idle_for(timeout))
                .await
                .is_err(),
            "a request body still read: not idle"
        );
        drop(held);
        activity.idle_for(timeout).await;
    }

    /// One timer for both limits: a write that waits for the client ends it as stalled once
    /// it has waited the send limit (the connection is busy meanwhile, never idle); without
    /// one, the idle time ends it.
    #[tokio::test]
    async fn quiet_tells_a_stalled_client_from_an_idle_one() {
        let send = Duration::from_millis(100);
        let activity = Activity::default();
        // Taken before the write is reported, so that the bounds below hold exactly.
        let blocked = Instant::now();
        activity.wrote(true);
        let quiet = activity.quiet(send / 4, Some(send)).await;
        assert_eq!(quiet, Quiet::Stalled);
        assert!(blocked.elapsed() >= send, "{:?}", blocked.elapsed());

        let went = Instant::now();
        activity.wrote(false);
        let quiet = activity.quiet(send / 4, Some(send)).await;
        assert_eq!(quiet, Quiet::Idle);
        assert!(went.elapsed() >= send / 4, "{:?}", went.elapsed());
    }

    #[tokio::test]
    async fn the_head_deadline_is_for_http1_only() {
        let timeout = Duration::from_millis(100);
        let http1 = Activity::default();
        assert!(
            tokio::time::timeout(10 * timeout, http1.head_overdue(timeout))
                .await
                .is_ok(),
            "an HTTP/1 connection without a head is overdue"
        );
        let h2 = Activity::default();
        h2.mark_h2();
        assert!(
            tokio::time::timeout(5 * timeout, h2.head_overdue(timeout))
                .await
                .is_err(),
            "HTTP/2 has no head deadline"
        );
    }
}
