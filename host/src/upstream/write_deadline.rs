//! A member connection whose writes wait for the member at most a limit (the response-header
//! timeout): a member that stops reading the request without closing — after answering early,
//! say — fails its connection then, instead of holding it, the request body and the client's
//! upload for as long as it stays silent. A timer exists only while a write waits.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::write_hook::{Hooked, WriteHook};

/// `io` with a limit on how long a write may wait.
pub(crate) type WriteDeadline<T> = Hooked<T, Deadline>;

/// `io` whose writes may wait at most `limit`.
pub(crate) fn with_deadline<T>(io: T, limit: Duration) -> WriteDeadline<T> {
    Hooked::new(
        io,
        Deadline {
            limit,
            waiting: None,
        },
    )
}

/// The limit, and the timer of the write that waits.
pub(crate) struct Deadline {
    limit: Duration,
    /// Armed when a write starts waiting; gone once one goes through.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl WriteHook for Deadline {
    /// A write that waited `limit` fails with `TimedOut`.
    fn after<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if r.is_ready() {
            self.waiting = None;
            return r;
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if waiting.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the member read nothing of the request for {limit:?}"),
            )));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A write to a peer that reads nothing fails after the limit, not before.
    #[tokio::test]
    async fn a_write_that_waits_past_the_limit_fails() {
        let (near, _far) = tokio::io::duplex(1024);
        let limit = Duration::from_millis(200);
        let mut io = with_deadline(near, limit);
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), io.write_all(&[0u8; 64 * 1024])).await;
        let e = r.expect("the write ends").expect_err("it fails");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
    }
}
