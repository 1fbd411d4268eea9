//! A scripted gRPC stream for [`crate::ScriptedCallouts`], over no wire: `probe.Echo/Chat`
//! answering by the `x-id` metadata of its request, as an HTTP/2 gRPC server would send it.
//! * `echo`: initial metadata `x-initial: 1`; each request message back as `echo:<message>`,
//!   its prefix and its bytes in two DATA frames; when the request ends, trailers
//!   `grpc-status: 0`, `x-trailer: done`;
//! * `deny`: a trailers-only answer, PERMISSION_DENIED "denied";
//! * `huge`: a message announced at 5 MiB (over keel's limit), never sent;
//! * `stall`: initial metadata `x-initial: 1`, then nothing: the request is never read (an
//!   upstream that takes no more), until the response is dropped;
//! * anything else: as `echo`.
//!
//! The request's end is noted in `completed` as `Chat:end` (the filter closed its side) or
//! `Chat:reset` (the request body failed: the stream was cancelled).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use keel_wasm::{CalloutError, GrpcOutgoing, GrpcStreamBody, GrpcStreamFuture};
use tokio::sync::mpsc;

type Sent = Result<Frame<Bytes>, CalloutError>;

/// A response body fed from a channel.
struct Channel(mpsc::UnboundedReceiver<Sent>);

impl Body for Channel {
    type Data = Bytes;
    type Error = CalloutError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Sent>> {
        self.0.poll_recv(cx)
    }
}

/// The answer of the scripted stream for `id` (see the module docs).
pub(crate) fn answer(
    id: &str,
    request: http::Request<GrpcOutgoing>,
    completed: Arc<Mutex<Vec<String>>>,
) -> GrpcStreamFuture {
    let id = id.to_owned();
    Box::pin(async move {
        let head = http::Response::builder().header("content-type", "application/grpc");
        let (head, body): (_, GrpcStreamBody) = if id == "deny" {
            let head = head
                .header("grpc-status", "7")
                .header("grpc-message", "denied");
            (head, Box::pin(Ended))
        } else {
            let (sender, receiver) = mpsc::unbounded_channel();
            if id == "stall" {
                tokio::spawn(async move {
                    let _unread = request;
                    sender.closed().await;
                });
            } else if id == "huge" {
                let _ = sender.send(Ok(Frame::data(Bytes::from_static(&[0, 0, 0x50, 0, 0]))));
            } else {
                tokio::spawn(echo(request.into_body(), sender, completed));
            }
            (head.header("x-initial", "1"), Box::pin(Channel(receiver)))
        };
        head.body(body)
            .map_err(|e| CalloutError::Failed(e.to_string()))
    })
}

/// Echoes each message of `request`, then ends with status OK.
async fn echo(
    mut request: GrpcOutgoing,
    sender: mpsc::UnboundedSender<Sent>,
    completed: Arc<Mutex<Vec<String>>>,
) {
    let mut pending = BytesMut::new();
    let end = loop {
        match std::future::poll_fn(|cx| Pin::new(&mut request).poll_frame(cx)).await {
            None => break "Chat:end",
            Some(Err(_)) => break "Chat:reset",
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    pending.extend_from_slice(&data);
                }
            }
        }
        while pending.len() >= 5 {
            let length = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]);
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if pending.len() - 5 < length {
                break;
            }
            pending.advance(5);
            let message = pending.split_to(length);
            let reply = [b"echo:".as_slice(), &message].concat();
            let length = u32::try_from(reply.len()).unwrap_or(0).to_be_bytes();
            let prefix = [&[0u8][..], &length[..]].concat();
            let _ = sender.send(Ok(Frame::data(Bytes::from(prefix))));
            let _ = sender.send(Ok(Frame::data(Bytes::from(reply))));
        }
    };
    completed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(end.to_owned());
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("x-trailer", http::HeaderValue::from_static("done"));
    let _ = sender.send(Ok(Frame::trailers(trailers)));
}

/// An empty body that says it has ended (a trailers-only response).
struct Ended;

impl Body for Ended {
    type Data = Bytes;
    type Error = CalloutError;
    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Sent>> {
        Poll::Ready(None)
    }
    fn is_end_stream(&self) -> bool {
        true
    }
}
