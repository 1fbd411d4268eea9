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
