//! A body on its way through the filter chain's body and trailers callbacks, polled by whoever
//! reads it (hyper's connection task, or the upstream's): no task, no channel, no thread change
//! per body. Each frame read from the inner body becomes one callback (a boxed future that takes
//! the stream's lock: one allocation per frame); its verdict decides what goes on — bytes
//! (possibly changed), nothing yet (held), or a local response that ends the body with an
//! error. The body also checks that what the filters pass on agrees with the Content-Length the
//! head carries. The end of a member's response is told to the stream before its last callback
//! (`response.backend_latency`).
//! The stream ends once the response and every filtered body are done ([`SharedStream`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame};

use super::filter::{BodyVerdict, ChainStream, LocalResponse, PassThrough, TrailersVerdict};
use crate::upstream::{Body, BoxError, BoxFuture};

/// Which way a body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → member.
    Request,
    /// Member → client.
    Response,
}

/// One request's filter stream, shared by the exchange, its filtered bodies and their
/// callbacks (one allocation for all of it): the stream, behind an async lock (a callback holds
/// it across its awaits), and where a filter's local answer from the middle of a body lands.
/// The stream ends (on_log, on_done) when its last holder lets go: the response, and each
/// filtered body until it ends. A member may answer before it has read the whole request
/// (nginx's `return`, an early error page): the rest of the request body still goes through
/// the filters to the member, and the client's connection stays usable, as without filters.
pub struct SharedStream {
    stream: tokio::sync::Mutex<ChainStream>,
    local: std::sync::Mutex<Option<LocalResponse>>,
}

impl SharedStream {
    /// Shares `stream`, which finishes when the last holder lets go.
    pub fn new(stream: ChainStream) -> Arc<Self> {
        Arc::new(SharedStream {
            stream: tokio::sync::Mutex::new(stream),
            local: std::sync::Mutex::default(),
        })
    }

    /// The stream, for one callback.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ChainStream> {
        self.stream.lock().await
    }

    /// The local answer a filter gave in the middle of a body, if any.
    pub fn take_local(&self) -> Option<LocalResponse> {
        self.local.lock().ok().and_then(|mut local| local.take())
    }
}

impl Drop for SharedStream {
    fn drop(&mut self) {
        // The last holder let go: no callback holds the lock. The stream is swapped for one
        // that does nothing (a `Box` of a zero-sized type allocates nothing) to be finished.
        let stream = std::mem::replace(self.stream.get_mut(), PassThrough.into());
        stream.finish();
    }
}

/// A filter answered locally in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("a filter answered locally")]
pub struct FilterResponded;

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

/// What one callback decided.
enum Verdict {
    Body(BodyVerdict),
    Trailers(TrailersVerdict, HeaderMap),
}

/// A body fed through the stream's body callbacks. See the module docs.
pub struct Filtered<B = Body> {
    inner: B,
    /// Held while the body lives (the stream does not finish before).
    stream: Arc<SharedStream>,
    dir: Direction,
    declared: Option<u64>,
    sent: u64,
    /// The callback in progress.
    call: Option<BoxFuture<'static, Verdict>>,
    /// Data decided on, not yet read (no queue: a verdict yields at most some data and then
    /// the trailers, and the next callback starts once both were read).
    ready: Option<Bytes>,
    /// Trailers decided on, read after `ready`.
    ready_trailers: Option<HeaderMap>,
    /// End of stream was given to the filters.
    eos_sent: bool,
    /// Nothing more comes after what is ready.
    done: bool,
}

impl<B> Filtered<B> {
    /// `inner` through `stream`'s callbacks for `dir` (a local response lands in the stream);
    /// `declared` is the head's Content-Length after the headers callbacks.
    pub fn new(inner: B, stream: Arc<SharedStream>, dir: Direction, declared: Option<u64>) -> Self {
        Filtered {
            inner,
            stream,
            dir,
            declared,
            sent: 0,
            call: None,
            ready: None,
            ready_trailers: None,
            eos_sent: false,
            done: false,
        }
    }

    /// When a member's response ended (its last frame was just read): the moment the stream
    /// learns before the callback (`response.backend_latency`). `None` for a request body.
    fn received(&self) -> Option<Instant> {
        (self.dir == Direction::Response).then(Instant::now)
    }

    fn body_call(&self, chunk: Bytes, eos: bool) -> BoxFuture<'static, Verdict> {
        let (stream, dir) = (self.stream.clone(), self.dir);
        let received = if eos { self.received() } else { None };
        Box::pin(async move {
            let mut s = stream.lock().await;
            if let Some(at) = received {
                s.upstream_received(at);
            }
            Verdict::Body(match dir {
                Direction::Request => s.request_body(chunk, eos).await,
                Direction::Response => s.response_body(chunk, eos).await,
            })
        })
    }

    fn trailers_call(&self, mut trailers: HeaderMap) -> BoxFuture<'static, Verdict> {
        let (stream, dir) = (self.stream.clone(), self.dir);
        let received = self.received();
        Box::pin(async move {
            let mut s = stream.lock().await;
            if let Some(at) = received {
                s.upstream_received(at);
            }
            let v = match dir {
                Direction::Request => s.request_trailers(&mut trailers).await,
                Direction::Response => s.response_trailers(&mut trailers).await,
            };
            Verdict::Trailers(v, trailers)
        })
    }

    /// A local response: kept for the exchange, and the body ends with an error.
    fn respond(&mut self, lr: LocalResponse) -> BoxError {
        if let Ok(mut local) = self.stream.local.lock() {
            *local = Some(lr);
        }
        self.done = true;
        Box::new(FilterResponded)
    }

    /// Applies a verdict; `Err` ends the body with that error.
    fn apply(&mut self, verdict: Verdict) -> Result<(), BoxError> {
        match verdict {
            Verdict::Body(BodyVerdict::Forward(bytes)) => self.forward(bytes)?,
            Verdict::Body(BodyVerdict::Hold) => {}
            Verdict::Body(BodyVerdict::Respond(lr)) => return Err(self.respond(lr)),
            Verdict::Trailers(TrailersVerdict::Continue(held), trailers) => {
                // A body the filters held until the trailers goes first; the end's length
                // check below holds for it too.
                self.forward(held)?;
                self.ready_trailers = Some(trailers);
            }
            Verdict::Trailers(TrailersVerdict::Respond(lr), _) => return Err(self.respond(lr)),
        }
        if self.eos_sent && !self.done {
            // The end went through the filters and they let it pass.
            self.done = true;
            if let Some(declared) = self.declared.filter(|d| *d != self.sent) {
                return Err(self.mismatch(declared));
            }
        }
        Ok(())
    }

    fn forward(&mut self, bytes: Bytes) -> Result<(), BoxError> {
        self.sent += bytes.len() as u64;
        if let Some(declared) = self.declared.filter(|d| self.sent > *d) {
            return Err(self.mismatch(declared));
        }
        if !bytes.is_empty() {
            self.ready = Some(bytes);
        }
        Ok(())
    }

    fn mismatch(&mut self, declared: u64) -> BoxError {
        self.done = true;
        self.ready = None;
        self.ready_trailers = None;
        let e = LengthMismatch {
            dir: self.dir,
            sent: self.sent,
            declared,
        };
        log::warn!("{e}");
        Box::new(e)
    }
}

impl<B> HttpBody for Filtered<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(data) = this.ready.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(trailers) = this.ready_trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if let Some(call) = this.call.as_mut() {
                let verdict = std::task::ready!(call.as_mut().poll(cx));
                this.call = None;
                if let Err(e) = this.apply(verdict) {
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            if this.done {
                return Poll::Ready(None);
            }
            let call = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                // The body ended without saying so on its last frame: tell the filters.
                None if !this.eos_sent => {
                    this.eos_sent = true;
                    this.body_call(Bytes::new(), true)
                }
                None => {
                    this.done = true;
                    continue;
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = this.inner.is_end_stream();
                        this.eos_sent = eos;
                        this.body_call(data, eos)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            this.eos_sent = true;
                            this.trailers_call(trailers)
                        }
                        Err(_) => continue,
                    },
                },
            };
            this.call = Some(call);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_none() && self.ready_trailers.is_none() && self.call.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::filter::{FilterStream, HeadersVerdict, UpstreamInfo};
    use http_body_util::BodyExt;

    /// Holds the request body and passes on only its first three bytes with the trailers: a
    /// filter that shortens a body without fixing its Content-Length.
    struct Shorten;

    impl FilterStream for Shorten {
        fn request_headers<'a>(
            &'a mut self,
            _req: &'a mut http::request::Parts,
            _eos: bool,
        ) -> BoxFuture<'a, HeadersVerdict> {
            Box::pin(async { HeadersVerdict::Continue })
        }
        fn request_body(&mut self, _chunk: Bytes, _eos: bool) -> BoxFuture<'_, BodyVerdict> {
            Box::pin(async { BodyVerdict::Hold })
        }
        fn request_trailers<'a>(
            &'a mut self,
            _t: &'a mut HeaderMap,
        ) -> BoxFuture<'a, TrailersVerdict> {
            Box::pin(async { TrailersVerdict::Continue(Bytes::from_static(b"abc")) })
        }
        fn response_headers<'a>(
            &'a mut self,
            _res: &'a mut http::response::Parts,
            _upstream: Option<&'a UpstreamInfo>,
            _eos: bool,
        ) -> BoxFuture<'a, HeadersVerdict> {
            Box::pin(async { HeadersVerdict::Continue })
        }
        fn response_body(&mut self, chunk: Bytes, _eos: bool) -> BoxFuture<'_, BodyVerdict> {
            Box::pin(async move { BodyVerdict::Forward(chunk) })
        }
        fn response_trailers<'a>(
            &'a mut self,
            _t: &'a mut HeaderMap,
        ) -> BoxFuture<'a, TrailersVerdict> {
            Box::pin(async { TrailersVerdict::Continue(Bytes::new()) })
        }
        fn finish(self: Box<Self>) {}
    }

    /// A body of these frames, last first.
    struct Frames(Vec<Frame<Bytes>>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop().map(Ok))
        }
    }

    /// A body that ends with trailers is checked against its Content-Length too: shortened by a
    /// filter, it ends with the length error, not as a short body with its trailers.
    #[tokio::test]
    async fn a_body_shortened_before_its_trailers_is_a_length_mismatch() {
        let inner = Frames(vec![
            Frame::trailers(HeaderMap::new()),
            Frame::data(Bytes::from_static(b"0123456789")),
        ]);
        let body = Filtered::new(
            inner,
            SharedStream::new(Shorten.into()),
            Direction::Request,
            Some(10),
        );
        let e = body.collect().await.expect_err("a length error");
        assert!(e.downcast_ref::<LengthMismatch>().is_some(), "{e}");
    }
}
