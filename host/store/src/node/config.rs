//! The transport's settings for every node: timeouts, the pool's size and how long a failed
//! node is left alone.

use std::time::Duration;

use crate::meta::Limits;

/// Settings shared by all nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long one command may take: waiting for a connection, writing it and reading the
    /// whole answer.
    pub op_timeout: Duration,
    /// At most this many connections to a node at once (busy and idle).
    pub max_connections: usize,
    /// At most this many idle connections are kept per node.
    pub max_idle: usize,
    /// A node whose operation failed (connect refused, timeout, protocol error) is skipped
    /// for this long.
    pub retry_delay: Duration,
    /// Bounds on what the decoder buffers.
    pub limits: Limits,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_secs(1),
            max_connections: 8,
            max_idle: 4,
            retry_delay: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }
}
