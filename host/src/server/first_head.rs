//! A new HTTP/1 connection's first request head, held by keel until it is whole, before hyper
//! gets the connection. hyper reserves an 8 KiB read buffer at its first read and grows it to
//! 16 KiB as soon as a head comes in two reads, and it sets up the rest of its connection state
//! (write buffer, dispatcher) at once: a client that opens a connection and sends part of a head
//! (or nothing) would hold all of that. [`FirstHead::fill`] reads the head into a buffer of its
//! own, just as large as the bytes that came, and hyper then reads those bytes first
//! ([`FirstHead`]'s `AsyncRead`). HTTP/2 (the preface), an upgrade or anything the framing
//! follower gives up on is handed over at once: hyper stays the only parser.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use super::framing::Sniff;

/// The most bytes read per call while the head comes (on the stack of the call, not held).
const CHUNK: usize = 2048;

/// A client stream whose first request head may be held back from hyper until it is whole.
pub struct FirstHead<T> {
    inner: Sniff<T>,
    /// Bytes read by [`fill`](Self::fill) and not yet given to hyper.
    held: Vec<u8>,
    /// How many of `held` hyper has read.
    given: usize,
}

impl<T: AsyncRead + Unpin> FirstHead<T> {
    pub fn new(inner: Sniff<T>) -> Self {
        Self {
            inner,
            held: Vec::new(),
            given: 0,
        }
    }

    /// Reads until the first head is whole (or is no HTTP/1 head, or `limit` bytes came, or the
    /// client closed its side): what hyper then reads first. An error is the socket's.
    pub async fn fill(&mut self, limit: usize) -> std::io::Result<()> {
        loop {
            let read = poll_fn(|cx| self.poll_hold(cx)).await?;
            if read == 0 || !self.inner.in_first_head() || self.held.len() >= limit {
                return Ok(());
            }
        }
    }

    /// One read into `held`: the number of bytes (0 at the end of the stream).
    fn poll_hold(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut chunk = [0u8; CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        self.held.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstHead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let rest = this.held.get(this.given..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        this.given += n;
        if this.given >= this.held.len() {
            // All given: the buffer goes, and reads go straight to the socket again.
            this.held = Vec::new();
            this.given = 0;
        }
        Poll::Ready(Ok(()))
    }
}

write_through!(FirstHead);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{FirstHead, Sniff};

    fn first_head(io: tokio::io::DuplexStream) -> FirstHead<tokio::io::DuplexStream> {
        FirstHead::new(Sniff::new(io, Arc::new(AtomicBool::new(false))))
    }

    #[tokio::test]
    async fn a_head_in_pieces_is_held_until_whole_then_read_in_order() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = first_head(server);
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\nbody";
        let writer = tokio::spawn(async move {
            for piece in head.chunks(7) {
                client.write_all(piece).await?;
                tokio::task::yield_now().await;
            }
            Ok::<_, std::io::Error>(client)
        });
        io.fill(65536).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            io.held.len() >= head.len() - 4,
            "fill returned before the head was whole: {} bytes",
            io.held.len()
        );
        let _client = writer.await.unwrap_or_else(|e| panic!("{e}"));
        let mut got = vec![0u8; head.len()];
        io.read_exact(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got[..], &head[..]);
        assert!(
            io.held.is_empty() && io.held.capacity() == 0,
            "buffer freed"
        );
    }

    #[tokio::test]
    async fn the_http2_preface_and_the_end_of_the_stream_are_handed_over_at_once() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = first_head(server);
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        io.fill(65536).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            io.held.len(),
            24,
            "the preface, and fill did not wait for more"
        );

        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = first_head(server);
        client
            .write_all(b"GET / HT")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(client);
        io.fill(65536).await.unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        io.read_to_end(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got, b"GET / HT",
            "a cut head still reaches hyper, then the end"
        );
    }

    #[tokio::test]
    async fn fill_stops_at_the_limit() {
        let (mut client, server) = tokio::io::duplex(8192);
        let mut io = first_head(server);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(3000));
        client
            .write_all(long.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        io.fill(1024).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(io.held.len() >= 1024 && io.held.len() < long.len());
    }
}
