//! Idle client connections: one that carries no request for `limits.idle_timeout` is shut down
//! gracefully (HTTP/2: GOAWAY, then closed; HTTP/1.1: closed between requests). A request counts
//! from its head until its response body is done, so a slow backend or a long download never
//! makes a connection idle. HTTP/1.1 keep-alive connections also end at `header_read_timeout`
//! when no next request starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The requests in flight on one connection, and when the last one ended. Nothing wakes the
/// connection per request: [`idle_for`](Activity::idle_for) checks these when its one timer
/// fires, and sets it again for the earliest moment the connection can be idle.
pub struct Activity {
    in_flight: AtomicUsize,
    /// When the connection started.
    start: Instant,
    /// When the last request ended, in nanoseconds after `start` (0: none yet).
    last_end: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
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
        Active(self.clone())
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
}
