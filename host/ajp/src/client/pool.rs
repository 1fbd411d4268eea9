//! The connection pool of one member: idle connections (last in, first out), an optional
//! limit, CPING as [`Ping`] says, a reaper that closes idle connections itself (Tomcat never
//! does by default), and the per-member warnings (packet-size mismatch, secret rejections).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::client::config::{ClientConfig, Ping};
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
    /// The packet-size mismatch was logged.
    warned_packet_size: AtomicBool,
    /// When a secret rejection was logged last.
    secret_logged: Mutex<Option<Instant>>,
    pub(crate) stats: Arc<Stats>,
}

/// How often a secret rejection is logged at most.
const SECRET_LOG_EVERY: Duration = Duration::from_secs(10);

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
            warned_packet_size: AtomicBool::new(false),
            secret_logged: Mutex::new(None),
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

    /// An idle connection that is within the idle timeout and still looks usable (not closed
    /// by the member, nothing unexpected waiting); no CPING yet.
    pub(crate) fn pop_usable(&self) -> Option<Conn> {
        while let Some(mut conn) = self.pop_idle() {
            if conn.idle_since.elapsed() >= self.config.pool.idle_timeout {
                self.stats.add(&self.stats.idle_closed);
                continue;
            }
            if !conn.looks_alive() {
                self.stats.add(&self.stats.stale_dropped);
                continue;
            }
            return Some(conn);
        }
        None
    }

    /// A connection ready for a request: a pooled one (CPING when due), else a new one
    /// (CPING unless [`Ping::Idle`]). A CPING that times out ends the checkout with the error:
    /// the member is hung or out of threads, and the next connection would wait as long.
    pub(crate) async fn checkout(&self) -> Result<Conn, ClientError> {
        let pool = &self.config.pool;
        while let Some(mut conn) = self.pop_usable() {
            let due =
                pool.ping == Ping::Always || conn.idle_since.elapsed() >= pool.cping_after_idle;
            if due {
                match self.ping(&mut conn).await {
                    Ok(()) => {}
                    Err(e @ ClientError::CpingTimeout(_)) => return Err(e),
                    Err(e) => {
                        log::debug!(
                            "AJP {}: pooled connection failed CPING ({e}); dropped",
                            self.addr
                        );
                        continue;
                    }
                }
            }
            self.stats.add(&self.stats.reused);
            return Ok(conn);
        }
        self.connect_checked().await
    }

    /// A new connection, checked with CPING unless [`Ping::Idle`].
    pub(crate) async fn connect_checked(&self) -> Result<Conn, ClientError> {
        let mut conn = self.connect().await?;
        if self.config.pool.ping != Ping::Idle {
            self.ping(&mut conn).await?;
        }
        Ok(conn)
    }

    /// CPING/CPONG on `conn`, counted.
    pub(crate) async fn ping(&self, conn: &mut Conn) -> Result<(), ClientError> {
        self.stats.add(&self.stats.cpings);
        let r = conn
            .cping(self.config.packet_size, self.config.pool.cping_timeout)
            .await;
        if r.is_err() {
            self.stats.add(&self.stats.cping_failures);
        }
        r
    }

    /// Tomcat asks for exactly its packetSize − 6 bytes of body: another size says the two
    /// packet sizes differ (keel's first unsolicited chunk may then overflow Tomcat's buffer,
    /// and Tomcat's chunks keel's). Said once per member.
    pub(crate) fn check_chunk_request(&self, n: usize) {
        let ours = self.config.packet_size.max_request_chunk();
        if n != ours && !self.warned_packet_size.swap(true, Ordering::Relaxed) {
            log::warn!(
                "AJP {}: the member asks for {n}-byte body chunks, keel's packet size gives {ours}: \
                 if it is Tomcat, its packetSize is {} and balancer.ajp.packet_size is {}; set \
                 both to the same value",
                self.addr,
                n + 6,
                self.config.packet_size.get()
            );
        }
    }

    /// A 403 that closed the connection: how Tomcat rejects a wrong secret. Logged at most
    /// once per [`SECRET_LOG_EVERY`] (the counter counts each).
    pub(crate) fn log_secret_rejection(&self) {
        let Ok(mut last) = self.secret_logged.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < SECRET_LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        log::error!(
            "AJP {}: configuration error: the member answered 403 and closed the connection, \
             which is how Tomcat rejects a missing or wrong AJP secret (or a request attribute \
             it does not allow); check that keel's AJP secret equals the connector's `secret` \
             attribute (keel_ajp_secret_rejections_total counts every one; this line repeats at \
             most every {}s)",
            self.addr,
            SECRET_LOG_EVERY.as_secs()
        );
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
        let period = (self.config.pool.idle_timeout / 4).max(Duration::from_millis(10));
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
