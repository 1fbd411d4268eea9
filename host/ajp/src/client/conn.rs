//! One TCP connection to a member, with its read buffer, and reading whole frames from it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::CPING_PACKET;
use crate::client::error::ClientError;
use crate::decode::{Frame, decode};
use crate::wire::PacketSize;

/// A connection to a member.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// The local end of the connection, read once when it is made.
    pub(crate) local: Option<SocketAddr>,
    pub(crate) buf: BytesMut,
    /// Whether it served a request before (errors before any answer are then "stale").
    pub(crate) reused: bool,
    /// When it went idle last.
    pub(crate) idle_since: Instant,
    /// How long the request it serves waited for it (checkout, CPING and connect included).
    pub(crate) pool_wait: Duration,
    /// Its place under `max_connections`, if limited.
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

/// What ended a read.
pub(crate) enum ReadError {
    /// The member closed the connection.
    Eof,
    /// I/O error.
    Io(std::io::Error),
    /// Undecodable bytes.
    Decode(crate::error::DecodeError),
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, permit: Option<OwnedSemaphorePermit>) -> Self {
        Conn {
            local: stream.local_addr().ok(),
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            reused: false,
            idle_since: Instant::now(),
            pool_wait: Duration::ZERO,
            _permit: permit,
        }
    }

    /// Reads until one whole frame is decoded. Cancel-safe: bytes read stay in `buf`.
    pub(crate) async fn read_frame(&mut self, size: PacketSize) -> Result<Frame, ReadError> {
        loop {
            if let Some(f) = decode(&mut self.buf, size).map_err(ReadError::Decode)? {
                return Ok(f);
            }
            self.buf.reserve(size.get());
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(ReadError::Eof),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// CPING/CPONG with a deadline.
    pub(crate) async fn cping(
        &mut self,
        size: PacketSize,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let exchange = async {
            self.stream
                .write_all(&CPING_PACKET)
                .await
                .map_err(|e| format!("write: {e}"))?;
            match self.read_frame(size).await {
                // Anything after the CPONG would be read as the next request's answer.
                Ok(Frame::Cpong) if self.buf.is_empty() => Ok(()),
                Ok(Frame::Cpong) => Err("bytes after the CPONG".to_owned()),
                Ok(other) => Err(format!("answered {} instead of CPONG", frame_name(&other))),
                Err(ReadError::Eof) => Err("connection closed".to_owned()),
                Err(ReadError::Io(e)) => Err(format!("read: {e}")),
                Err(ReadError::Decode(e)) => Err(format!("bad answer: {e}")),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(m)) => Err(ClientError::Cping(m)),
            Err(_) => Err(ClientError::CpingTimeout(timeout)),
        }
    }

    /// Whether an idle connection still looks usable: not closed by the member and no
    /// unexpected bytes waiting (a non-blocking peek).
    pub(crate) fn looks_alive(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// A frame's name for messages.
pub(crate) fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::SendHeaders(_) => "SEND_HEADERS",
        Frame::SendBodyChunk(_) => "SEND_BODY_CHUNK",
        Frame::GetBodyChunk(_) => "GET_BODY_CHUNK",
        Frame::EndResponse { .. } => "END_RESPONSE",
        Frame::Cpong => "CPONG",
    }
}
