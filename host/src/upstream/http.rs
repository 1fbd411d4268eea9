//! The HTTP/1.1 upstream: a pooled hyper client per member and worker (hyper-util's legacy
//! client with an idle timeout), connect and response-header timeouts, and error
//! classification for failover (connect errors are "not sent"; a streaming body taken by the
//! attempt makes it "sent"). The response-header timeout runs from the end of the request: while a streaming
//! body is still on its way, a slow client is the client's business (its body idle timeout),
//! and only a member that stops reading for that long has timed out.

use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Notify;

use crate::worker::PerWorker;

use super::{
    Body, BoxError, BoxFuture, RequestBody, StreamingBody, Upstream, UpstreamError,
    UpstreamRequest, UpstreamResponse, UpstreamSpec, empty_body, full_body,
};

/// An HTTP member: a client (and its pool) per worker.
pub struct HttpUpstream {
    clients: PerWorker<Client<HttpConnector, Body>>,
    authority: http::uri::Authority,
    response_timeout: Duration,
    connect_timeout: Duration,
    health_path: String,
}

impl HttpUpstream {
    /// Builds the member's clients and pools (no connection is opened yet).
    pub fn new(spec: &UpstreamSpec) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(spec.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(spec.pool_idle_timeout)
            .pool_max_idle_per_host(spec.pool_max_idle)
            .set_host(false);
        Self {
            clients: PerWorker::new(spec.workers, || builder.build(connector.clone())),
            authority: http::uri::Authority::try_from(spec.authority.as_str())
                .unwrap_or_else(|_| http::uri::Authority::from_static("invalid.")),
            response_timeout: spec.response_timeout,
            connect_timeout: spec.connect_timeout,
            health_path: spec.health_path.clone(),
        }
    }

    /// The absolute URI for the member (the authority is parsed once, at build time).
    fn uri(&self, path_and_query: Option<&http::uri::PathAndQuery>) -> Result<Uri, UpstreamError> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).map_err(|e| UpstreamError::Unencodable {
            reason: format!("request target: {e}"),
            status: ::http::StatusCode::BAD_REQUEST,
        })
    }
}

impl Upstream for HttpUpstream {
    fn send(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let client = self.clients.get().clone();
        let response_timeout = self.response_timeout;
        let connect_timeout = self.connect_timeout;
        let uri = self.uri(request.parts.uri.path_and_query());
        Box::pin(async move {
            let mut parts = request.parts;
            parts.uri = uri?;
            parts.version = Version::HTTP_11;
            let progress = Arc::new(Progress::default());
            let (body, slot) = match request.body {
                RequestBody::Empty => (empty_body(), None),
                RequestBody::Whole(bytes) => (full_body(bytes), None),
                RequestBody::Streaming { body, length } => {
                    let lazy = LazyBody {
                        slot: Some(body.clone()),
                        inner: None,
                        length,
                        progress: progress.clone(),
                    };
                    (lazy.boxed_unsync(), Some(body))
                }
            };
            let req = Request::from_parts(parts, body);
            let exchange = client.request(req);
            tokio::pin!(exchange);
            let classify = |e: hyper_util::client::legacy::Error| {
                classify(&e, &progress, slot.as_ref(), connect_timeout)
            };
            if let Some(slot) = &slot {
                // The body is on its way: wait for the answer or the end of the body.
                while !progress.done.load(Ordering::Acquire) {
                    tokio::select! {
                        r = &mut exchange => return r.map(into_body).map_err(classify),
                        () = progress.moved.notified() => {}
                        () = tokio::time::sleep(response_timeout) => {
                            if !slot.is_taken() {
                                // The connection never came up far enough to take the body.
                                return Err(UpstreamError::ConnectTimeout(connect_timeout));
                            }
                            if !progress.waiting_on_client.load(Ordering::Acquire) {
                                // The member stopped reading the request.
                                return Err(UpstreamError::ResponseTimeout(response_timeout));
                            }
                        }
                    }
                }
            }
            match tokio::time::timeout(response_timeout, &mut exchange).await {
                Err(_) => Err(UpstreamError::ResponseTimeout(response_timeout)),
                Ok(r) => r.map(into_body).map_err(classify),
            }
        })
    }

    fn health_check(&self, timeout: Duration) -> BoxFuture<'static, Result<(), UpstreamError>> {
        let client = self.clients.get().clone();
        let uri = self.uri(
            http::uri::PathAndQuery::try_from(self.health_path.as_str())
                .ok()
                .as_ref(),
        );
        let authority = self.authority.clone();
        let connect_timeout = self.connect_timeout;
        Box::pin(async move {
            let req = Request::builder()
                .method(Method::GET)
                .uri(uri?)
                .header(http::header::HOST, authority.as_str())
                .header(http::header::USER_AGENT, "keel-health-check")
                .body(empty_body())
                .map_err(|e| UpstreamError::Response(e.to_string()))?;
            let res = tokio::time::timeout(timeout, async {
                let res = client.request(req).await?;
                let status = res.status();
                // Drain the body so that the connection returns to the pool.
                let _ = res.into_body().collect().await;
                Ok::<_, hyper_util::client::legacy::Error>(status)
            })
            .await
            .map_err(|_| UpstreamError::ResponseTimeout(timeout))?;
            match res {
                Ok(status) if status.is_server_error() => Err(UpstreamError::Response(format!(
                    "health check got {status}"
                ))),
                Ok(_) => Ok(()),
                Err(e) => Err(classify(&e, &Progress::default(), None, connect_timeout)),
            }
        })
    }
}

/// Sorts a client error into the failover classes.
fn classify(
    e: &hyper_util::client::legacy::Error,
    progress: &Progress,
    slot: Option<&StreamingBody>,
    connect_timeout: Duration,
) -> UpstreamError {
    let msg = error_chain(e);
    if progress.client_failed.load(Ordering::Acquire) {
        return UpstreamError::ClientBody(msg);
    }
    if e.is_connect() {
        if has_timed_out(e) {
            return UpstreamError::ConnectTimeout(connect_timeout);
        }
        return UpstreamError::Connect(msg);
    }
    let taken = slot.is_some_and(StreamingBody::is_taken);
    let hyper_err = e.source().and_then(|s| s.downcast_ref::<hyper::Error>());
    match hyper_err {
        Some(h) if h.is_canceled() && !taken => UpstreamError::Stale(msg),
        Some(h) if h.is_body_write_aborted() || h.is_user() => UpstreamError::Send(msg),
        _ => UpstreamError::Response(msg),
    }
}

fn has_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = err.source();
    }
    false
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

/// The local address of the connection a response of this upstream came on (hyper-util's
/// connector records it); `None` for other upstreams' responses.
pub(super) fn local_address(res: &http::response::Parts) -> Option<std::net::SocketAddr> {
    res.extensions
        .get::<hyper_util::client::legacy::connect::HttpInfo>()
        .map(hyper_util::client::legacy::connect::HttpInfo::local_addr)
}

fn into_body(res: http::Response<hyper::body::Incoming>) -> UpstreamResponse {
    res.map(|b| b.map_err(BoxError::from).boxed_unsync())
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
