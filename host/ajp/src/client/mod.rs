//! A tokio AJP client for one member: [`AjpClient::send`] for requests (streaming both ways),
//! [`AjpClient::cping`] as the health check, a pool of connections behind both.
//!
//! ```text
//! send: encode (400 if it does not fit; nothing touched) → checkout (pooled: alive? CPING if
//!       idle long; else connect) → take the body → spawn the exchange → await SEND_HEADERS
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

use bytes::{Bytes, BytesMut};
use http::Response;
use tokio::sync::oneshot;

pub use config::{ClientConfig, ConfigError, PoolConfig, Secret};
pub use error::{ClientError, ProtocolViolation};
pub use request::{AjpRequest, BodySource, BodyStream, BoxError, Peer, RequestBody};
pub use response::ResponseBody;
pub use stats::{Stats, StatsSnapshot};

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
    pub async fn send(&self, request: AjpRequest) -> Result<Response<ResponseBody>, ClientError> {
        let config = self.pool.config();
        let forward = request::build(&request, config.secret_value())?;
        let mut encoded = BytesMut::with_capacity(1024);
        forward
            .encode(&mut encoded, config.packet_size)
            .map_err(ClientError::Unencodable)?;

        let conn = self.pool.checkout().await?;
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
        let (head_tx, head_rx) = oneshot::channel();
        // The exchange applies the response timeout itself (only while it waits for the
        // member) and always answers.
        tokio::spawn(exchange::run(
            self.pool.clone(),
            conn,
            encoded,
            body,
            head_tx,
        ));
        head_rx.await.unwrap_or(Err(ClientError::Aborted))
    }

    /// The health check: CPING on a pooled connection (or a new one), expecting CPONG
    /// within `cping_timeout`. A healthy connection goes back to the pool.
    pub async fn cping(&self) -> Result<(), ClientError> {
        let config = self.pool.config();
        let mut conn = self.pool.checkout().await?;
        self.pool.stats.add(&self.pool.stats.cpings);
        match conn
            .cping(config.packet_size, config.pool.cping_timeout)
            .await
        {
            Ok(()) => {
                self.pool.checkin(conn);
                Ok(())
            }
            Err(e) => {
                self.pool.stats.add(&self.pool.stats.cping_failures);
                Err(e)
            }
        }
    }
}
