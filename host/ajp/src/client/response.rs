//! The response body: chunks as the member sends them, through a small channel from the
//! exchange task (so a slow client slows the member down instead of filling memory); and the
//! [`LocalAddress`] of the connection, in the response's extensions.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::client::error::ClientError;

/// The local end of the connection that carried the response (in the response's extensions;
/// hyper-util's `HttpInfo` says the same for HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddress(pub SocketAddr);

/// A streaming response body. It ends after END_RESPONSE; an error means the member broke
/// off (the connection was closed). Dropping it early closes the backend connection.
#[derive(Debug)]
pub struct ResponseBody {
    rx: mpsc::Receiver<Result<Bytes, ClientError>>,
    done: bool,
}

impl ResponseBody {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Bytes, ClientError>>) -> Self {
        ResponseBody { rx, done: false }
    }

    /// The next chunk; `None` at the end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, ClientError>> {
        if self.done {
            return None;
        }
        let next = self.rx.recv().await;
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
