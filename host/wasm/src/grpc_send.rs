//! The sending side of a gRPC stream (`proxy_grpc_send`, `proxy_grpc_close`): the host's record
//! of an open stream ([`OpenStream`]), the request body the filter's messages feed
//! ([`GrpcOutgoing`]), and the bound on what they may queue ([`SendBudget`]).
//!
//! Envoy buffers what a filter sends without a bound: `grpcSend` always answers `Ok`
//! (`source/extensions/common/wasm/context.cc`), the async stream's watermark callbacks only
//! count (`source/common/http/async_client_impl.h` `onDecoderFilterAboveWriteBufferHighWatermark`:
//! the Wasm context registers none), and the HTTP/2 codec does nothing when a stream's send
//! buffer overflows (`source/common/http/http2/codec_impl.cc` `pending_send_data_`: "TODO
//! Handle overflow watermark"). keel keeps `Ok` and the buffering, but bounds it: the messages
//! an instance's streams have queued and the upstream not yet taken may not exceed the
//! filter's memory limit (`limits.memory_bytes`), as the filter's own memory may not; a send
//! past it resets that stream, which then closes with INTERNAL and the cause (Envoy's
//! `onReset` close, `source/common/grpc/async_client_impl.cc`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::{mpsc, oneshot};

use crate::error::CalloutError;

/// What `proxy_grpc_send` and `proxy_grpc_close` put on a stream.
#[derive(Debug)]
enum Outgoing {
    /// A framed message.
    Message(Bytes),
    /// The end of the request (HTTP/2 END_STREAM): Envoy's `closeStream` or `end_stream`.
    End,
}

/// The bytes an instance's streams have queued (sent by the filter, not yet taken by the
/// HTTP/2 client), and how many they may.
#[derive(Debug, Clone)]
pub(crate) struct SendBudget {
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl SendBudget {
    pub fn new(limit: usize) -> Self {
        SendBudget {
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Counts `bytes` more, if they fit.
    fn reserve(&self, bytes: usize) -> Result<(), QueueFull> {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued
                    .checked_add(bytes)
                    .filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| QueueFull { limit: self.limit })
    }

    /// Counts `bytes` less (taken by the client, or dropped with the stream).
    fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A send that did not fit in the [`SendBudget`]: the stream is reset.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "keel reset the gRPC stream: the messages the filter's streams had queued for upstreams \
     that did not take them went over its memory limit ({limit} bytes)"
)]
pub(crate) struct QueueFull {
    limit: usize,
}

/// The request body of a gRPC stream: the messages the filter sends, ended by
/// `proxy_grpc_close` or a send with `end_stream`. When the host lets the stream go without
/// ending it (`proxy_grpc_cancel`, the send queue overflowed, or the instance is gone) the body
/// fails, and the HTTP/2 stream is reset, as Envoy's `resetStream` does.
#[derive(Debug)]
pub struct GrpcOutgoing {
    messages: mpsc::UnboundedReceiver<Outgoing>,
    ended: bool,
    budget: SendBudget,
}

impl Body for GrpcOutgoing {
    type Data = Bytes;
    type Error = CalloutError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CalloutError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.messages.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Outgoing::Message(message))) => {
                self.budget.release(message.len());
                Poll::Ready(Some(Ok(Frame::data(message))))
            }
            Poll::Ready(Some(Outgoing::End)) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(Some(Err(CalloutError::Failed(
                "the gRPC stream was reset by keel or the filter".into(),
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

impl Drop for GrpcOutgoing {
    /// What was never taken no longer counts.
    fn drop(&mut self) {
        self.messages.close();
        while let Ok(item) = self.messages.try_recv() {
            if let Outgoing::Message(message) = item {
                self.budget.release(message.len());
            }
        }
    }
}

/// An open stream, as the instance keeps it by token (Envoy's `GrpcStreamClientHandler`,
/// `context.h`): where its messages go, and whether each side has closed. Envoy forgets a
/// stream once both have (`onGrpcCloseWrapper`, `grpcClose`), or when it is cancelled.
#[derive(Debug)]
pub(crate) struct OpenStream {
    /// `None` once the send queue overflowed (the body fails: a reset).
    sender: Option<mpsc::UnboundedSender<Outgoing>>,
    budget: SendBudget,
    /// Tells the stream's [`crate::grpc_stream::Reader`] why keel reset it.
    overflow: Option<oneshot::Sender<QueueFull>>,
    pub local_closed: bool,
    pub remote_closed: bool,
}

/// What the [`crate::grpc_stream::Reader`] of a stream learns when keel resets it.
pub(crate) type Overflow = oneshot::Receiver<QueueFull>;

impl OpenStream {
    /// A stream whose sends count against `budget`, the body its request carries, and what
    /// its reader learns if they overflow.
    pub fn new(budget: SendBudget) -> (OpenStream, GrpcOutgoing, Overflow) {
        let (sender, messages) = mpsc::unbounded_channel();
        let (overflow, overflowed) = oneshot::channel();
        let stream = OpenStream {
            sender: Some(sender),
            budget: budget.clone(),
            overflow: Some(overflow),
            local_closed: false,
            remote_closed: false,
        };
        let body = GrpcOutgoing {
            messages,
            ended: false,
            budget,
        };
        (stream, body, overflowed)
    }

    /// Sends `framed`, then ends the request if `end_stream` (Envoy `sendMessageRaw`). Once the
    /// request has ended nothing more goes out, as Envoy's ended stream takes no more data. A
    /// message that does not fit in the budget resets the stream (see the module docs); the
    /// error says so, once.
    pub fn send(&mut self, framed: Bytes, end_stream: bool) -> Result<(), QueueFull> {
        let Some(sender) = self.sender.as_ref() else {
            return Ok(());
        };
        let length = framed.len();
        if let Err(full) = self.budget.reserve(length) {
            self.sender = None;
            if let Some(overflow) = self.overflow.take() {
                let _ = overflow.send(full.clone());
            }
            return Err(full);
        }
        if sender.send(Outgoing::Message(framed)).is_err() {
            self.budget.release(length);
        }
        if end_stream {
            let _ = sender.send(Outgoing::End);
        }
        Ok(())
    }

    /// Ends the request: Envoy's `closeStream` (an empty DATA frame with END_STREAM).
    pub fn close(&self) {
        if let Some(sender) = self.sender.as_ref() {
            let _ = sender.send(Outgoing::End);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    async fn next(body: &mut GrpcOutgoing) -> Option<Result<Frame<Bytes>, CalloutError>> {
        poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    #[tokio::test]
    async fn the_request_body_ends_on_close_and_fails_when_dropped() {
        let (mut open, mut body, _) = OpenStream::new(SendBudget::new(100));
        open.send(Bytes::from_static(b"m"), false).unwrap();
        open.close();
        assert!(matches!(next(&mut body).await, Some(Ok(frame)) if frame.data_ref().is_some()));
        assert!(next(&mut body).await.is_none());
        assert!(body.is_end_stream());
        let (open, mut body, _) = OpenStream::new(SendBudget::new(100));
        drop(open);
        assert!(matches!(next(&mut body).await, Some(Err(_))));
    }

    /// Two streams of one instance share its budget (10 bytes here); what the client took, or
    /// what went with a dropped body, no longer counts; a send that does not fit resets its
    /// stream (its body fails) and tells its reader why, once.
    #[tokio::test]
    async fn sends_are_bounded_per_instance_and_a_stream_over_the_bound_is_reset() {
        let budget = SendBudget::new(10);
        let (mut a, mut a_body, _) = OpenStream::new(budget.clone());
        let (mut b, mut b_body, b_overflow) = OpenStream::new(budget.clone());
        let six = Bytes::from_static(b"123456");
        a.send(six.clone(), false).unwrap();
        let full = b.send(six.clone(), false).unwrap_err();
        assert!(
            full.to_string().contains("memory limit (10 bytes)"),
            "{full}"
        );
        assert!(matches!(next(&mut b_body).await, Some(Err(_))));
        assert_eq!(b_overflow.await.unwrap().to_string(), full.to_string());
        // The reset stream takes no more (and says nothing more).
        assert!(b.send(six.clone(), true).is_ok());
        // `a`'s message taken by the client: the budget has room again.
        assert!(matches!(next(&mut a_body).await, Some(Ok(_))));
        a.send(six.clone(), false).unwrap();
        // Dropped before it was taken: released with the body.
        drop(a_body);
        let (mut c, _c_body, _) = OpenStream::new(budget.clone());
        c.send(Bytes::from_static(b"1234567890"), false).unwrap();
        assert!(c.send(Bytes::from_static(b"1"), false).is_err());
    }
}
