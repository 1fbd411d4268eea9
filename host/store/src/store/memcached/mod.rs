//! The memcached backend: memcached-session-manager's node semantics at the proxy. This file
//! holds the node side — which node is the backup, which nodes may take a new or moved
//! record, one command to one node and what a failure does — and `ops` the four operations.
//!
//! A node whose operation fails is marked down by its [`NodeClient`] and skipped until its
//! retry delay has passed.

mod ops;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::clock::Clock;
use crate::envelope;
use crate::meta::{Expiry, Key, MetaGet, MetaSet, Response, SetMode};
use crate::metrics::Metrics;
use crate::node::{NodeClient, NodeError, TransportConfig};
use crate::nodes::Nodes;
use crate::random;
use crate::session_key::SessionKey;
use crate::store::{StoreError, Written};

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
