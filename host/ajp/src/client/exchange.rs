//! One request/response exchange on one connection, run as its own task: writes the forward
//! request and the first body chunk, then reads the member's messages, answering
//! GET_BODY_CHUNK at any time (also after SEND_HEADERS), streaming SEND_BODY_CHUNK to the
//! response body, and at END_RESPONSE pooling the connection only if the member allows it and
//! both sides are in step. Any violation closes the connection.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::body::{END_OF_BODY, encode_body_chunk};
use crate::client::conn::{Conn, ReadError};
use crate::client::error::{ClientError, ProtocolViolation};
use crate::client::pool::Pool;
use crate::client::request::BodyStream;
use crate::client::response::{Connected, ResponseBody};
use crate::decode::{Frame, ResponseHead};
use crate::error::DecodeError;

/// Where the response head goes.
pub(crate) type HeadSender = oneshot::Sender<Result<Response<ResponseBody>, ClientError>>;

/// The request body as the exchange sends it.
pub(crate) struct BodyState {
    pub(crate) stream: Option<BodyStream>,
    pub(crate) pending: Bytes,
    pub(crate) length: Option<u64>,
    pub(crate) sent: u64,
}

impl BodyState {
    /// Up to `max` bytes of body; `None` at the end. Cancel-safe.
    async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ClientError> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(max);
                let chunk = self.pending.split_to(n);
                self.sent += n as u64;
                if let Some(len) = self.length
                    && self.sent > len
                {
                    self.stream = None;
                    return Err(ClientError::ClientBody(format!(
                        "body longer than its Content-Length {len}"
                    )));
                }
                return Ok(Some(chunk));
            }
            let Some(stream) = self.stream.as_mut() else {
                return self.ended();
            };
            let frame = poll_fn(|cx| http_body::Body::poll_frame(stream.as_mut(), cx)).await;
            match frame {
                None => {
                    self.stream = None;
                    return self.ended();
                }
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.pending = data;
                    }
                }
                Some(Err(e)) => {
                    self.stream = None;
                    self.length = Some(u64::MAX);
                    return Err(ClientError::ClientBody(e.to_string()));
                }
            }
        }
    }

    fn ended(&self) -> Result<Option<Bytes>, ClientError> {
        match self.length {
            Some(len) if self.sent < len => Err(ClientError::ClientBody(format!(
                "body came up short: {} of {len} bytes",
                self.sent
            ))),
            _ => Ok(None),
        }
    }
}

/// Runs one exchange to its end, on a connection the forward request was written to.
/// `head_only`: a HEAD request, whose response has no body.
pub(crate) async fn run(
    pool: Arc<Pool>,
    mut conn: Conn,
    mut body: BodyState,
    head_tx: HeadSender,
    head_only: bool,
) {
    let size = pool.config().packet_size;
    let max_chunk = size.max_request_chunk();
    let mut ex = Exchange {
        pool: pool.clone(),
        local: conn.local,
        pool_wait: conn.pool_wait,
        head_tx: Some(head_tx),
        body_tx: None,
        status: None,
        received_any: false,
        bodyless: head_only,
        draining: false,
    };

    let timeout = pool.config().response_timeout;
    let mut out = BytesMut::new();
    // The first body chunk goes unsolicited when the length is known and not zero.
    let mut owe: Option<usize> = match body.length {
        Some(n) if n > 0 => Some(max_chunk),
        _ => None,
    };
    // The response timeout runs while keel waits for the member, not for the client: it
    // restarts after each body chunk written and pauses while the client's body is awaited
    // (a slow upload is not the member's fault).
    let mut deadline = tokio::time::Instant::now() + timeout;
    // One timer for the whole exchange, moved when the deadline moves.
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);

    loop {
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        let waiting_for_member = (ex.status.is_none() && owe.is_none()) || ex.draining;
        let event = tokio::select! {
            biased;
            () = ex.gone() => {
                // A response without a body (HEAD, 204, 304) is dropped by the server
                // unpolled; its END_RESPONSE is on the way: read it (briefly) and keep the
                // connection, as httpd does.
                if !ex.bodyless || ex.status.is_none() {
                    return ex.abandon(conn);
                }
                ex.draining = true;
                ex.body_tx = None;
                deadline = tokio::time::Instant::now() + timeout.min(DRAIN_WAIT);
                continue;
            }
            r = conn.read_frame(size) => Event::Frame(r),
            c = body.next_chunk(owe.unwrap_or(0)), if owe.is_some() => Event::Chunk(c),
            () = &mut sleep, if waiting_for_member => {
                return ex.fail(conn, ClientError::ResponseTimeout(timeout)).await;
            }
        };
        match event {
            Event::Chunk(Ok(chunk)) => {
                owe = None;
                let bytes: &[u8] = match &chunk {
                    Some(data) => {
                        out.clear();
                        // Cannot fail: next_chunk respects max_chunk.
                        let _ = encode_body_chunk(&mut out, data, size);
                        &out
                    }
                    None => &END_OF_BODY,
                };
                if let Err(e) = write(&mut conn, bytes, timeout).await {
                    let err = match e {
                        Some(e) => ex.write_error(&conn, e),
                        None => ClientError::ResponseTimeout(timeout),
                    };
                    return ex.fail(conn, err).await;
                }
                deadline = tokio::time::Instant::now() + timeout;
            }
            Event::Chunk(Err(e)) => {
                // The client's body failed or came up short: this backend connection is
                // out of step and is closed, never reused (CVE-2008-5519).
                log::info!("AJP {}: {e}; backend connection closed", pool.addr());
                return ex.fail(conn, e).await;
            }
            Event::Frame(Err(ReadError::Decode(e @ DecodeError::Head(_)))) => {
                // Framed right, unreadable content: the application's answer (e.g. a cookie
                // larger than the packet), not a broken member.
                pool.stats.add(&pool.stats.protocol_errors);
                log::warn!(
                    "AJP {}: {e}; 502 for this request, the member is not blamed (raise \
                     packetSize on the connector and balancer.ajp.packet_size together, now {})",
                    pool.addr(),
                    size.get()
                );
                return ex.fail(conn, ClientError::BadHead(e)).await;
            }
            Event::Frame(Err(ReadError::Decode(e))) => {
                return ex.violation(conn, ProtocolViolation::Decode(e)).await;
            }
            Event::Frame(Err(ReadError::Eof)) => {
                let err = if conn.reused && !ex.received_any {
                    ClientError::Unanswered("connection closed".to_owned())
                } else {
                    ClientError::Truncated
                };
                return ex.fail(conn, err).await;
            }
            Event::Frame(Err(ReadError::Io(e))) => {
                let err = if conn.reused && !ex.received_any {
                    ClientError::Unanswered(e.to_string())
                } else {
                    ClientError::Read(e)
                };
                return ex.fail(conn, err).await;
            }
            Event::Frame(Ok(frame)) => {
                ex.received_any = true;
                match frame {
                    Frame::SendHeaders(head) => {
                        if ex.status.is_some() {
                            return ex
                                .violation(
                                    conn,
                                    ProtocolViolation::Unexpected("second SEND_HEADERS"),
                                )
                                .await;
                        }
                        if ex.draining || !ex.deliver_head(head) {
                            return ex.abandon(conn);
                        }
                    }
                    Frame::SendBodyChunk(data) => {
                        // An empty chunk is a flush: every chunk is passed on at once anyway.
                        // Before SEND_HEADERS too (some containers flush first; httpd's
                        // mod_proxy_ajp and mod_jk ignore it there).
                        if data.is_empty() {
                            continue;
                        }
                        if ex.status.is_none() {
                            return ex
                                .violation(
                                    conn,
                                    ProtocolViolation::Unexpected(
                                        "SEND_BODY_CHUNK before SEND_HEADERS",
                                    ),
                                )
                                .await;
                        }
                        if !ex.deliver_chunk(data).await {
                            return ex.abandon(conn);
                        }
                    }
                    Frame::GetBodyChunk(n) => {
                        let unexpected = if n == 0 {
                            Some("GET_BODY_CHUNK for 0 bytes")
                        } else if owe.is_some() {
                            Some("GET_BODY_CHUNK while the last one is unanswered")
                        } else {
                            None
                        };
                        if let Some(what) = unexpected {
                            return ex
                                .violation(conn, ProtocolViolation::Unexpected(what))
                                .await;
                        }
                        pool.check_chunk_request(usize::from(n));
                        owe = Some(usize::from(n).min(max_chunk));
                    }
                    Frame::EndResponse { reuse } => {
                        if ex.status.is_none() {
                            return ex
                                .violation(
                                    conn,
                                    ProtocolViolation::Unexpected(
                                        "END_RESPONSE before SEND_HEADERS",
                                    ),
                                )
                                .await;
                        }
                        let in_step = owe.is_none() && conn.buf.is_empty();
                        return ex.end(conn, reuse && in_step);
                    }
                    Frame::Cpong => {
                        return ex
                            .violation(
                                conn,
                                ProtocolViolation::Unexpected("CPONG during a request"),
                            )
                            .await;
                    }
                }
            }
        }
    }
}

/// How long a bodyless response's END_RESPONSE is awaited once the server dropped the body.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Writes all of `bytes`; `Err(None)` if the member does not take them within `timeout`.
pub(crate) async fn write(
    conn: &mut Conn,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), Option<std::io::Error>> {
    match tokio::time::timeout(timeout, conn.stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

enum Event {
    Frame(Result<Frame, ReadError>),
    Chunk(Result<Option<Bytes>, ClientError>),
}

struct Exchange {
    pool: Arc<Pool>,
    /// The local end of the connection and how long the request waited for it, handed out
    /// with the response head.
    local: Option<SocketAddr>,
    pool_wait: Duration,
    head_tx: Option<HeadSender>,
    body_tx: Option<mpsc::Sender<Result<Bytes, ClientError>>>,
    status: Option<StatusCode>,
    received_any: bool,
    /// The response has no body (HEAD, 204, 304).
    bodyless: bool,
    /// The server dropped a bodyless response: only END_RESPONSE is awaited.
    draining: bool,
}

impl Exchange {
    /// Resolves when nobody waits for the response any more.
    async fn gone(&mut self) {
        match (&mut self.head_tx, &self.body_tx) {
            (Some(h), _) => h.closed().await,
            (None, Some(b)) => b.closed().await,
            (None, None) => std::future::pending().await,
        }
    }

    /// A body write failed (the forward request went out before).
    fn write_error(&self, conn: &Conn, e: std::io::Error) -> ClientError {
        if conn.reused && !self.received_any {
            ClientError::Unanswered(e.to_string())
        } else {
            ClientError::Write(e)
        }
    }

    fn deliver_head(&mut self, head: ResponseHead) -> bool {
        let (tx, rx) = mpsc::channel(8);
        let mut res = Response::new(ResponseBody::new(
            rx,
            Connected {
                local: self.local,
                pool_wait: self.pool_wait,
            },
        ));
        *res.status_mut() = head.status;
        let headers = res.headers_mut();
        for (n, v) in head.headers {
            headers.append(n, v);
        }
        self.status = Some(head.status);
        self.bodyless |= matches!(head.status.as_u16(), 204 | 304);
        self.body_tx = Some(tx);
        match self.head_tx.take() {
            Some(h) => h.send(Ok(res)).is_ok(),
            None => false,
        }
    }

    async fn deliver_chunk(&mut self, data: Bytes) -> bool {
        match &self.body_tx {
            Some(tx) => tx.send(Ok(data)).await.is_ok(),
            None => false,
        }
    }

    /// END_RESPONSE: the body ends; the connection is pooled or closed.
    fn end(mut self, conn: Conn, reuse: bool) {
        self.body_tx = None;
        if self.status == Some(StatusCode::FORBIDDEN) && !reuse {
            // Tomcat answers a missing or wrong secret with 403 and closes the connection
            // (AjpProcessor.prepareRequest: status 403, ErrorState.CLOSE_CLEAN).
            self.pool.stats.add(&self.pool.stats.secret_rejections);
            self.pool.log_secret_rejection();
        }
        if reuse {
            self.pool.checkin(conn);
        } else {
            self.pool.stats.add(&self.pool.stats.closed_after_response);
            drop(conn);
        }
    }

    /// The caller went away: close the connection (it may be mid-response).
    fn abandon(self, conn: Conn) {
        self.pool.stats.add(&self.pool.stats.closed_after_response);
        drop(conn);
    }

    async fn violation(self, conn: Conn, v: ProtocolViolation) {
        self.pool.stats.add(&self.pool.stats.protocol_errors);
        log::warn!(
            "AJP {}: protocol violation: {v}; connection closed",
            self.pool.addr()
        );
        self.fail(conn, ClientError::Protocol(v)).await;
    }

    /// Closes the connection, then reports `err` to whoever waits.
    async fn fail(mut self, conn: Conn, err: ClientError) {
        self.pool.stats.add(&self.pool.stats.closed_after_response);
        drop(conn);
        if let Some(h) = self.head_tx.take() {
            let _ = h.send(Err(err));
        } else if let Some(tx) = self.body_tx.take() {
            let _ = tx.send(Err(err)).await;
        }
    }
}
