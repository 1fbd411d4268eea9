//! The session store: [`Store`] checks what every backend needs checked (the key, the size
//! limit, the route, the TTL) and counts, then hands the operation to its backend —
//! memcached with memcached-session-manager's node semantics ([`memcached`]) or the
//! in-process map ([`memory`]).

pub mod memcached;
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::{Clock, SystemClock};
use crate::envelope;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::node::{NodeError, TransportConfig};
use crate::nodes::Nodes;
use crate::random::RandomError;
use crate::session_key::{SessionKey, SessionKeyError};

use memcached::MemcachedStore;
use memory::MemoryStore;

/// The node id of the memory store's keys (`<id>-local`).
pub const MEMORY_NODE: &str = "local";

/// Settings common to both backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The largest state (bytes) a create or save may carry; more is 413.
    pub max_state_bytes: usize,
    /// The idle timeout used when a request does not say (`keel-store-ttl`).
    pub default_ttl: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_state_bytes: 4096,
            default_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// A session record as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it lives now (differs from the key asked for after a relocation).
    pub key: SessionKey,
    /// The CAS token to save against.
    pub cas: u64,
    /// The route it is bound to.
    pub route: Option<String>,
    /// The state.
    pub state: Bytes,
}

/// The outcome of a create or a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where the record lives now.
    pub key: SessionKey,
    /// Its new CAS token.
    pub cas: u64,
}

/// Why an operation failed; [`StoreError::status`] is the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is not `<32 hex>-<node>` (400) or names no configured node (404).
    #[error("bad session key: {0}")]
    Key(#[from] SessionKeyError),
    /// The state is larger than `max_state_bytes` (413).
    #[error("session state of {len} bytes exceeds max_state_bytes {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A route that is not `[A-Za-z0-9_.-]{1,255}` (400).
    #[error("bad route (expected 1 to 255 of A-Z a-z 0-9 _ . -)")]
    BadRoute,
    /// A TTL of 0 (400).
    #[error("the TTL must be at least 1 second")]
    BadTtl,
    /// The record is not there (expired, deleted): a save writes nothing (404).
    #[error("no such session")]
    NotFound,
    /// The record changed since the CAS token was read: nothing written (409).
    #[error("the session changed since it was loaded (CAS conflict)")]
    Conflict,
    /// No node could serve the operation (503).
    #[error("no memcached node reachable")]
    Unavailable,
    /// A node refused a command it should have taken (an error line) (500).
    #[error(transparent)]
    Node(NodeError),
    /// The OS random source failed (500).
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl StoreError {
    /// The HTTP status for this error.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            StoreError::Key(SessionKeyError::UnknownNode(_)) | StoreError::NotFound => S::NOT_FOUND,
            StoreError::Key(_) | StoreError::BadRoute | StoreError::BadTtl => S::BAD_REQUEST,
            StoreError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            StoreError::Conflict => S::CONFLICT,
            StoreError::Unavailable => S::SERVICE_UNAVAILABLE,
            StoreError::Node(_) | StoreError::Random(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryStore),
    Memcached(MemcachedStore),
}

/// The session store. Share it (`Arc`) between the in-process callout path and the bridge.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    config: StoreConfig,
    metrics: Arc<Metrics>,
}

impl Store {
    /// The in-process store (the embedded default: one keel instance, lost on restart).
    pub fn memory(config: StoreConfig) -> Self {
        Self::memory_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Store::memory`] on the given clock.
    pub fn memory_with_clock(config: StoreConfig, clock: Arc<dyn Clock>) -> Self {
        Store {
            backend: Backend::Memory(MemoryStore::new(clock)),
            config,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The memcached store on `nodes`. Connects lazily: building it never fails.
    pub fn memcached(nodes: &Nodes, transport: TransportConfig, config: StoreConfig) -> Self {
        Self::memcached_with_clock(nodes, transport, config, Arc::new(SystemClock))
    }

    /// [`Store::memcached`] on the given clock (dead-node marking and absolute expirations).
    pub fn memcached_with_clock(
        nodes: &Nodes,
        transport: TransportConfig,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        Store {
            backend: Backend::Memcached(MemcachedStore::new(
                nodes,
                transport,
                clock,
                metrics.clone(),
            )),
            config,
            metrics,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counters now.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Parses and validates a key (`<32 hex>-<configured node>`).
    pub fn parse_key(&self, key: &str) -> Result<SessionKey, StoreError> {
        Ok(match &self.backend {
            Backend::Memory(_) => SessionKey::parse(key, [MEMORY_NODE].into_iter())?,
            Backend::Memcached(m) => SessionKey::parse(key, m.node_ids())?,
        })
    }

    /// Loads `key` and touches its TTL. `Ok(None)`: unknown or expired.
    pub async fn load(
        &self,
        key: &SessionKey,
        ttl: Duration,
    ) -> Result<Option<Record>, StoreError> {
        let ttl = ttl_secs(ttl)?;
        Metrics::inc(&self.metrics.loads);
        let r = match &self.backend {
            Backend::Memory(m) => Ok(m.load(key, ttl)),
            Backend::Memcached(m) => m.load(key, ttl).await,
        };
        match &r {
            Ok(Some(_)) => Metrics::inc(&self.metrics.hits),
            Ok(None) => Metrics::inc(&self.metrics.misses),
            Err(e) => self.count_error(e),
        }
        r
    }

    /// Creates a session with a new id; `replaces` (rotation) is deleted after the new record
    /// is written (a failure to delete it is logged, not returned).
    pub async fn create(
        &self,
        state: Bytes,
        route: Option<&str>,
        ttl: Duration,
        replaces: Option<&SessionKey>,
    ) -> Result<Written, StoreError> {
        let ttl = ttl_secs(ttl)?;
        let value = self.envelope(route, &state)?;
        let r = match &self.backend {
            Backend::Memory(m) => m.create(route, state, ttl),
            Backend::Memcached(m) => m.create(&value, ttl).await,
        };
        match &r {
            Ok(_) => Metrics::inc(&self.metrics.creates),
            Err(e) => self.count_error(e),
        }
        let written = r?;
        if let Some(old) = replaces
            && let Err(e) = self.delete_inner(old).await
        {
            log::warn!("session store: the rotated-out session was not deleted: {e}");
        }
        Ok(written)
    }

    /// Writes `state` and `route` (the whole record: no route = unbound) to `key`, compared
    /// against `cas` when given.
    pub async fn save(
        &self,
        key: &SessionKey,
        state: Bytes,
        route: Option<&str>,
        cas: Option<u64>,
        ttl: Duration,
    ) -> Result<Written, StoreError> {
        let ttl = ttl_secs(ttl)?;
        let value = self.envelope(route, &state)?;
        let r = match &self.backend {
            Backend::Memory(m) => m.save(key, route, state, cas, ttl),
            Backend::Memcached(m) => m.save(key, &value, cas, ttl).await,
        };
        match &r {
            Ok(_) => Metrics::inc(&self.metrics.saves),
            Err(e) => self.count_error(e),
        }
        r
    }

    /// Deletes `key` (both copies). Deleting what is not there succeeds.
    pub async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let r = self.delete_inner(key).await;
        if let Err(e) = &r {
            self.count_error(e);
        }
        r
    }

    async fn delete_inner(&self, key: &SessionKey) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            Backend::Memcached(m) => m.delete(key).await,
        }
    }

    fn envelope(&self, route: Option<&str>, state: &[u8]) -> Result<Bytes, StoreError> {
        if state.len() > self.config.max_state_bytes {
            return Err(StoreError::TooLarge {
                len: state.len(),
                max: self.config.max_state_bytes,
            });
        }
        if let Some(r) = route
            && !envelope::is_route(r)
        {
            return Err(StoreError::BadRoute);
        }
        Ok(envelope::encode(route, state))
    }

    fn count_error(&self, e: &StoreError) {
        match e {
            StoreError::Unavailable => Metrics::inc(&self.metrics.unavailable),
            StoreError::Conflict => Metrics::inc(&self.metrics.cas_conflicts),
            _ => {}
        }
    }
}

fn ttl_secs(ttl: Duration) -> Result<u64, StoreError> {
    match ttl.as_secs() {
        0 => Err(StoreError::BadTtl),
        s => Ok(s),
    }
}
