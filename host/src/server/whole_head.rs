//! A connection's next HTTP/1 request head, held by keel until it is whole, before hyper gets
//! the connection: its first head, and the next one after keel parked the connection (see
//! [`super::http1`]). hyper reserves an 8 KiB read buffer at its first read and grows it to
//! 16 KiB as soon as a head comes in two reads, and it sets up the rest of its connection state
//! (write buffer, dispatcher) at once: a client that opens a connection and sends part of a head
//! (or nothing), or that keeps an idle connection open, would hold all of that.
//! [`WholeHead::fill`] reads the head into a buffer of its own, just as large as the bytes that
//! came, and hyper then reads those bytes first ([`WholeHead`]'s `AsyncRead`). HTTP/2 (the
//! preface), an upgrade or anything the framing follower gives up on is handed over at once:
//! hyper stays the only parser.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use super::framing::Sniff;

/// The most bytes read per call while the head comes (on the stack of the call, not held).
const CHUNK: usize = 2048;

/// A client stream whose next request head may be held back from hyper until it is whole.
pub struct WholeHead<T> {
    inner: Sniff<T>,
    /// Bytes read by [`fill`](Self::fill) and not yet given to hyper.
    held: Vec<u8>,
    /// How many of `held` hyper has read.
    given: usize,
}

impl<T: AsyncRead + Unpin> WholeHead<T> {
    pub fn new(inner: Sniff<T>) -> Self {
        Self {
            inner,
            held: Vec::new(),
            given: 0,
        }
    }

    /// Reads until the next head is whole (or is no HTTP/1 head, or `limit` bytes came, or the
    /// client closed its side): what hyper then reads first. Bytes already held that complete a
    /// head (a parked connection's) need no read. An error is the socket's.
    pub async fn fill(&mut self, limit: usize) -> std::io::Result<()> {
        if self.given < self.held.len() && !self.inner.in_head() {
            return Ok(());
        }
        let heads = self.inner.heads();
        loop {
            let read = poll_fn(|cx| self.poll_hold(cx)).await?;
            if read == 0
                || self.inner.heads() > heads
                || !self.inner.following()
                || self.held.len() >= limit
            {
                return Ok(());
            }
        }
    }

    /// Takes the connection back from hyper with the bytes it had read and not used (the start
    /// of the next head, if any): they are read first again.
    pub fn resume(&mut self, unread: &[u8]) {
        let mut held = self.held.split_off(self.given.min(self.held.len()));
        held.splice(0..0, unread.iter().copied());
        self.held = held;
        self.given = 0;
    }

    /// Whether the bytes held so far are (the start of) HTTP/2's connection preface.
    pub fn is_h2_preface(&self) -> bool {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let held = self.held.get(self.given..).unwrap_or_default();
        !held.is_empty() && PREFACE.starts_with(&held[..held.len().min(PREFACE.len())])
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

impl<T: AsyncRead + Unpin> AsyncRead for WholeHead<T> {
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

write_through!(WholeHead);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Sniff, WholeHead};

    fn whole_head(io: tokio::io::DuplexStream) -> WholeHead<tokio::io::DuplexStream> {
        WholeHead::new(Sniff::new(io, Arc::new(AtomicBool::new(false))))
    }

    #[tokio::test]
    async fn a_head_in_pieces_is_held_until_whole_then_read_in_order() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = whole_head(server);
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
        let mut io = whole_head(server);
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
        let mut io = whole_head(server);
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
        let mut io = whole_head(server);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(3000));
        client
            .write_all(long.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        io.fill(1024).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(io.held.len() >= 1024 && io.held.len() < long.len());
    }

    /// A parked connection: hyper read the start of the next head (or all of it) before it let
    /// the connection go; those bytes come first again, and the head is waited for only if it
    /// is not whole yet.
    #[tokio::test]
    async fn a_parked_connection_waits_only_for_the_rest_of_its_next_head() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = whole_head(server);
        let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(first).await.unwrap();
        io.fill(65536).await.unwrap();
        let mut got = vec![0u8; first.len()];
        io.read_exact(&mut got).await.unwrap();
        // "hyper" reads the start of the next head, then is let go.
        client.write_all(b"GET /b HTTP/1.1\r\nHo").await.unwrap();
        let mut unread = vec![0u8; 19];
        io.read_exact(&mut unread).await.unwrap();
        io.resume(&unread);
        let wait = tokio::time::timeout(std::time::Duration::from_millis(100), io.fill(65536));
        assert!(wait.await.is_err(), "the head is not whole yet");
        client.write_all(b"st: x\r\n\r\n").await.unwrap();
        io.fill(65536).await.unwrap();
        let second = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut got = vec![0u8; second.len()];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..], &second[..]);

        // A whole head already read by "hyper": no wait at all.
        client.write_all(b"GET /c HTTP/1.1\r\n\r\n").await.unwrap();
        let mut unread = vec![0u8; 19];
        io.read_exact(&mut unread).await.unwrap();
        io.resume(&unread);
        let ready = tokio::time::timeout(std::time::Duration::from_secs(5), io.fill(65536));
        assert!(ready.await.is_ok(), "the whole head was held already");
        let mut got = vec![0u8; 19];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..], b"GET /c HTTP/1.1\r\n\r\n");
    }
}
