//! gRPC streams (`proxy_grpc_stream`), as Envoy's raw async gRPC stream carries them for a
//! filter (`source/extensions/common/wasm/context.cc` `grpcStream`, `grpcSend`, `grpcClose`,
//! `grpcCancel`; `source/common/grpc/async_client_impl.cc` `AsyncStreamImpl`): the [`Reader`]
//! that turns the HTTP/2 response into what the filter gets, in Envoy's order: initial
//! metadata, each message, trailing metadata, then the close with its status. What the filter
//! sends goes through `crate::grpc_send`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use crate::error::CalloutError;
use crate::grpc::code;
use crate::grpc_frames::{DecodeError, Decoder, MAX_MESSAGE};
use crate::grpc_send::{Overflow, QueueFull};
use crate::types::{GrpcStreamBody, GrpcStreamFuture};

/// A metadata map as the filter reads it: (name, value) pairs.
pub(crate) type Metadata = Vec<(Vec<u8>, Vec<u8>)>;

/// What the filter gets from a stream, one callback each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    /// `proxy_on_grpc_receive_initial_metadata`, with the map it reads.
    InitialMetadata(Metadata),
    /// `proxy_on_grpc_receive`, with the message (buffer `GrpcReceiveBuffer`).
    Message(Bytes),
    /// `proxy_on_grpc_receive_trailing_metadata`, with the map it reads.
    TrailingMetadata(Metadata),
    /// `proxy_on_grpc_close`: the status (`-1` for one that is not a gRPC code, Envoy's
    /// `InvalidCode`) and its message, for `proxy_get_status`.
    Close(i32, String),
}

/// Reads a stream's response into [`StreamEvent`]s, after Envoy's `AsyncStreamImpl`
/// (`onHeaders`, `onData`, `onTrailers`, `streamError`, `onReset`).
pub(crate) struct Reader {
    opening: Option<GrpcStreamFuture>,
    body: Option<GrpcStreamBody>,
    /// Why keel reset the stream, should its send queue overflow (`crate::grpc_send`).
    overflow: Option<Overflow>,
    decoder: Decoder,
    queue: VecDeque<StreamEvent>,
}

/// What the response (or keel) did next.
enum Step {
    Head(Result<http::Response<GrpcStreamBody>, CalloutError>),
    Frame(Option<Result<Frame<Bytes>, CalloutError>>),
    Reset(QueueFull),
}

impl Reader {
    pub fn new(opening: GrpcStreamFuture, overflow: Option<Overflow>) -> Self {
        Reader {
            opening: Some(opening),
            body: None,
            overflow,
            decoder: Decoder::new(MAX_MESSAGE),
            queue: VecDeque::new(),
        }
    }

    /// The next event; `None` after the close.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.opening.is_none() && self.body.is_none() {
                return None;
            }
            match std::future::poll_fn(|cx| self.poll_step(cx)).await {
                Step::Head(Ok(response)) => self.head(response),
                Step::Head(Err(error)) => self.failed(error),
                // `onData` with `end_stream`: the response ended without trailers.
                Step::Frame(None) => self.stream_error(code::UNKNOWN, String::new()),
                // `onReset`.
                Step::Frame(Some(Err(_))) => self.stream_error(code::INTERNAL, String::new()),
                Step::Frame(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.data(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers(pairs(None, &trailers), &trailers);
                        }
                    }
                },
                // keel's reset: `onReset`, with the cause.
                Step::Reset(full) => {
                    self.opening = None;
                    self.stream_error(code::INTERNAL, full.to_string());
                }
            }
        }
    }

    /// Polls keel's reset first, then the response head, then its body.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        if let Some(overflow) = self.overflow.as_mut() {
            match Pin::new(overflow).poll(cx) {
                Poll::Ready(Ok(full)) => {
                    self.overflow = None;
                    return Poll::Ready(Step::Reset(full));
                }
                // The stream was let go otherwise (cancelled, or closed on both sides).
                Poll::Ready(Err(_)) => self.overflow = None,
                Poll::Pending => {}
            }
        }
        if let Some(opening) = self.opening.as_mut() {
            let head = std::task::ready!(opening.as_mut().poll(cx));
            self.opening = None;
            return Poll::Ready(Step::Head(head));
        }
        match self.body.as_mut() {
            Some(body) => body.as_mut().poll_frame(cx).map(Step::Frame),
            None => Poll::Pending,
        }
    }

    /// `onHeaders`: a trailers-only response (or a non-200 one) gets empty initial metadata
    /// and closes at once; otherwise the headers are the initial metadata.
    fn head(&mut self, response: http::Response<GrpcStreamBody>) {
        let (parts, body) = response.into_parts();
        let with_status = parts.headers.contains_key("grpc-status");
        if parts.status != http::StatusCode::OK {
            self.queue
                .push_back(StreamEvent::InitialMetadata(Vec::new()));
            if with_status {
                self.trailers(pairs(Some(parts.status), &parts.headers), &parts.headers);
            } else {
                let status = crate::grpc::response_status(None, None, Some(parts.status));
                let code = status.and_then(|c| u32::try_from(c).ok());
                self.stream_error(code.unwrap_or(code::UNKNOWN), String::new());
            }
            return;
        }
        if with_status || body.is_end_stream() {
            self.queue
                .push_back(StreamEvent::InitialMetadata(Vec::new()));
            self.trailers(pairs(Some(parts.status), &parts.headers), &parts.headers);
            return;
        }
        self.queue.push_back(StreamEvent::InitialMetadata(pairs(
            Some(parts.status),
            &parts.headers,
        )));
        self.body = Some(body);
    }

    /// The stream could not be opened. An upstream that cannot be reached (or a timeout) comes
    /// back from Envoy's router as a trailers-only local reply with UNAVAILABLE and the
    /// router's text; a reset is `onReset`, INTERNAL.
    fn failed(&mut self, error: CalloutError) {
        match crate::grpc::outcome(Err(error)) {
            crate::grpc::GrpcOutcome::Closed(code, message)
                if code == code::UNAVAILABLE && !message.is_empty() =>
            {
                self.queue
                    .push_back(StreamEvent::InitialMetadata(Vec::new()));
                let metadata = vec![
                    (b"grpc-status".to_vec(), code.to_string().into_bytes()),
                    (b"grpc-message".to_vec(), message.clone().into_bytes()),
                ];
                self.queue
                    .push_back(StreamEvent::TrailingMetadata(metadata));
                self.close(code, message);
            }
            _ => self.stream_error(code::INTERNAL, String::new()),
        }
    }

    /// `onData`: every whole message, in order; a compressed one is INTERNAL, one over the
    /// limit RESOURCE_EXHAUSTED (Envoy's decoder errors, `onData`).
    fn data(&mut self, data: &[u8]) {
        self.decoder.push(data);
        loop {
            match self.decoder.next_message() {
                Ok(Some(message)) => self.queue.push_back(StreamEvent::Message(message)),
                Ok(None) => return,
                Err(DecodeError::Compressed) => {
                    return self.stream_error(
                        code::INTERNAL,
                        "a compressed gRPC message (keel asks for none)".into(),
                    );
                }
                Err(DecodeError::TooLarge(length)) => {
                    return self.stream_error(
                        code::RESOURCE_EXHAUSTED,
                        format!(
                            "a gRPC message of {length} bytes, over keel's limit of {MAX_MESSAGE}"
                        ),
                    );
                }
            }
        }
    }

    /// `onTrailers`: the trailing metadata, then the close with their status (UNKNOWN when
    /// they have none).
    fn trailers(&mut self, metadata: Metadata, map: &http::HeaderMap) {
        self.queue
            .push_back(StreamEvent::TrailingMetadata(metadata));
        let code = crate::grpc::response_status(Some(map), None, None)
            .map_or(i32::try_from(code::UNKNOWN).unwrap_or(2), |code| {
                i32::try_from(code).unwrap_or(-1)
            });
        let message = crate::grpc::message_text(map);
        self.queue.push_back(StreamEvent::Close(code, message));
        self.body = None;
    }

    /// `streamError`: empty trailing metadata, then the close; the response is dropped (reset).
    fn stream_error(&mut self, code: u32, message: String) {
        self.queue
            .push_back(StreamEvent::TrailingMetadata(Vec::new()));
        self.close(code, message);
    }

    fn close(&mut self, code: u32, message: String) {
        self.queue.push_back(StreamEvent::Close(
            i32::try_from(code).unwrap_or(-1),
            message,
        ));
        self.body = None;
    }
}

/// A header map as the filter reads it (`:status` first when it is a response head).
fn pairs(status: Option<http::StatusCode>, map: &http::HeaderMap) -> Metadata {
    let mut pairs = Vec::with_capacity(map.len() + 1);
    if let Some(status) = status {
        pairs.push((b":status".to_vec(), status.as_str().as_bytes().to_vec()));
    }
    for (name, value) in map {
        pairs.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response body from scripted frames.
    struct Scripted(VecDeque<Result<Frame<Bytes>, CalloutError>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = CalloutError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, CalloutError>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn reader(
        status: u16,
        head: &[(&'static str, &'static str)],
        frames: Vec<Result<Frame<Bytes>, CalloutError>>,
    ) -> Reader {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in head {
            builder = builder.header(*name, *value);
        }
        let body: GrpcStreamBody = Box::pin(Scripted(frames.into()));
        let response = builder.body(body).expect("response");
        Reader::new(Box::pin(async move { Ok(response) }), None)
    }

    fn trailers(entries: &[(&'static str, &'static str)]) -> Frame<Bytes> {
        let mut map = http::HeaderMap::new();
        for (name, value) in entries {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        Frame::trailers(map)
    }

    fn data(bytes: &[u8]) -> Result<Frame<Bytes>, CalloutError> {
        Ok(Frame::data(Bytes::copy_from_slice(bytes)))
    }

    async fn events(mut reader: Reader) -> Vec<StreamEvent> {
        let mut all = Vec::new();
        while let Some(event) = reader.next().await {
            all.push(event);
        }
        all
    }

    fn kv(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn metadata_messages_trailers_then_close_in_envoys_order() {
        let mut wire = crate::grpc_frames::frame(b"a").expect("small").to_vec();
        wire.extend_from_slice(&crate::grpc_frames::frame(b"bc").expect("small"));
        let got = events(reader(
            200,
            &[("content-type", "application/grpc")],
            vec![
                // Two messages in one frame, then one split across two.
                data(&wire),
                data(&[0, 0, 0, 0, 3, b'd']),
                data(b"ef"),
                Ok(trailers(&[("grpc-status", "0"), ("x-t", "1")])),
            ],
        ))
        .await;
        assert_eq!(
            got,
            vec![
                StreamEvent::InitialMetadata(vec![
                    kv(":status", "200"),
                    kv("content-type", "application/grpc")
                ]),
                StreamEvent::Message(Bytes::from_static(b"a")),
                StreamEvent::Message(Bytes::from_static(b"bc")),
                StreamEvent::Message(Bytes::from_static(b"def")),
                StreamEvent::TrailingMetadata(vec![kv("grpc-status", "0"), kv("x-t", "1")]),
                StreamEvent::Close(0, String::new()),
            ]
        );
    }

    /// Envoy `onHeaders`: a trailers-only response gets empty initial metadata, then its head
    /// as the trailing metadata.
    #[tokio::test]
    async fn a_trailers_only_error_closes_with_its_status() {
        let got = events(reader(
            200,
            &[("grpc-status", "7"), ("grpc-message", "no")],
            Vec::new(),
        ))
        .await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], StreamEvent::InitialMetadata(Vec::new()));
        assert!(
            matches!(&got[1], StreamEvent::TrailingMetadata(m) if m.contains(&kv("grpc-status", "7")))
        );
        assert_eq!(got[2], StreamEvent::Close(7, "no".into()));
    }

    #[tokio::test]
    async fn failures_close_as_envoys_stream_errors() {
        // A 404 without a gRPC status: `httpToGrpcStatus`, UNIMPLEMENTED.
        let got = events(reader(404, &[], vec![data(b"")])).await;
        assert_eq!(
            got,
            vec![
                StreamEvent::InitialMetadata(Vec::new()),
                StreamEvent::TrailingMetadata(Vec::new()),
                StreamEvent::Close(12, String::new()),
            ]
        );
        // The body ends without trailers: UNKNOWN; a reset: INTERNAL.
        let ended = events(reader(200, &[], Vec::new())).await;
        assert_eq!(ended.last(), Some(&StreamEvent::Close(2, String::new())));
        let reset = events(reader(
            200,
            &[],
            vec![Err(CalloutError::Failed("rst".into()))],
        ))
        .await;
        assert_eq!(reset.last(), Some(&StreamEvent::Close(13, String::new())));
        // A message announced over the limit, never buffered: RESOURCE_EXHAUSTED.
        let huge = events(reader(
            200,
            &[],
            vec![data(&[0, 0xff, 0xff, 0xff, 0xff, 1])],
        ))
        .await;
        assert!(
            matches!(huge.last(), Some(StreamEvent::Close(8, text)) if text.contains("4294967295 bytes")),
            "{huge:?}"
        );
        // Compressed: INTERNAL.
        let packed = events(reader(200, &[], vec![data(&[1, 0, 0, 0, 1, b'x'])])).await;
        assert!(matches!(packed.last(), Some(StreamEvent::Close(13, _))));
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_unavailable_a_reset_internal() {
        let refused = Reader::new(
            Box::pin(async { Err(CalloutError::Connect("refused".into())) }),
            None,
        );
        let got = events(refused).await;
        assert_eq!(got[0], StreamEvent::InitialMetadata(Vec::new()));
        assert!(
            matches!(got.last(), Some(StreamEvent::Close(14, text)) if text.starts_with("upstream connect error")),
            "{got:?}"
        );
        let reset = Reader::new(
            Box::pin(async { Err(CalloutError::Failed("rst".into())) }),
            None,
        );
        assert_eq!(
            events(reset).await,
            vec![
                StreamEvent::TrailingMetadata(Vec::new()),
                StreamEvent::Close(13, String::new())
            ]
        );
    }

    /// keel's reset of a stream whose send queue overflowed (`crate::grpc_send`), before or
    /// after the response head: empty trailing metadata, then INTERNAL with the cause (Envoy's
    /// `onReset`, `streamError`).
    #[tokio::test]
    async fn a_stream_keel_resets_closes_internal_with_the_cause() {
        use crate::grpc_send::{OpenStream, SendBudget};
        let (mut open, _body, overflow) = OpenStream::new(SendBudget::new(1));
        let waiting = Reader::new(Box::pin(std::future::pending()), Some(overflow));
        let full = open
            .send(Bytes::from_static(b"too big"), false)
            .unwrap_err();
        assert_eq!(
            events(waiting).await,
            vec![
                StreamEvent::TrailingMetadata(Vec::new()),
                StreamEvent::Close(13, full.to_string()),
            ]
        );
        /// A response body that never says anything.
        struct Silent;
        impl Body for Silent {
            type Data = Bytes;
            type Error = CalloutError;
            fn poll_frame(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, CalloutError>>> {
                Poll::Pending
            }
        }
        let (mut open, _body, overflow) = OpenStream::new(SendBudget::new(1));
        let body: GrpcStreamBody = Box::pin(Silent);
        let head = http::Response::builder()
            .header("x-initial", "1")
            .body(body);
        let mut answered = Reader::new(Box::pin(async move { Ok(head.unwrap()) }), Some(overflow));
        assert!(matches!(
            answered.next().await,
            Some(StreamEvent::InitialMetadata(_))
        ));
        let full = open
            .send(Bytes::from_static(b"too big"), false)
            .unwrap_err();
        let rest = events(answered).await;
        assert_eq!(rest.last(), Some(&StreamEvent::Close(13, full.to_string())));
    }
}
