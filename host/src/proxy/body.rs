//! Bodies on their way through the proxy: the client body limit (413), channel-fed bodies
//! for filter pumps (a task feeds each chunk through the filter chain), and a wrapper that
//! keeps per-request state (the in-flight guard, the filter stream) alive until the body ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{Mutex, mpsc};

use super::filter::{BodyVerdict, FilterStream, LocalResponse, TrailersVerdict};
use crate::upstream::{Body, BoxError};

/// The client body exceeded `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// Counts the bytes of a body and fails it past `max` (setting `exceeded`).
pub struct Limited<B> {
    inner: B,
    seen: u64,
    max: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> Limited<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, max: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            seen: 0,
            max,
            exceeded,
        }
    }
}

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > this.max {
                        this.exceeded.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(TooLarge(this.max)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body went silent for longer than `balancer.timeouts.body_idle`.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub struct BodyIdle(pub std::time::Duration);

/// Fails a body that sends no frame for `timeout`.
pub struct IdleTimeout {
    inner: Body,
    timeout: std::time::Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    /// Wraps `inner`.
    pub fn new(inner: Body, timeout: std::time::Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body fed through a channel by a pump task.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

/// A filter answered locally in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("a filter answered locally")]
pub struct FilterResponded;

/// The filter stream shared by the request pump, the response phase and the response pump.
pub type SharedStream = Arc<Mutex<Option<Box<dyn FilterStream>>>>;

/// Which direction a pump runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → member.
    Request,
    /// Member → client.
    Response,
}

/// The filters changed a body's length but left its Content-Length (a filter that changes a
/// body must remove or fix the header in its headers callback, as in Envoy).
#[derive(Debug, thiserror::Error)]
#[error(
    "{dir:?} body: the filters passed on {sent} bytes or more, Content-Length says {declared}: \
     a filter changed the body without fixing Content-Length"
)]
pub struct LengthMismatch {
    dir: Direction,
    sent: u64,
    declared: u64,
}

/// Feeds `body` through the stream's body callbacks into a new body. A local response in the
/// middle is stored in `local` and ends the body with an error, and so does a body whose
/// length, after the filters, disagrees with `declared` (its Content-Length).
pub fn pump(
    mut body: Body,
    stream: SharedStream,
    dir: Direction,
    local: Arc<std::sync::Mutex<Option<LocalResponse>>>,
    declared: Option<u64>,
) -> Body {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut ended = false;
        let mut sent: u64 = 0;
        let mismatch = |sent: u64| {
            let e = LengthMismatch {
                dir,
                sent,
                declared: declared.unwrap_or_default(),
            };
            log::warn!("{e}");
            Err(Box::new(e) as BoxError)
        };
        loop {
            let frame = body.frame().await;
            let mut guard = stream.lock().await;
            let Some(s) = guard.as_mut() else { return };
            let (chunk, eos) = match frame {
                None if ended => return,
                None => (Bytes::new(), true),
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => (d, body.is_end_stream()),
                    Err(f) => {
                        if let Ok(mut t) = f.into_trailers() {
                            let v = match dir {
                                Direction::Request => s.request_trailers(&mut t).await,
                                Direction::Response => s.response_trailers(&mut t).await,
                            };
                            let held = match v {
                                TrailersVerdict::Continue(held) => held,
                                TrailersVerdict::Respond(lr) => {
                                    store(&local, lr);
                                    let _ = tx.send(Err(Box::new(FilterResponded))).await;
                                    return;
                                }
                            };
                            // A body the filters held until the trailers goes first.
                            if !held.is_empty() && tx.send(Ok(Frame::data(held))).await.is_err() {
                                return;
                            }
                            let _ = tx.send(Ok(Frame::trailers(t))).await;
                        }
                        continue;
                    }
                },
            };
            ended = eos;
            let v = match dir {
                Direction::Request => s.request_body(chunk, eos).await,
                Direction::Response => s.response_body(chunk, eos).await,
            };
            drop(guard);
            match v {
                BodyVerdict::Forward(b) => {
                    sent += b.len() as u64;
                    let off = declared.is_some_and(|d| sent > d || (eos && sent != d));
                    if off {
                        let _ = tx.send(mismatch(sent)).await;
                        return;
                    }
                    if !b.is_empty() && tx.send(Ok(Frame::data(b))).await.is_err() {
                        return;
                    }
                }
                BodyVerdict::Hold => {}
                BodyVerdict::Respond(lr) => {
                    store(&local, lr);
                    let _ = tx.send(Err(Box::new(FilterResponded))).await;
                    return;
                }
            }
            if eos {
                return;
            }
        }
    });
    ChannelBody { rx }.boxed_unsync()
}

fn store(slot: &std::sync::Mutex<Option<LocalResponse>>, lr: LocalResponse) {
    if let Ok(mut s) = slot.lock() {
        *s = Some(lr);
    }
}

/// A body that keeps `T` alive until it is dropped (after the last frame went out).
pub struct Keep<T: Send> {
    inner: Body,
    _keep: T,
}

impl<T: Send> Keep<T> {
    /// Wraps `inner`.
    pub fn new(inner: Body, keep: T) -> Self {
        Self { inner, _keep: keep }
    }
}

impl<T: Send + Unpin> HttpBody for Keep<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
