//! The client of one memcached node: a small pool of connections (last in, first out), the
//! connect and operation timeouts, and the node's health — a failed operation marks it down
//! for `retry_delay`, during which every operation is refused without touching the network.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::meta::{ErrorReply, Response};
use crate::node::config::TransportConfig;
use crate::node::conn::Conn;
use crate::node::error::NodeError;

/// One node: its id, address, pool and health. Operations go through [`NodeClient::call`].
#[derive(Debug)]
pub struct NodeClient {
    id: String,
    addr: SocketAddr,
    config: TransportConfig,
    clock: Arc<dyn Clock>,
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
    down_until: Mutex<Option<Instant>>,
}

impl NodeClient {
    /// A client for node `id` at `addr`. Connects lazily.
    pub fn new(id: &str, addr: SocketAddr, config: TransportConfig, clock: Arc<dyn Clock>) -> Self {
        NodeClient {
            id: id.to_owned(),
            addr,
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
            config,
            clock,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
        }
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the node is not marked down (its retry delay has passed).
    pub fn is_available(&self) -> bool {
        match self.down_until.lock() {
            Ok(d) => d.is_none_or(|t| self.clock.now() >= t),
            Err(_) => true,
        }
    }

    /// Marks the node down for the retry delay and closes its idle connections.
    pub fn mark_down(&self) {
        let until = self.clock.now() + self.config.retry_delay;
        if let Ok(mut d) = self.down_until.lock() {
            *d = Some(until);
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Number of idle pooled connections.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Sends one encoded command and returns its response. A node marked down is not tried
    /// ([`NodeError::Down`]). An error line (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`) is
    /// returned as [`NodeError::Reply`]. Failures that count against the node mark it down;
    /// the connection of any failure is closed.
    pub async fn call(&self, command: &[u8]) -> Result<Response, NodeError> {
        if !self.is_available() {
            return Err(NodeError::Down(self.id.clone()));
        }
        let result = self.call_inner(command).await;
        // Logged when the node's state changes: a node that stays down says so once, not once
        // per retry delay.
        let was_down = self.down_until.lock().is_ok_and(|d| d.is_some());
        if let Err(e) = &result
            && e.counts_against_node()
        {
            if was_down {
                log::debug!("memcached node {} ({}) still down: {e}", self.id, self.addr);
            } else {
                log::warn!(
                    "memcached node {} ({}) down (retried every {:?}): {e}",
                    self.id,
                    self.addr,
                    self.config.retry_delay
                );
            }
            self.mark_down();
        } else if result.is_ok()
            && was_down
            && let Ok(mut d) = self.down_until.lock()
        {
            *d = None;
            log::info!("memcached node {} ({}) is back", self.id, self.addr);
        }
        result
    }

    async fn call_inner(&self, command: &[u8]) -> Result<Response, NodeError> {
        let deadline = tokio::time::Instant::now() + self.config.op_timeout;
        let (mut conn, pooled) = match self.pop_live_idle() {
            Some(c) => (c, true),
            None => (self.fresh(deadline).await?, false),
        };
        let mut result = self.exchange(&mut conn, command, deadline).await;
        if pooled
            && conn.nothing_read()
            && matches!(result, Err(NodeError::Closed(_) | NodeError::Io { .. }))
        {
            // A pooled connection the node closed while it sat idle (a restart, an idle
            // timeout): nothing was processed. Once more, on a new connection.
            drop(conn);
            conn = self.fresh(deadline).await?;
            result = self.exchange(&mut conn, command, deadline).await;
        }
        let response = result?;
        if let Response::Error(source) = response {
            // After SERVER_ERROR memcached may close; after CLIENT_ERROR it may read the
            // rest of the command as another one. Either way the connection is done.
            if let ErrorReply::Server(_) = source {
                log::warn!("memcached node {}: {source}", self.id);
            }
            return Err(NodeError::Reply {
                node: self.id.clone(),
                source,
            });
        }
        if conn.is_clean() {
            self.push_idle(conn);
        }
        Ok(response)
    }

    async fn connect(&self) -> Result<TcpStream, NodeError> {
        let t = self.config.connect_timeout;
        let stream = match tokio::time::timeout(t, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(NodeError::Connect {
                    node: self.id.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(NodeError::ConnectTimeout {
                    node: self.id.clone(),
                    after: t,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// One command on `conn`, finished by `deadline`.
    async fn exchange(
        &self,
        conn: &mut Conn,
        command: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<Response, NodeError> {
        tokio::time::timeout_at(
            deadline,
            conn.exchange(&self.id, command, self.config.limits),
        )
        .await
        .unwrap_or_else(|_| {
            Err(NodeError::Timeout {
                node: self.id.clone(),
                after: self.config.op_timeout,
            })
        })
    }

    /// A new connection, counted against `max_connections` (waiting at most until
    /// `deadline` for a free slot).
    async fn fresh(&self, deadline: tokio::time::Instant) -> Result<Conn, NodeError> {
        let permit = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| NodeError::Timeout {
                node: self.id.clone(),
                after: self.config.op_timeout,
            })?;
        Ok(Conn::new(self.connect().await?, permit))
    }

    /// The most recently used idle connection that still looks open; closed ones are dropped.
    fn pop_live_idle(&self) -> Option<Conn> {
        loop {
            let conn = self.idle.lock().ok()?.pop()?;
            if conn.looks_alive() {
                return Some(conn);
            }
        }
    }

    fn push_idle(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.config.max_idle
        {
            idle.push(conn);
        }
    }
}
