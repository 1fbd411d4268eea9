//! The connection pool of one member: idle connections (last in, first out), an optional
//! limit, CPING before reusing a connection idle for long, and a reaper that closes idle
//! connections itself (Tomcat never does by default).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::client::config::ClientConfig;
use crate::client::conn::Conn;
use crate::client::error::ClientError;
use crate::client::stats::Stats;

/// One member's pool.
#[derive(Debug)]
pub(crate) struct Pool {
    addr: SocketAddr,
    config: ClientConfig,
    idle: Mutex<Vec<Conn>>,
    limit: Option<Arc<Semaphore>>,
    reaper: AtomicBool,
    pub(crate) stats: Arc<Stats>,
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr, config: ClientConfig, stats: Arc<Stats>) -> Self {
        Pool {
            addr,
            limit: config
                .pool
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n))),
            config,
            idle: Mutex::new(Vec::new()),
            reaper: AtomicBool::new(false),
            stats,
        }
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of idle connections.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn pop_idle(&self) -> Option<Conn> {
        self.idle.lock().ok()?.pop()
    }

    /// A connection ready for a request: a pooled one (checked), else a new one.
    pub(crate) async fn checkout(&self) -> Result<Conn, ClientError> {
        let pool = &self.config.pool;
        while let Some(mut conn) = self.pop_idle() {
            let idle = conn.idle_since.elapsed();
            if idle >= pool.idle_timeout {
                self.stats.add(&self.stats.idle_closed);
                continue;
            }
            if !conn.looks_alive() {
                self.stats.add(&self.stats.stale_dropped);
                continue;
            }
            if idle >= pool.cping_after_idle {
                self.stats.add(&self.stats.cpings);
                if let Err(e) = conn
                    .cping(self.config.packet_size, pool.cping_timeout)
                    .await
                {
                    log::debug!(
                        "AJP {}: pooled connection failed CPING ({e}); dropped",
                        self.addr
                    );
                    self.stats.add(&self.stats.cping_failures);
                    continue;
                }
            }
            self.stats.add(&self.stats.reused);
            return Ok(conn);
        }
        self.connect().await
    }

    /// A new connection (counted against `max_connections`).
    pub(crate) async fn connect(&self) -> Result<Conn, ClientError> {
        let permit = match &self.limit {
            None => None,
            Some(sem) => {
                let wait = self.config.pool.wait_timeout;
                match tokio::time::timeout(wait, sem.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    _ => return Err(ClientError::PoolTimeout(wait)),
                }
            }
        };
        let t = self.config.connect_timeout;
        let stream = match tokio::time::timeout(t, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ClientError::Connect(e)),
            Err(_) => return Err(ClientError::ConnectTimeout(t)),
        };
        let _ = stream.set_nodelay(true);
        self.stats.add(&self.stats.connects);
        Ok(Conn::new(stream, permit))
    }

    /// Returns a connection whose last response ended cleanly with reuse allowed.
    pub(crate) fn checkin(self: &Arc<Self>, mut conn: Conn) {
        conn.reused = true;
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.config.pool.max_idle
        {
            idle.push(conn);
        }
        self.start_reaper();
    }

    /// Starts (once) the task that closes connections idle longer than the idle timeout.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Pool> = Arc::downgrade(self);
        let period = (self.config.pool.idle_timeout / 4).max(std::time::Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = weak.upgrade() else { return };
                let timeout = pool.config.pool.idle_timeout;
                if let Ok(mut idle) = pool.idle.lock() {
                    let before = idle.len();
                    idle.retain(|c| c.idle_since.elapsed() < timeout);
                    for _ in idle.len()..before {
                        pool.stats.add(&pool.stats.idle_closed);
                    }
                }
            }
        });
    }
}
