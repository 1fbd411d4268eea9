//! One connection to a node: write a command, read until one whole response is decoded.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::meta::{self, Limits, Response};
use crate::node::error::NodeError;

/// A connection, with its read buffer and its place in the node's connection limit.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            _permit: permit,
        }
    }

    /// Sends `command` (one encoded command) and reads its one response. The caller bounds
    /// the time. Any error leaves the connection unusable.
    pub(crate) async fn exchange(
        &mut self,
        node: &str,
        command: &[u8],
        limits: Limits,
    ) -> Result<Response, NodeError> {
        let io = |source| NodeError::Io {
            node: node.to_owned(),
            source,
        };
        self.stream.write_all(command).await.map_err(io)?;
        loop {
            match meta::decode(&mut self.rbuf, limits) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(source) => {
                    return Err(NodeError::Protocol {
                        node: node.to_owned(),
                        source,
                    });
                }
            }
            self.rbuf.reserve(4096);
            let n = self.stream.read_buf(&mut self.rbuf).await.map_err(io)?;
            if n == 0 {
                return Err(NodeError::Closed(node.to_owned()));
            }
        }
    }

    /// Whether the connection may go back to the pool: nothing left unread.
    pub(crate) fn is_clean(&self) -> bool {
        self.rbuf.is_empty()
    }

    /// Whether no byte of an answer has been read (the node cannot have answered).
    pub(crate) fn nothing_read(&self) -> bool {
        self.rbuf.is_empty()
    }

    /// Whether an idle connection still looks open: not closed by the node, and no bytes
    /// nobody asked for.
    pub(crate) fn looks_alive(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
