//! The response body: chunks as the member sends them, through a small channel from the
//! exchange task (so a slow client slows the member down instead of filling memory); and the
//! [`Connected`]: the connection's local end and how long the request waited for it, which
//! the body carries (the response's extensions would cost three allocations per response).

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::client::error::ClientError;

/// The connection that carried the response ([`ResponseBody::connected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// Its local end, if the socket told it.
    pub local: Option<SocketAddr>,
    /// How long the request waited for it: the pool's checkout, with a CPING or a connect.
    pub pool_wait: std::time::Duration,
}

/// A streaming response body. It ends after END_RESPONSE; an error means the member broke
/// off (the connection was closed). Dropping it early closes the backend connection.
#[derive(Debug)]
pub struct ResponseBody {
    rx: mpsc::Receiver<Result<Bytes, ClientError>>,
    done: bool,
    connected: Connected,
}

impl ResponseBody {
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<Bytes, ClientError>>,
        connected: Connected,
    ) -> Self {
        ResponseBody {
            rx,
            done: false,
            connected,
        }
    }

    /// The connection that carried the response.
    pub fn connected(&self) -> Connected {
        self.connected
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
