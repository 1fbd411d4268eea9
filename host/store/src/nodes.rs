//! The memcached node list, as memcached-session-manager writes it: `n1:127.0.0.1:11211,
//! n2:127.0.0.1:11212` (entries separated by commas or spaces, each `<id>:<ip>:<port>`, IPv6
//! as `n3:[::1]:11211`), and `failover_nodes` (ids that take new sessions only when no
//! primary can). The order matters: the backup copy goes to the next node in this order, so
//! every keel instance and bridge must be given the same list.

use std::net::SocketAddr;

use crate::session_key::is_node_id;

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The id written into session keys (`[A-Za-z0-9_]{1,32}`).
    pub id: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it is a failover node.
    pub failover: bool,
}

/// The ordered node list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    list: Vec<NodeSpec>,
}

/// A node list refused; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesError {
    /// No entry at all.
    #[error("no memcached nodes given (expected e.g. n1:127.0.0.1:11211,n2:127.0.0.1:11212)")]
    Empty,
    /// An entry that is not `<id>:<ip>:<port>`.
    #[error("memcached node entry {entry:?}: {reason}")]
    BadEntry {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries with one id.
    #[error("memcached node id {0:?} is given twice")]
    DuplicateId(String),
    /// Two entries with one address.
    #[error("memcached node address {0} is given twice")]
    DuplicateAddr(SocketAddr),
    /// A failover id that is not in the list.
    #[error("failover node {0:?} is not one of the memcached nodes")]
    UnknownFailover(String),
    /// Every node is a failover node.
    #[error("every memcached node is a failover node: at least one must be a primary")]
    NoPrimary,
}

impl Nodes {
    /// Parses `nodes` and `failover_nodes` (ids separated by commas or spaces; may be empty).
    pub fn parse(nodes: &str, failover_nodes: &str) -> Result<Self, NodesError> {
        let mut list: Vec<NodeSpec> = Vec::new();
        for entry in split(nodes) {
            let bad = |reason| NodesError::BadEntry {
                entry: entry.to_owned(),
                reason,
            };
            let (id, addr) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected <id>:<ip>:<port>"))?;
            if !is_node_id(id) {
                return Err(bad("the node id must be 1 to 32 of A-Z a-z 0-9 _"));
            }
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| bad("expected an IP address and a port after the id"))?;
            if list.iter().any(|n| n.id == id) {
                return Err(NodesError::DuplicateId(id.to_owned()));
            }
            if list.iter().any(|n| n.addr == addr) {
                return Err(NodesError::DuplicateAddr(addr));
            }
            list.push(NodeSpec {
                id: id.to_owned(),
                addr,
                failover: false,
            });
        }
        if list.is_empty() {
            return Err(NodesError::Empty);
        }
        for id in split(failover_nodes) {
            let node = list
                .iter_mut()
                .find(|n| n.id == id)
                .ok_or_else(|| NodesError::UnknownFailover(id.to_owned()))?;
            node.failover = true;
        }
        if list.iter().all(|n| n.failover) {
            return Err(NodesError::NoPrimary);
        }
        Ok(Nodes { list })
    }

    /// The nodes in order.
    pub fn list(&self) -> &[NodeSpec] {
        &self.list
    }
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_msm_syntax() {
        let n = Nodes::parse("n1:127.0.0.1:11211, n2:127.0.0.2:11212 n_3:[::1]:1", "n2")
            .expect("valid");
        let ids: Vec<_> = n
            .list()
            .iter()
            .map(|n| (n.id.as_str(), n.failover))
            .collect();
        assert_eq!(ids, [("n1", false), ("n2", true), ("n_3", false)]);
        assert_eq!(n.list()[2].addr, "[::1]:1".parse().expect("addr"));
    }

    #[test]
    fn errors_name_the_entry() {
        let e = Nodes::parse("n1:127.0.0.1:11211,n2:localhost:11211", "").expect_err("bad");
        assert!(e.to_string().contains("\"n2:localhost:11211\""), "{e}");
        let e = Nodes::parse("n1:127.0.0.1", "").expect_err("bad");
        assert!(e.to_string().contains("\"n1:127.0.0.1\""), "{e}");
        let e = Nodes::parse("127.0.0.1:11211", "").expect_err("bad");
        assert!(e.to_string().contains("\"127.0.0.1:11211\""), "{e}");
        let e = Nodes::parse("n-1:127.0.0.1:1", "").expect_err("bad");
        assert!(e.to_string().contains("\"n-1:127.0.0.1:1\""), "{e}");
        assert_eq!(Nodes::parse(" , ", ""), Err(NodesError::Empty));
        assert_eq!(
            Nodes::parse("n1:127.0.0.1:1,n1:127.0.0.1:2", ""),
            Err(NodesError::DuplicateId("n1".into()))
        );
        assert!(matches!(
            Nodes::parse("n1:127.0.0.1:1,n2:127.0.0.1:1", ""),
            Err(NodesError::DuplicateAddr(_))
        ));
        assert_eq!(
            Nodes::parse("n1:127.0.0.1:1", "n9"),
            Err(NodesError::UnknownFailover("n9".into()))
        );
        assert_eq!(
            Nodes::parse("n1:127.0.0.1:1", "n1"),
            Err(NodesError::NoPrimary)
        );
    }
}
