//! Unary gRPC callouts (`proxy_grpc_call`), as Envoy's raw async gRPC client makes them: the
//! request (`POST /<service>/<method>`, `application/grpc`, one length-prefixed message, the
//! filter's initial metadata, `grpc-timeout`), sent over HTTP/2 by the [`CalloutHandler`], and
//! its answer reduced to what the filter gets: the response message (`on_grpc_receive`), or a
//! gRPC status and message (`on_grpc_close`, `proxy_get_status`). Also the form of a local
//! reply to a gRPC request (trailers-only).
//!
//! [`CalloutHandler`]: crate::CalloutHandler

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::CalloutError;
use crate::types::GrpcFuture;

/// gRPC status codes keel produces itself (`grpc/include/grpcpp/impl/codegen/status_code_enum.h`).
pub(crate) mod code {
    pub const UNKNOWN: u32 = 2;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const UNAUTHENTICATED: u32 = 16;
    pub const PERMISSION_DENIED: u32 = 7;
}

/// What a unary gRPC callout came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GrpcOutcome {
    /// Status OK and the response message (without its 5-byte prefix).
    Message(Bytes),
    /// Any other end: the status code and its message.
    Closed(u32, String),
}

/// What keeps a unary call going: the instance holds it by token while the call is in flight,
/// and dropping it cancels the call (see [`cancellable`]).
pub(crate) type CallHandle = oneshot::Sender<Infallible>;

/// The unary call `call`, made to stop as soon as its [`CallHandle`] is dropped —
/// `proxy_grpc_cancel` or `proxy_grpc_close` on its token, or the instance that made it is
/// gone: the call's future is dropped then and there, and with it the HTTP/2 request, which
/// the client resets (RST_STREAM CANCEL), as Envoy's `AsyncRequestImpl::cancel` resets its
/// stream (`source/common/grpc/async_client_impl.cc`; `context.cc` `grpcCancel`,
/// `grpcClose`, `Context::~Context`). What a cancelled call then comes to reaches no filter.
pub(crate) fn cancellable(call: GrpcFuture) -> (GrpcFuture, CallHandle) {
    let (handle, mut dropped) = oneshot::channel::<Infallible>();
    let mut call = Some(call);
    let future = std::future::poll_fn(move |cx| {
        if Pin::new(&mut dropped).poll(cx).is_ready() {
            call = None;
        }
        match call.as_mut() {
            Some(call) => call.as_mut().poll(cx),
            None => Poll::Ready(Err(CalloutError::Failed(
                "the filter cancelled the gRPC call".into(),
            ))),
        }
    });
    (Box::pin(future), handle)
}

/// The HTTP/2 request of a unary call to `service`/`method` on the upstream `authority`;
/// `None` when a name or a metadata pair is not valid HTTP.
pub(crate) fn request(
    authority: &str,
    service: &[u8],
    method: &[u8],
    metadata: &[(&[u8], &[u8])],
    message: &[u8],
    timeout: Option<Duration>,
) -> Option<http::Request<Bytes>> {
    let mut builder = head(authority, service, method, metadata)?;
    if let Some(timeout) = timeout {
        builder = builder.header("grpc-timeout", format!("{}m", timeout.as_millis()));
    }
    builder.body(crate::grpc_frames::frame(message)?).ok()
}

/// The head of a call to `service`/`method` (`POST /<service>/<method>`, `application/grpc`,
/// `te: trailers`, the filter's metadata without pseudo-headers), unary or streaming, as Envoy's
/// `Grpc::Common::prepareHeaders` makes it; `None` when a name or a pair is not valid HTTP.
pub(crate) fn head(
    authority: &str,
    service: &[u8],
    method: &[u8],
    metadata: &[(&[u8], &[u8])],
) -> Option<http::request::Builder> {
    let mut path = Vec::with_capacity(service.len() + method.len() + 2);
    path.push(b'/');
    path.extend_from_slice(service);
    path.push(b'/');
    path.extend_from_slice(method);
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()?;
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers");
    for (key, value) in metadata {
        if key.first() != Some(&b':') {
            builder = builder.header(*key, *value);
        }
    }
    // A bad name fails here rather than at `body`, where the error would not say which.
    builder.headers_ref()?;
    Some(builder)
}

/// The gRPC status of an HTTP status that carries none (Envoy `Grpc::Utility::httpToGrpcStatus`,
/// after the gRPC spec's `http-grpc-status-mapping.md`).
fn from_http(status: http::StatusCode) -> u32 {
    match status.as_u16() {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502..=504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// `response.grpc_status` (Envoy `source/common/grpc/common.cc` `Common::getGrpcStatus`): the
/// trailers' `grpc-status`, else the head's, else the one the HTTP status maps to; a value that
/// is not a number up to 16 is `InvalidCode` (-1).
pub(crate) fn response_status(
    trailers: Option<&http::HeaderMap>,
    head: Option<&http::HeaderMap>,
    status: Option<http::StatusCode>,
) -> Option<i64> {
    let of = |map: Option<&http::HeaderMap>| {
        let value = map?.get("grpc-status")?.as_bytes();
        if value.is_empty() {
            return None;
        }
        Some(
            std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                // UNAUTHENTICATED (16) is Envoy's `MaximumKnown`.
                .filter(|code| *code <= u64::from(code::UNAUTHENTICATED))
                .and_then(|code| i64::try_from(code).ok())
                .unwrap_or(-1),
        )
    };
    of(trailers)
        .or_else(|| of(head))
        .or_else(|| status.map(|status| i64::from(from_http(status))))
}

/// Whether a request is gRPC (Envoy `Grpc::Common::isGrpcRequestHeaders`: a path and an
/// `application/grpc` content type).
pub(crate) fn is_request(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// Turns a local reply to a gRPC request into what Envoy sends (`source/common/http/
/// utility.cc` `prepareLocalReply`): HTTP 200, `application/grpc`, `grpc-status` (the one the
/// filter gave, else the HTTP status's), `grpc-message` (the body, percent-encoded), and no
/// body.
pub(crate) fn trailers_only(parts: &mut http::response::Parts, body: &[u8]) {
    let code = parts
        .headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or_else(|| from_http(parts.status));
    parts.status = http::StatusCode::OK;
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    parts
        .headers
        .insert("grpc-status", http::HeaderValue::from(code));
    if !body.is_empty()
        && let Ok(message) = http::HeaderValue::from_str(&percent_encode(body))
    {
        parts.headers.insert("grpc-message", message);
    }
}

/// The gRPC spec's `grpc-message` encoding: `%XX` for `%` and for bytes outside 0x20..=0x7E.
fn percent_encode(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn status_of(map: &http::HeaderMap) -> Option<(u32, String)> {
    let code = map.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some((code, message_text(map)))
}

/// A map's `grpc-message` (empty when it has none).
pub(crate) fn message_text(map: &http::HeaderMap) -> String {
    map.get("grpc-message")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// The one message of a unary response body, without its prefix (uncompressed only: keel
/// asks for no compression).
fn message_of(body: &Bytes) -> Option<Bytes> {
    let (&flag, rest) = body.split_first()?;
    let length = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    if flag != 0 || rest.len() != 4 + length {
        return None;
    }
    Some(body.slice(5..5 + length))
}

/// What the filter gets for the HTTP/2 exchange (or its failure), as Envoy's async client
/// reports it: connect failures and timeouts come back from its router as 503/504, i.e.
/// UNAVAILABLE; a reset is INTERNAL; a response without `grpc-status` takes the one its HTTP
/// status maps to; OK without exactly one message is INTERNAL.
pub(crate) fn outcome(
    result: Result<(http::Response<Bytes>, http::HeaderMap), CalloutError>,
) -> GrpcOutcome {
    let (response, trailers) = match result {
        Ok(answer) => answer,
        Err(CalloutError::Timeout) => {
            return GrpcOutcome::Closed(code::UNAVAILABLE, "upstream request timeout".into());
        }
        Err(CalloutError::Connect(_)) => {
            return GrpcOutcome::Closed(
                code::UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: \
                 connection failure"
                    .into(),
            );
        }
        Err(CalloutError::UnknownUpstream(_) | CalloutError::Failed(_)) => {
            return GrpcOutcome::Closed(code::INTERNAL, String::new());
        }
    };
    // A trailers-only answer carries its status in the head.
    let status = status_of(&trailers).or_else(|| status_of(response.headers()));
    let status = match (response.status(), status) {
        (_, Some(status)) => status,
        (http::StatusCode::OK, None) => (code::UNKNOWN, String::new()),
        (other, None) => (from_http(other), String::new()),
    };
    match status {
        (0, _) => match message_of(response.body()) {
            Some(message) => GrpcOutcome::Message(message),
            None => GrpcOutcome::Closed(code::INTERNAL, "not one gRPC message".into()),
        },
        (code, message) => GrpcOutcome::Closed(code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        status: u16,
        head: &[(&str, &str)],
        body: &[u8],
        trailers: &[(&'static str, &'static str)],
    ) -> Result<(http::Response<Bytes>, http::HeaderMap), CalloutError> {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in head {
            builder = builder.header(*name, *value);
        }
        let mut map = http::HeaderMap::new();
        for (name, value) in trailers {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        Ok((
            builder
                .body(Bytes::copy_from_slice(body))
                .expect("response"),
            map,
        ))
    }

    #[test]
    fn the_request_is_one_framed_message_with_grpc_headers() {
        let built = request(
            "auth",
            b"pkg.Svc",
            b"Check",
            &[(b"x-trace".as_slice(), b"7".as_slice())],
            b"hi",
            Some(Duration::from_millis(1500)),
        )
        .expect("valid");
        assert_eq!(built.method(), http::Method::POST);
        assert_eq!(built.uri(), "http://auth/pkg.Svc/Check");
        assert_eq!(built.headers()["content-type"], "application/grpc");
        assert_eq!(built.headers()["te"], "trailers");
        assert_eq!(built.headers()["grpc-timeout"], "1500m");
        assert_eq!(built.headers()["x-trace"], "7");
        assert_eq!(&built.body()[..], b"\0\0\0\0\x02hi");
        assert!(request("auth", b"bad svc", b"m", &[], b"", None).is_none());
    }

    #[test]
    fn an_ok_answer_gives_its_message() {
        let outcome = outcome(answer(
            200,
            &[],
            b"\0\0\0\0\x03abc",
            &[("grpc-status", "0")],
        ));
        assert_eq!(outcome, GrpcOutcome::Message(Bytes::from_static(b"abc")));
    }

    #[test]
    fn statuses_come_from_trailers_head_or_http_status() {
        let denied = answer(
            200,
            &[],
            b"",
            &[("grpc-status", "7"), ("grpc-message", "no")],
        );
        assert_eq!(outcome(denied), GrpcOutcome::Closed(7, "no".into()));
        let trailers_only = answer(200, &[("grpc-status", "5")], b"", &[]);
        assert_eq!(
            outcome(trailers_only),
            GrpcOutcome::Closed(5, String::new())
        );
        assert_eq!(
            outcome(answer(404, &[], b"", &[])),
            GrpcOutcome::Closed(code::UNIMPLEMENTED, String::new())
        );
        assert_eq!(
            outcome(answer(200, &[], b"", &[])),
            GrpcOutcome::Closed(code::UNKNOWN, String::new())
        );
        // OK, but the body is not exactly one uncompressed message.
        let torn = answer(200, &[], b"\0\0\0\0\x09abc", &[("grpc-status", "0")]);
        assert!(matches!(
            outcome(torn),
            GrpcOutcome::Closed(code::INTERNAL, _)
        ));
        let compressed = answer(200, &[], b"\x01\0\0\0\x01a", &[("grpc-status", "0")]);
        assert!(matches!(
            outcome(compressed),
            GrpcOutcome::Closed(code::INTERNAL, _)
        ));
    }

    #[test]
    fn a_local_reply_to_a_grpc_request_is_trailers_only() {
        let (mut parts, ()) = http::Response::builder()
            .status(503)
            .header("content-type", "text/plain")
            .body(())
            .expect("response")
            .into_parts();
        trailers_only(&mut parts, b"a filter failed\n");
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["content-type"], "application/grpc");
        assert_eq!(parts.headers["grpc-status"], "14");
        assert_eq!(parts.headers["grpc-message"], "a filter failed%0A");
        let (mut parts, ()) = http::Response::builder()
            .header("grpc-status", "10")
            .body(())
            .expect("response")
            .into_parts();
        trailers_only(&mut parts, b"100% gone");
        assert_eq!(parts.headers["grpc-status"], "10");
        assert_eq!(parts.headers["grpc-message"], "100%25 gone");
    }

    #[test]
    fn failures_are_unavailable_or_internal() {
        assert!(matches!(
            outcome(Err(CalloutError::Timeout)),
            GrpcOutcome::Closed(code::UNAVAILABLE, _)
        ));
        assert!(matches!(
            outcome(Err(CalloutError::Connect("refused".into()))),
            GrpcOutcome::Closed(code::UNAVAILABLE, _)
        ));
        assert!(matches!(
            outcome(Err(CalloutError::Failed("reset".into()))),
            GrpcOutcome::Closed(code::INTERNAL, _)
        ));
    }
}
