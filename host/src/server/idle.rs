//! Idle client connections: one that carries no request for `limits.idle_timeout` is shut down
//! gracefully (HTTP/2: GOAWAY, then closed; HTTP/1.1: closed between requests). A request counts
//! from its head until its response body is done, so a slow backend or a long download never
//! makes a connection idle. An HTTP/1 connection whose next request head has not come whole
//! within `header_read_timeout` (since it opened, or since the last response ended) is closed
//! ([`Activity::head_overdue`]): one deadline per connection, no timer per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The requests in flight on one connection, and when the last one ended. Nothing wakes the
/// connection per request: [`idle_for`](Activity::idle_for) checks these when its one timer
/// fires, and sets it again for the earliest moment the connection can be idle.
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun so far.
    begun: AtomicU64,
    /// The connection speaks HTTP/2 (its requests say so): no head deadline.
    h2: AtomicBool,
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
            start: Instant::now(),
            last_end: AtomicU64::new(0),
        }
    }
}

/// A request in flight: dropped when its response is done.
pub struct Active(Arc<Activity>);

impl Activity {
    /// A request starts.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
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
        let mut deadline = self.start + timeout;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Busy: it cannot be idle before a whole timeout after this request ends.
                deadline = Instant::now() + timeout;
                continue;
            }
            let ended = self.start + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
            if ended.elapsed() >= timeout {
                return;
            }
            deadline = ended + timeout;
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let since_start = u64::try_from(self.0.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The end is recorded before the count drops, so an idle check never sees 0 in flight
        // with an older end.
        self.0.last_end.fetch_max(since_start, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
