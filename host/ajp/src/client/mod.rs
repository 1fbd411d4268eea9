//! A tokio AJP client for one member: [`AjpClient::send`] for requests (streaming both ways),
//! [`AjpClient::cping`] as the health check, a pool of connections behind both.
//!
//! ```text
//! send: encode (431/414/400 if it does not fit; nothing touched) → checkout (pooled: alive?
//!       CPING if due; else connect, CPING per `Ping`) → take the body → write the request (a
//!       closed pooled connection: once more on a new one) → spawn the exchange → await
//!       SEND_HEADERS
//! ```

mod config;
mod conn;
mod error;
mod exchange;
mod pool;
mod request;
mod response;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use tokio::sync::oneshot;

pub use config::{ClientConfig, ConfigError, Ping, PoolConfig, Secret};
pub use error::{ClientError, ProtocolViolation};
pub use request::{
    AjpRequest, BodySource, BodyStream, BoxError, Peer, RequestBody, encode_request,
};
pub use response::{Connected, ResponseBody};
pub use stats::{Stats, StatsSnapshot};

use conn::Conn;
use exchange::BodyState;
use pool::Pool;

/// The client of one member. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct AjpClient {
    pool: Arc<Pool>,
}

impl AjpClient {
    /// A client for the member at `addr`. Fails on a configuration it refuses (empty secret).
    pub fn new(addr: SocketAddr, config: ClientConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(AjpClient {
            pool: Arc::new(Pool::new(addr, config, Arc::new(Stats::default()))),
        })
    }

    /// The member's address.
    pub fn addr(&self) -> SocketAddr {
        self.pool.addr()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        self.pool.config()
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.pool.stats.snapshot()
    }

    /// Idle pooled connections right now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// Sends one request; resolves to the response head with a streaming body. Errors say
    /// whether the request was sent and whether they count against the member.
    ///
    /// A pooled connection found closed when the request is written to it is replaced by a
    /// new connection to the same member (as httpd and mod_jk reconnect to the same worker):
    /// a member's idle close never moves a session to another member. With `retry_unanswered`
    /// (an idempotent request with an empty or whole body) the same holds for a pooled
    /// connection closed after the request went out but before any answer.
    pub async fn send(
        &self,
        mut request: AjpRequest,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let encoded = encode_request(&mut request, self.pool.config())?;
        let head_only = request.parts.method == http::Method::HEAD;
        let replay = match &request.body {
            RequestBody::Empty if request.retry_unanswered => Some(Bytes::new()),
            RequestBody::Full(b) if request.retry_unanswered => Some(b.clone()),
            _ => None,
        };

        let asked = std::time::Instant::now();
        let mut conn = self.pool.checkout().await?;
        conn.pool_wait = asked.elapsed();
        let length = request.body.length();
        let (stream, pending) = match request.body {
            RequestBody::Empty => (None, Bytes::new()),
            RequestBody::Full(b) => (None, b),
            RequestBody::Stream { source, .. } => match source.take() {
                Some(s) => (Some(s), Bytes::new()),
                None => {
                    // Nothing was written: the connection is still clean.
                    self.pool.checkin(conn);
                    return Err(ClientError::BodyUnavailable);
                }
            },
        };
        let body = BodyState {
            stream,
            pending,
            length,
            sent: 0,
        };
        let conn = self.write_request(conn, &encoded).await?;
        match self.exchange(conn, body, head_only).await {
            Err(ClientError::Unanswered(why)) if replay.is_some() => {
                log::debug!(
                    "AJP {}: pooled connection closed before any answer ({why}); the request \
                     once more on a new connection",
                    self.pool.addr()
                );
                let body = BodyState {
                    stream: None,
                    pending: replay.unwrap_or_default(),
                    length,
                    sent: 0,
                };
                let asked = std::time::Instant::now();
                let mut conn = self.pool.connect_checked().await?;
                conn.pool_wait = asked.elapsed();
                let conn = self.write_request(conn, &encoded).await?;
                self.exchange(conn, body, head_only).await
            }
            other => other,
        }
    }

    /// Writes the forward request; a pooled connection that turns out closed is replaced
    /// once by a new one (nothing of the request was processed).
    async fn write_request(&self, mut conn: Conn, request: &[u8]) -> Result<Conn, ClientError> {
        let timeout = self.pool.config().response_timeout;
        match exchange::write(&mut conn, request, timeout).await {
            Ok(()) => return Ok(conn),
            Err(Some(e)) if conn.reused => {
                self.pool.stats.add(&self.pool.stats.stale_dropped);
                log::debug!(
                    "AJP {}: pooled connection closed by the member ({e}); a new one",
                    self.pool.addr()
                );
            }
            Err(Some(e)) => return Err(ClientError::Write(e)),
            Err(None) => return Err(ClientError::ResponseTimeout(timeout)),
        }
        let mut conn = self.pool.connect_checked().await?;
        match exchange::write(&mut conn, request, timeout).await {
            Ok(()) => Ok(conn),
            Err(Some(e)) => Err(ClientError::Stale(e.to_string())),
            Err(None) => Err(ClientError::ResponseTimeout(timeout)),
        }
    }

    /// Runs the exchange on its own task and awaits the response head.
    async fn exchange(
        &self,
        conn: Conn,
        body: BodyState,
        head_only: bool,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let (head_tx, head_rx) = oneshot::channel();
        // The exchange applies the response timeout itself (only while it waits for the
        // member) and always answers.
        tokio::spawn(exchange::run(
            self.pool.clone(),
            conn,
            body,
            head_tx,
            head_only,
        ));
        head_rx.await.unwrap_or(Err(ClientError::Aborted))
    }

    /// The health check: CPING on a pooled connection (or a new one), expecting CPONG
    /// within `cping_timeout`. A healthy connection goes back to the pool.
    pub async fn cping(&self) -> Result<(), ClientError> {
        let mut conn = match self.pool.pop_usable() {
            Some(conn) => conn,
            None => self.pool.connect().await?,
        };
        self.pool.ping(&mut conn).await?;
        self.pool.checkin(conn);
        Ok(())
    }
}
