//! A transport whose write results pass through a [`WriteHook`] on their way to the caller
//! (reads, `is_write_vectored` and shutdown go straight through): the client side watches its
//! writes for a client that takes nothing ([`crate::server::idle`]), the member side bounds how
//! long a write may wait for the member ([`crate::upstream::write_deadline`]).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What happens to each write, vectored write and flush result.
pub trait WriteHook {
    /// `r` as the caller sees it (`Pending`: the write waits for the peer).
    fn after<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>>;
}

/// `io`, its writes through `hook`.
pub struct Hooked<T, H> {
    io: T,
    hook: H,
}

impl<T, H> Hooked<T, H> {
    /// Wraps `io`.
    pub fn new(io: T, hook: H) -> Self {
        Self { io, hook }
    }

    /// The transport.
    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: AsyncRead + Unpin, H: Unpin> AsyncRead for Hooked<T, H> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, H: WriteHook + Unpin> AsyncWrite for Hooked<T, H> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.hook.after(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.hook.after(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.hook.after(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
