//! Why a command to a node failed, and whether that counts against the node.

use std::time::Duration;

use crate::meta::{DecodeError, ErrorReply};

/// A failed command. The connection it used was closed (never returned to the pool).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node is marked down (a recent failure); nothing was sent.
    #[error("memcached node {0} is marked down")]
    Down(String),
    /// TCP connect failed (refused, unreachable). Nothing sent.
    #[error("connect to memcached node {node} failed: {source}")]
    Connect {
        /// The node id.
        node: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TCP connect took longer than the connect timeout. Nothing sent.
    #[error("connect to memcached node {node} timed out after {after:?}")]
    ConnectTimeout {
        /// The node id.
        node: String,
        /// The timeout.
        after: Duration,
    },
    /// The command did not complete within the operation timeout (possibly applied).
    #[error("memcached node {node} did not answer within {after:?}")]
    Timeout {
        /// The node id.
        node: String,
        /// The timeout.
        after: Duration,
    },
    /// Reading or writing failed (reset, broken pipe).
    #[error("I/O with memcached node {node} failed: {source}")]
    Io {
        /// The node id.
        node: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The node closed the connection before a whole answer.
    #[error("memcached node {0} closed the connection before answering")]
    Closed(String),
    /// The node sent bytes that are not the meta protocol.
    #[error("memcached node {node} broke the protocol: {source}")]
    Protocol {
        /// The node id.
        node: String,
        /// What was wrong.
        source: DecodeError,
    },
    /// The node answered with an error line.
    #[error("memcached node {node}: {source}")]
    Reply {
        /// The node id.
        node: String,
        /// The error line.
        source: ErrorReply,
    },
}

impl NodeError {
    /// Whether the node should be marked down for it. `ERROR` and `CLIENT_ERROR` answer a
    /// command the store got wrong (every node would), and `SERVER_ERROR` one the node could
    /// not carry out (out of memory, too large): the node itself is alive.
    pub fn counts_against_node(&self) -> bool {
        !matches!(self, NodeError::Down(_) | NodeError::Reply { .. })
    }
}
