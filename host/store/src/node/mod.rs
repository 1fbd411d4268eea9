//! The tokio transport to memcached nodes: [`NodeClient`] (a pool of connections per node,
//! connect and operation timeouts, dead-node marking), its [`TransportConfig`] and
//! [`NodeError`].
//!
//! ```text
//! call: node marked down? → Down (nothing sent)
//!       idle connection that still looks open, else a new one (connect timeout) → write →
//!       read one response (all within the op timeout) → clean: back to the pool
//!       a pooled connection closed by the node before any answer: once more on a new one
//!       failure: connection closed; connect/timeout/I/O/protocol errors mark the node down
//! ```

mod client;
mod config;
mod conn;
mod error;

pub use client::NodeClient;
pub use config::TransportConfig;
pub use error::NodeError;
