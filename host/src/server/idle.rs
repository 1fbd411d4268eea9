//! Idle client connections: one that carries no request for `limits.idle_timeout` is shut down
//! gracefully (HTTP/2: GOAWAY, then closed; HTTP/1.1: closed between requests). A request counts
//! from its head until its response body is done, so a slow backend or a long download never
//! makes a connection idle. HTTP/1.1 keep-alive connections also end at `header_read_timeout`
//! when no next request starts.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The requests in flight on one connection.
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    changed: Notify,
}

/// A request in flight: dropped when its response is done.
pub struct Active(Arc<Activity>);

impl Activity {
    /// A request starts.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        Active(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout` in a row.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the state is read, so that no change in between is missed.
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => {
                        if self.in_flight.load(Ordering::Acquire) == 0 {
                            return;
                        }
                    }
                    () = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
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
        let started = std::time::Instant::now();
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
