//! The HTTP/1.1 upstream: a connection pool per member and worker ([`super::pool`]), connect
//! and response-header timeouts, and error classification for failover (connect errors are
//! "not sent"; a streaming body taken by the attempt makes it "sent"; a reused connection that
//! closed before the request was written is tried again on another connection, as an idle
//! close racing the request; one that closed after it was written and before any answer does
//! not count against the member, and an idempotent request with a whole body goes once more on
//! a new connection to the same member). The response-header timeout runs from the end of the request:
//! while a streaming body is still on its way, a slow client is the client's business (its
//! body idle timeout), and only a member that stops reading for that long has timed out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::proxy::filter::UpstreamConnection;
use crate::recycled::Recycled;
use crate::worker::PerWorker;

use super::pool::{Connection, Pool, PooledBody};
use super::{
    Body, BoxError, BoxFuture, RequestBody, Sending, StreamingBody, Upstream, UpstreamError,
    UpstreamRequest, UpstreamResponse, UpstreamSpec, empty_body, full_body,
};

/// An HTTP member: a connection pool per worker.
pub struct HttpUpstream {
    pools: PerWorker<Arc<Pool>>,
    authority: http::HeaderValue,
    response_timeout: Duration,
    health_path: http::uri::PathAndQuery,
}

impl HttpUpstream {
    /// Builds the member's pools (no connection is opened yet).
    pub fn new(spec: &UpstreamSpec) -> Self {
        Self {
            pools: PerWorker::new(spec.workers, || {
                Arc::new(Pool::new(
                    spec.address,
                    spec.connect_timeout,
                    spec.response_timeout,
                    spec.pool_idle_timeout,
                    spec.pool_max_idle,
                ))
            }),
            authority: http::HeaderValue::from_str(&spec.authority)
                .unwrap_or_else(|_| http::HeaderValue::from_static("invalid.")),
            response_timeout: spec.response_timeout,
            health_path: http::uri::PathAndQuery::try_from(spec.health_path.as_str())
                .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/")),
        }
    }
}

/// What waiting for the answer to one attempt came to.
enum Waited {
    Answer(http::Response<hyper::body::Incoming>),
    /// The connection failed; the request comes back if none of it was written.
    Failed(hyper::client::conn::TrySendError<Request<Body>>),
    TimedOut,
}

impl Upstream for HttpUpstream {
    fn send(&self, request: UpstreamRequest) -> Sending {
        let pool = self.pools.get().clone();
        let response_timeout = self.response_timeout;
        Recycled::new(async move {
            let mut parts = request.parts;
            parts.version = Version::HTTP_11;
            // An idempotent request with a whole body may go once more, on a new connection to
            // this member, when the pooled connection it went out on closes before any answer
            // (the member's idle close racing it), as the AJP client does: no failover, so
            // the session stays where it is. Its head is copied for that only when the
            // connection idled long enough for such a close ([`REPLAY_AFTER_IDLE`]).
            let replay_body = match &request.body {
                _ if !crate::proxy::idempotent(&parts.method) => None,
                RequestBody::Empty => Some(None),
                RequestBody::Whole(bytes) => Some(Some(bytes.clone())),
                RequestBody::Streaming { .. } => None,
            };
            // A streaming body and how it is getting on (nothing to follow otherwise).
            let (body, streaming) = match request.body {
                RequestBody::Empty => (empty_body(), None),
                RequestBody::Whole(bytes) => (full_body(bytes), None),
                RequestBody::Streaming { body, length } => {
                    let progress = Arc::new(Progress::default());
                    let lazy = LazyBody {
                        slot: Some(body.clone()),
                        inner: None,
                        length,
                        progress: progress.clone(),
                    };
                    (lazy.boxed_unsync(), Some((body, progress)))
                }
            };
            let streaming = streaming
                .as_ref()
                .map(|(body, progress)| (body, &**progress));
            let mut req = Request::from_parts(parts, body);
            let asked = Instant::now();
            let mut fresh = false;
            loop {
                let mut connection = if fresh {
                    pool.connect().await?
                } else {
                    pool.checkout().await?
                };
                let pool_wait = asked.elapsed();
                let copy = replay_body
                    .as_ref()
                    .filter(|_| connection.reused && connection.idle >= REPLAY_AFTER_IDLE)
                    .map(|body| copy_request(&req, body.clone()));
                let exchange = connection.sender.try_send_request(req);
                match wait(exchange, streaming, response_timeout).await {
                    Waited::Answer(res) => return Ok(respond(res, &pool, connection, pool_wait)),
                    Waited::TimedOut => {
                        return Err(UpstreamError::ResponseTimeout(response_timeout));
                    }
                    Waited::Failed(mut failed) => match failed.take_message() {
                        Some(again) if connection.reused => req = again,
                        None if connection.reused && closed_unanswered(failed.error()) => {
                            let why = error_chain(failed.error());
                            let Some(copy) = copy else {
                                return Err(UpstreamError::Unanswered(why));
                            };
                            log::debug!(
                                "pooled connection to {} closed before any answer ({why}); \
                                 the request once more on a new connection",
                                pool.address()
                            );
                            req = copy;
                            fresh = true;
                        }
                        _ => return Err(classify(&failed.into_error(), streaming)),
                    },
                }
            }
        })
    }

    fn health_check(&self, timeout: Duration) -> BoxFuture<'static, Result<(), UpstreamError>> {
        let pool = self.pools.get().clone();
        let authority = self.authority.clone();
        let path = self.health_path.clone();
        Box::pin(async move {
            let mut req = Request::new(empty_body());
            *req.method_mut() = Method::GET;
            *req.uri_mut() = path.into();
            req.headers_mut().insert(http::header::HOST, authority);
            req.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("keel-health-check"),
            );
            let status = tokio::time::timeout(timeout, async {
                let mut connection = pool.checkout().await?;
                let res = connection
                    .sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify(&e, None))?;
                let status = res.status();
                // Read the body to its end so that the connection goes back to the pool.
                let _ = respond(res, &pool, connection, Duration::ZERO)
                    .response
                    .into_body()
                    .collect()
                    .await;
                Ok::<_, UpstreamError>(status)
            })
            .await
            .map_err(|_| UpstreamError::ResponseTimeout(timeout))??;
            if status.is_server_error() {
                return Err(UpstreamError::Response(format!(
                    "health check got {status}"
                )));
            }
            Ok(())
        })
    }
}

/// How long a pooled connection must have idled before a request sent on it is kept for a
/// second try ([`closed_unanswered`]): a busy connection is not closed by the member's
/// keep-alive timeout, so its requests cost no copy.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// `req` once more, with `body` (an idempotent request with an empty or whole body).
fn copy_request(req: &Request<Body>, body: Option<Bytes>) -> Request<Body> {
    let mut copy = Request::new(body.map_or_else(empty_body, full_body));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// Whether the connection closed after the request was written and before any answer: hyper's
/// incomplete message, or a reset or broken pipe (a member's idle close racing the request).
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        cur = err.source();
    }
    false
}

/// Waits for the member's answer. While a streaming body is on its way, the response timeout
/// counts only while the member is not reading it; after the body, it runs whole.
async fn wait(
    exchange: impl Future<
        Output = Result<
            http::Response<hyper::body::Incoming>,
            hyper::client::conn::TrySendError<Request<Body>>,
        >,
    >,
    streaming: Option<(&StreamingBody, &Progress)>,
    response_timeout: Duration,
) -> Waited {
    let answered = |r: Result<_, _>| match r {
        Ok(res) => Waited::Answer(res),
        Err(failed) => Waited::Failed(failed),
    };
    tokio::pin!(exchange);
    if let Some((_, progress)) = streaming {
        while !progress.done.load(Ordering::Acquire) {
            tokio::select! {
                r = &mut exchange => return answered(r),
                () = progress.moved.notified() => {}
                () = tokio::time::sleep(response_timeout) => {
                    if !progress.waiting_on_client.load(Ordering::Acquire) {
                        // The member stopped reading the request.
                        return Waited::TimedOut;
                    }
                }
            }
        }
    }
    match tokio::time::timeout(response_timeout, &mut exchange).await {
        Err(_) => Waited::TimedOut,
        Ok(r) => answered(r),
    }
}

/// The member's response, its body handing the connection back to the pool at its end (an
/// upgrade keeps the connection: it becomes the tunnel); `pool_wait` is how long the request
/// waited for the connection.
fn respond(
    res: http::Response<hyper::body::Incoming>,
    pool: &Arc<Pool>,
    connection: Connection,
    pool_wait: Duration,
) -> UpstreamResponse {
    let (parts, body) = res.into_parts();
    let came_on = UpstreamConnection {
        local: Some(connection.local),
        pool_wait,
    };
    let back =
        (parts.status != StatusCode::SWITCHING_PROTOCOLS).then(|| (pool.clone(), connection));
    UpstreamResponse {
        response: http::Response::from_parts(parts, PooledBody::new(body, back).boxed_unsync()),
        connection: came_on,
    }
}

/// Sorts a failed exchange into the failover classes.
fn classify(e: &hyper::Error, streaming: Option<(&StreamingBody, &Progress)>) -> UpstreamError {
    let msg = error_chain(e);
    if streaming.is_some_and(|(_, progress)| progress.client_failed.load(Ordering::Acquire)) {
        return UpstreamError::ClientBody(msg);
    }
    let taken = streaming.is_some_and(|(body, _)| body.is_taken());
    if e.is_canceled() && !taken {
        UpstreamError::Stale(msg)
    } else if e.is_body_write_aborted() || e.is_user() {
        UpstreamError::Send(msg)
    } else {
        UpstreamError::Response(msg)
    }
}

/// `outer: inner: innermost`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// How a streaming request body is getting on (shared by the body and the attempt).
#[derive(Debug, Default)]
struct Progress {
    /// The whole body went out.
    done: AtomicBool,
    /// The last poll of the client's body had to wait for the client.
    waiting_on_client: AtomicBool,
    /// The client's body failed (never the member's fault).
    client_failed: AtomicBool,
    /// Woken whenever the body moves (a frame, the end, a failure).
    moved: Notify,
}

impl Progress {
    fn moved(&self, done: bool) {
        self.waiting_on_client.store(false, Ordering::Release);
        if done {
            self.done.store(true, Ordering::Release);
        }
        self.moved.notify_one();
    }
}

/// The client's body, taken from the slot on first poll (so that an attempt that never
/// connected leaves it for the next one). Errors from the client are flagged as client errors.
struct LazyBody {
    slot: Option<StreamingBody>,
    inner: Option<Body>,
    length: Option<u64>,
    progress: Arc<Progress>,
}

/// The client's body failed while it was being forwarded.
#[derive(Debug, thiserror::Error)]
#[error("client body: {0}")]
struct ClientBodyError(String);

impl HttpBody for LazyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            let Some(slot) = this.slot.take() else {
                return Poll::Ready(None);
            };
            match slot.take() {
                Some(b) => this.inner = Some(b),
                None => {
                    this.progress.client_failed.store(true, Ordering::Release);
                    this.progress.moved(false);
                    return Poll::Ready(Some(Err(Box::new(ClientBodyError(
                        "body already consumed by an earlier attempt".into(),
                    )))));
                }
            }
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.progress.client_failed.store(true, Ordering::Release);
                this.progress.moved(false);
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e.to_string())))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.progress.moved(inner.is_end_stream());
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.progress.moved(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.progress
                    .waiting_on_client
                    .store(true, Ordering::Release);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.length == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
