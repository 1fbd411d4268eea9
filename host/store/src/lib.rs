//! keel's session store: the store behind the `session` filter, served in process by keel
//! and over HTTP by `keel bridge` through the same handler.
//!
//! * [`api`]: [`api::handle`], the HTTP API (version 1) over a [`Store`].
//! * [`store`]: [`Store`] — memcached with memcached-session-manager's node semantics, or an
//!   in-process map — with its [`StoreConfig`], [`Record`]s and [`StoreError`]s.
//! * [`nodes`]: the node list (`n1:127.0.0.1:11211,…`, `failover_nodes`).
//! * [`meta`]: the memcached meta protocol, sans-IO (encode commands, decode responses).
//! * [`node`]: the tokio transport to one memcached node (pool, timeouts, dead marking).
//! * [`session_key`]: ids (`<32 hex>-<node>`) and the memcached keys built from them.
//! * [`metrics`]: the store's counters. [`clock`]: the injectable clock.
//!
//! The contract is `/work/notes/store-api.md` (version 1 of the API). Where it was silent,
//! this crate decided (and the note says so):
//!
//! * `keel-store-ttl` is optional (default `StoreConfig::default_ttl`, 30 min); 0 or non-digits
//!   is 400; over 30 days memcached gets `now + ttl`, capped at 2^31−1.
//! * The path's key is not percent-decoded (`%`, `/`, `..` are 400). An unknown node id is
//!   404 for every call; a bad `keel-store-replaces` is 400.
//! * A save writes the whole record: no `keel-store-route` = unbound. Without a CAS token it
//!   is a replace (`MR`): a gone record is 404, never recreated.
//! * The CAS check needs the primary item: a save that relocates (primary down) or restores
//!   a primary that lost the item (backup present) is written without it.
//! * A load whose primary is alive but misses while the backup hits writes the record back
//!   to the primary (same key). With no node to relocate to, the backup's copy is served
//!   under the old key with CAS 0.
//! * A value that is not a version-1 envelope is a miss. Delete is 503 only when neither
//!   the primary's nor the backup's node answered. memcached error lines are 500 and do not
//!   mark the node down. The memory backend's node id is `local`.

pub mod api;
pub mod clock;
mod envelope;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod nodes;
mod random;
pub mod session_key;
pub mod store;

pub use metrics::{Metrics, MetricsSnapshot};
pub use nodes::{NodeSpec, Nodes, NodesError};
pub use random::RandomError;
pub use session_key::{SessionKey, SessionKeyError};
pub use store::{MEMORY_NODE, Record, Store, StoreConfig, StoreError, Written};
