//! The memcached backend: memcached-session-manager's node semantics at the proxy.
//!
//! * Primary `keel:<id>` on the key's node; backup `keel:bak:<id>` on the next available node
//!   in list order after it. Every write goes to both; a load touches both.
//! * create: a random available primary, then another primary, then the failover nodes (in
//!   list order); `ms … ME` (add), so an id collision is an `NS` and a new id.
//! * load: the primary; on a miss or a failure the backup. A primary that answered but missed
//!   gets the record back from the backup (same key); a primary that is down or failed means
//!   relocation: the record is written to a live node chosen as for create and the key's node
//!   changes.
//! * save: `ms … C<cas>` (or `MR` without a token) on the primary; `EX` is a conflict, a
//!   missing primary with a live backup is restored, a down primary relocates. The CAS check
//!   needs the primary: a save that relocates (primary down) or restores (primary lost the
//!   item) is written without it.
//! * delete: both copies; 503 only if neither node could be reached.
//!
//! A node whose operation fails is marked down by its [`NodeClient`] and skipped until its
//! retry delay has passed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::clock::Clock;
use crate::envelope;
use crate::meta::{Expiry, Key, MetaDelete, MetaGet, MetaSet, Response, SetMode};
use crate::metrics::Metrics;
use crate::node::{NodeClient, NodeError, TransportConfig};
use crate::nodes::Nodes;
use crate::random;
use crate::session_key::SessionKey;
use crate::store::{Record, StoreError, Written};

/// How many fresh ids a create tries when `ME` finds the id taken.
const ID_ATTEMPTS: usize = 3;

/// What one node answered, reduced to what the store decides on.
enum Outcome {
    /// The node answered (any response but an error line).
    Answer(Response),
    /// The node failed (connect, timeout, I/O, protocol, or marked down); already counted.
    Failed,
}

/// The memcached backend.
#[derive(Debug)]
pub struct MemcachedStore {
    nodes: Vec<NodeClient>,
    failover: Vec<bool>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl MemcachedStore {
    pub(crate) fn new(
        nodes: &Nodes,
        transport: TransportConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        MemcachedStore {
            nodes: nodes
                .list()
                .iter()
                .map(|n| NodeClient::new(&n.id, n.addr, transport.clone(), clock.clone()))
                .collect(),
            failover: nodes.list().iter().map(|n| n.failover).collect(),
            clock,
            metrics,
        }
    }

    /// The configured node ids, in order.
    pub(crate) fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.id())
    }

    /// The clients of the nodes, in order (health, pools).
    pub fn nodes(&self) -> &[NodeClient] {
        &self.nodes
    }

    fn index(&self, key: &SessionKey) -> Result<usize, StoreError> {
        self.nodes
            .iter()
            .position(|n| n.id() == key.node())
            .ok_or_else(|| {
                StoreError::Key(crate::session_key::SessionKeyError::UnknownNode(
                    key.node().to_owned(),
                ))
            })
    }

    /// The next available node after `primary` in list order (never `primary` itself).
    fn backup_of(&self, primary: usize) -> Option<usize> {
        let n = self.nodes.len();
        (1..n)
            .map(|step| (primary + step) % n)
            .find(|&i| self.nodes[i].is_available())
    }

    /// Where a new (or relocated) record may go, best first: the available primaries in
    /// random order, then the available failover nodes in list order; never `exclude`.
    fn candidates(&self, exclude: Option<usize>) -> Result<Vec<usize>, StoreError> {
        let usable = |i: &usize| Some(*i) != exclude && self.nodes[*i].is_available();
        let mut primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.failover[*i])
            .filter(usable)
            .collect();
        random::shuffle(&mut primaries)?;
        primaries.extend(
            (0..self.nodes.len())
                .filter(|i| self.failover[*i])
                .filter(usable),
        );
        Ok(primaries)
    }

    fn expiry(&self, ttl: u64) -> Expiry {
        Expiry::from_ttl(ttl, self.clock.unix_now())
    }

    /// Sends one command to node `i`. Node failures are counted (the client marked the node
    /// down); an error line is returned as an error.
    async fn call(&self, i: usize, command: BytesMut) -> Result<Outcome, StoreError> {
        match self.nodes[i].call(&command).await {
            Ok(r) => Ok(Outcome::Answer(r)),
            Err(e @ NodeError::Reply { .. }) => Err(StoreError::Node(e)),
            Err(e) => {
                if e.counts_against_node() {
                    Metrics::inc(&self.metrics.node_failures);
                }
                log::debug!("session store: {e}");
                Ok(Outcome::Failed)
            }
        }
    }

    /// A response that makes no sense for the command: the node is confused; mark it down.
    fn unexpected(&self, i: usize, r: &Response) -> Outcome {
        log::warn!(
            "memcached node {}: unexpected answer {r:?}; marked down",
            self.nodes[i].id()
        );
        self.nodes[i].mark_down();
        Metrics::inc(&self.metrics.node_failures);
        Outcome::Failed
    }

    async fn set(
        &self,
        i: usize,
        key: &Key,
        value: &[u8],
        ttl: u64,
        mode: SetMode,
        cas: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let mut cmd = BytesMut::new();
        MetaSet {
            mode,
            compare_cas: cas,
            ..MetaSet::new(key, value, self.expiry(ttl))
        }
        .encode(&mut cmd);
        self.call(i, cmd).await
    }

    /// `mg <key> [v] c T<ttl>`.
    async fn get(&self, i: usize, key: &Key, value: bool, ttl: u64) -> Result<Outcome, StoreError> {
        let mut cmd = BytesMut::new();
        MetaGet {
            value,
            cas: true,
            touch: Some(self.expiry(ttl)),
            ..MetaGet::new(key)
        }
        .encode(&mut cmd);
        self.call(i, cmd).await
    }

    /// Writes the backup copy on the next available node after `primary`; best effort.
    async fn write_backup(
        &self,
        primary: usize,
        key: &SessionKey,
        value: &[u8],
        ttl: u64,
    ) -> Result<(), StoreError> {
        if let Some(b) = self.backup_of(primary) {
            let bk = backup_key(key)?;
            if let Outcome::Answer(r) = self.set(b, &bk, value, ttl, SetMode::Set, None).await?
                && !matches!(r, Response::Done(_))
            {
                self.unexpected(b, &r);
            }
        }
        Ok(())
    }

    /// Writes `value` as a new primary record for `key`'s id on a live node other than
    /// `from`, and its backup. `None` when no node took it.
    async fn relocate(
        &self,
        key: &SessionKey,
        from: usize,
        value: &[u8],
        ttl: u64,
    ) -> Result<Option<Written>, StoreError> {
        let pk = primary_key(key)?;
        for c in self.candidates(Some(from))? {
            match self.set(c, &pk, value, ttl, SetMode::Set, None).await? {
                Outcome::Answer(r @ Response::Done(_)) => {
                    let moved = key.on_node(self.nodes[c].id());
                    log::info!(
                        "session store: session relocated from node {} to {}",
                        key.node(),
                        moved.node()
                    );
                    Metrics::inc(&self.metrics.relocations);
                    self.write_backup(c, &moved, value, ttl).await?;
                    return Ok(Some(Written {
                        key: moved,
                        cas: r.cas().unwrap_or(0),
                    }));
                }
                Outcome::Answer(r) => {
                    self.unexpected(c, &r);
                }
                Outcome::Failed => {}
            }
        }
        Ok(None)
    }

    pub(crate) async fn load(
        &self,
        key: &SessionKey,
        ttl: u64,
    ) -> Result<Option<Record>, StoreError> {
        let p = self.index(key)?;
        let pk = primary_key(key)?;
        let mut primary_failed = true;
        if self.nodes[p].is_available() {
            match self.get(p, &pk, true, ttl).await? {
                Outcome::Answer(Response::Value { data, flags }) => {
                    let cas = Response::Done(flags).cas().unwrap_or(0);
                    let Some((route, state)) = unwrap_envelope(key, &data) else {
                        return Ok(None);
                    };
                    self.touch_backup(p, key, &data, ttl).await?;
                    return Ok(Some(Record {
                        key: key.clone(),
                        cas,
                        route,
                        state,
                    }));
                }
                Outcome::Answer(Response::Miss(_)) => primary_failed = false,
                Outcome::Answer(r) => {
                    self.unexpected(p, &r);
                }
                Outcome::Failed => {}
            }
        }
        // The backup: the primary missed, failed or is down.
        let Some(b) = self.backup_of(p) else {
            return if primary_failed {
                Err(StoreError::Unavailable)
            } else {
                Ok(None)
            };
        };
        let data = match self.get(b, &backup_key(key)?, true, ttl).await? {
            Outcome::Answer(Response::Value { data, .. }) => data,
            Outcome::Answer(Response::Miss(_)) => return Ok(None),
            Outcome::Answer(r) => {
                self.unexpected(b, &r);
                return self.unreachable_or_miss(primary_failed);
            }
            Outcome::Failed => return self.unreachable_or_miss(primary_failed),
        };
        let Some((route, state)) = unwrap_envelope(key, &data) else {
            return Ok(None);
        };
        if !primary_failed {
            // The primary is up but lost the record (restarted): put it back, same key.
            if let Outcome::Answer(r @ Response::Done(_)) =
                self.set(p, &pk, &data, ttl, SetMode::Set, None).await?
            {
                return Ok(Some(Record {
                    key: key.clone(),
                    cas: r.cas().unwrap_or(0),
                    route,
                    state,
                }));
            }
        }
        let (key, cas) = match self.relocate(key, p, &data, ttl).await? {
            Some(w) => (w.key, w.cas),
            // Nowhere to move it: serve the backup's copy under the old key.
            None => (key.clone(), 0),
        };
        Ok(Some(Record {
            key,
            cas,
            route,
            state,
        }))
    }

    fn unreachable_or_miss(&self, primary_failed: bool) -> Result<Option<Record>, StoreError> {
        // With the primary alive and missing, its miss is the answer; otherwise nobody knows.
        if primary_failed {
            Err(StoreError::Unavailable)
        } else {
            Ok(None)
        }
    }

    /// Touches the backup's TTL after a primary hit; a missing backup (its node changed) is
    /// written again. Best effort.
    async fn touch_backup(
        &self,
        p: usize,
        key: &SessionKey,
        data: &Bytes,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let Some(b) = self.backup_of(p) else {
            return Ok(());
        };
        match self.get(b, &backup_key(key)?, false, ttl).await? {
            Outcome::Answer(Response::Miss(_)) => self.write_backup(p, key, data, ttl).await,
            Outcome::Answer(Response::Done(_)) | Outcome::Failed => Ok(()),
            Outcome::Answer(r) => {
                self.unexpected(b, &r);
                Ok(())
            }
        }
    }

    pub(crate) async fn create(&self, value: &[u8], ttl: u64) -> Result<Written, StoreError> {
        let candidates = self.candidates(None)?;
        for _ in 0..ID_ATTEMPTS {
            let mut collided = false;
            for &c in &candidates {
                let key = SessionKey::generate(self.nodes[c].id())?;
                let pk = primary_key(&key)?;
                match self.set(c, &pk, value, ttl, SetMode::Add, None).await? {
                    Outcome::Answer(r @ Response::Done(_)) => {
                        self.write_backup(c, &key, value, ttl).await?;
                        return Ok(Written {
                            cas: r.cas().unwrap_or(0),
                            key,
                        });
                    }
                    Outcome::Answer(Response::NotStored(_)) => {
                        log::warn!("session store: a new id is taken already; drawing another");
                        collided = true;
                        break;
                    }
                    Outcome::Answer(r) => {
                        self.unexpected(c, &r);
                    }
                    Outcome::Failed => {}
                }
            }
            if !collided {
                break;
            }
        }
        Err(StoreError::Unavailable)
    }

    pub(crate) async fn save(
        &self,
        key: &SessionKey,
        value: &[u8],
        cas: Option<u64>,
        ttl: u64,
    ) -> Result<Written, StoreError> {
        let p = self.index(key)?;
        let pk = primary_key(key)?;
        if self.nodes[p].is_available() {
            let mode = if cas.is_some() {
                SetMode::Set
            } else {
                SetMode::Replace
            };
            match self.set(p, &pk, value, ttl, mode, cas).await? {
                Outcome::Answer(r @ Response::Done(_)) => {
                    self.write_backup(p, key, value, ttl).await?;
                    return Ok(Written {
                        key: key.clone(),
                        cas: r.cas().unwrap_or(0),
                    });
                }
                Outcome::Answer(Response::Exists(_)) => return Err(StoreError::Conflict),
                Outcome::Answer(Response::NotFound(_) | Response::NotStored(_)) => {
                    return self.restore(p, key, value, ttl).await;
                }
                Outcome::Answer(r) => {
                    self.unexpected(p, &r);
                }
                Outcome::Failed => {}
            }
        }
        // The primary is down: the record lives on if its backup does.
        let b = self.backup_of(p).ok_or(StoreError::Unavailable)?;
        match self.get(b, &backup_key(key)?, false, ttl).await? {
            Outcome::Answer(Response::Done(_)) => {}
            Outcome::Answer(Response::Miss(_)) => return Err(StoreError::NotFound),
            Outcome::Answer(r) => {
                self.unexpected(b, &r);
                return Err(StoreError::Unavailable);
            }
            Outcome::Failed => return Err(StoreError::Unavailable),
        }
        self.relocate(key, p, value, ttl)
            .await?
            .ok_or(StoreError::Unavailable)
    }

    /// A save whose primary (alive) does not have the record: if the backup does, the primary
    /// lost it (restart) and gets it back with this save (add mode: a concurrent restore
    /// wins, and this one is a conflict); else the session is gone.
    async fn restore(
        &self,
        p: usize,
        key: &SessionKey,
        value: &[u8],
        ttl: u64,
    ) -> Result<Written, StoreError> {
        let Some(b) = self.backup_of(p) else {
            return Err(StoreError::NotFound);
        };
        match self.get(b, &backup_key(key)?, false, ttl).await? {
            Outcome::Answer(Response::Done(_)) => {}
            _ => return Err(StoreError::NotFound),
        }
        match self
            .set(p, &primary_key(key)?, value, ttl, SetMode::Add, None)
            .await?
        {
            Outcome::Answer(r @ Response::Done(_)) => {
                self.write_backup(p, key, value, ttl).await?;
                Ok(Written {
                    key: key.clone(),
                    cas: r.cas().unwrap_or(0),
                })
            }
            Outcome::Answer(Response::NotStored(_)) => Err(StoreError::Conflict),
            Outcome::Answer(r) => {
                self.unexpected(p, &r);
                Err(StoreError::Unavailable)
            }
            Outcome::Failed => Err(StoreError::Unavailable),
        }
    }

    pub(crate) async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let p = self.index(key)?;
        let mut reached = false;
        if self.nodes[p].is_available() {
            reached |= self.delete_one(p, &primary_key(key)?).await?;
        }
        if let Some(b) = self.backup_of(p) {
            reached |= self.delete_one(b, &backup_key(key)?).await?;
        }
        if reached {
            Ok(())
        } else {
            Err(StoreError::Unavailable)
        }
    }

    async fn delete_one(&self, i: usize, key: &Key) -> Result<bool, StoreError> {
        let mut cmd = BytesMut::new();
        MetaDelete::new(key).encode(&mut cmd);
        Ok(match self.call(i, cmd).await? {
            Outcome::Answer(Response::Done(_) | Response::NotFound(_)) => true,
            Outcome::Answer(r) => {
                self.unexpected(i, &r);
                false
            }
            Outcome::Failed => false,
        })
    }
}

fn primary_key(key: &SessionKey) -> Result<Key, StoreError> {
    key.primary_key()
        .map_err(|_| StoreError::Key(crate::session_key::SessionKeyError::Malformed))
}

fn backup_key(key: &SessionKey) -> Result<Key, StoreError> {
    key.backup_key()
        .map_err(|_| StoreError::Key(crate::session_key::SessionKeyError::Malformed))
}

/// The route and state in a stored value; a value that is not an envelope is treated as a
/// miss (never served), and logged.
fn unwrap_envelope(key: &SessionKey, data: &Bytes) -> Option<(Option<String>, Bytes)> {
    let r = envelope::decode(data);
    if r.is_none() {
        log::warn!(
            "session store: the record of a session on node {} is not a keel envelope; ignored",
            key.node()
        );
    }
    r
}
