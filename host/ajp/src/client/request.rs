//! What the client sends: the request head, who the client is, the body; and how that becomes
//! a [`ForwardRequest`] (body framing checked, only keel's own attributes).

use std::net::SocketAddr;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};

use crate::client::config::ClientConfig;
use crate::client::error::ClientError;
use crate::error::EncodeError;
use crate::forward::{ForwardRequest, TlsAttributes};
use crate::wire::PacketSize;

/// The error type of request body streams.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming request body.
pub type BodyStream = Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send>>;

/// A streaming body taken at most once, when the connection is ready: an attempt that fails
/// before that leaves the body to the next attempt.
pub struct BodySource(Box<dyn FnOnce() -> Option<BodyStream> + Send>);

impl BodySource {
    /// A body available now.
    pub fn new(body: BodyStream) -> Self {
        BodySource(Box::new(move || Some(body)))
    }

    /// A body taken by calling `take` (`None`: an earlier attempt took it).
    pub fn deferred(take: impl FnOnce() -> Option<BodyStream> + Send + 'static) -> Self {
        BodySource(Box::new(take))
    }

    pub(crate) fn take(self) -> Option<BodyStream> {
        (self.0)()
    }
}

impl std::fmt::Debug for BodySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodySource")
    }
}

/// The request body.
#[derive(Debug)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// The whole body, in memory.
    Full(Bytes),
    /// A streaming body: with `length` its first chunk goes right after the forward request
    /// and a body that comes up short is an error; without, it is read until it ends and
    /// Tomcat asks for it chunk by chunk.
    Stream {
        /// The body.
        source: BodySource,
        /// Content-Length, if the client gave one.
        length: Option<u64>,
    },
}

impl RequestBody {
    /// The length Tomcat is told (Content-Length), `None` = read to the end.
    pub(crate) fn length(&self) -> Option<u64> {
        match self {
            RequestBody::Empty => Some(0),
            RequestBody::Full(b) => Some(b.len() as u64),
            RequestBody::Stream { length, .. } => *length,
        }
    }
}

/// Who the client is and where it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// TLS facts when the client came over TLS.
    pub tls: Option<TlsAttributes>,
}

/// One request to a member.
#[derive(Debug)]
pub struct AjpRequest {
    /// Method, URI (origin form), version, headers (hop-by-hop already removed by the proxy).
    pub parts: http::request::Parts,
    /// The body.
    pub body: RequestBody,
    /// The client.
    pub peer: Peer,
    /// The member's route, sent as the route attribute.
    pub route: Option<String>,
    /// The caller may have the request sent again when a pooled connection closes after it
    /// went out but before any answer: an idempotent method with an empty or whole body.
    pub retry_unanswered: bool,
}

/// Builds the forward request; the request's header fields move into it (the request keeps
/// an empty map). Framing: a Transfer-Encoding with a Content-Length, or two different
/// Content-Lengths, are refused (CVE-2022-26377); AJP frames the body itself, so
/// Content-Length is set from the body (0 when there is none) and a body of unknown length is
/// announced as `Transfer-Encoding: chunked`, as httpd and mod_jk forward it.
pub(crate) fn build(
    req: &mut AjpRequest,
    config: &ClientConfig,
) -> Result<ForwardRequest, ClientError> {
    let mut headers = std::mem::take(&mut req.parts.headers);
    let parts = &req.parts;
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next()
        && lengths.any(|other| other != first)
    {
        return Err(ClientError::Framing("two different Content-Length headers"));
    }
    if headers.contains_key(header::CONTENT_LENGTH)
        && headers.contains_key(header::TRANSFER_ENCODING)
    {
        return Err(ClientError::Framing(
            "Content-Length with Transfer-Encoding",
        ));
    }
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    match req.body.length() {
        // Tomcat takes a missing Content-Length for a body of unknown length, not for none
        // (mod_jk always sends `Content-Length: 0`, mod_jk.c): an application that reads the
        // body then gets its end at once, and getContentLength() is 0, not -1.
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        // AJP frames the body itself (Tomcat asks for it chunk by chunk); the header tells
        // Tomcat's Request.parseParameters that a form body follows, as httpd and mod_jk pass
        // it on. Without it, getParameter() never sees a form posted without a length.
        None => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }

    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()));
    let server_name = host
        .as_deref()
        .map(strip_port)
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost")
        .to_owned();
    if !headers.contains_key(header::HOST)
        && let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(header::HOST, h);
    }

    if headers.len() > config.max_headers {
        return Err(ClientError::Unencodable(EncodeError::TooManyHeaders {
            count: headers.len(),
            max: config.max_headers,
        }));
    }

    let path = parts.uri.path();
    let mut f = ForwardRequest::new(
        parts.method.clone(),
        if path.is_empty() { "/" } else { path },
    );
    f.protocol = match parts.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        // As httpd's r->protocol under mod_http2; Tomcat also reads a form body of unknown
        // length for "HTTP/2.0" (Request.parseParameters).
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
    .to_owned();
    f.remote_addr = req.peer.remote.ip().to_canonical().to_string();
    f.remote_host = Some(f.remote_addr.clone());
    f.server_name = server_name;
    f.server_port = req.peer.local.port();
    f.is_ssl = req.peer.tls.is_some();
    f.headers = headers;
    f.query_string = parts.uri.query().map(str::to_owned);
    f.route = req.route.clone();
    f.remote_port = Some(req.peer.remote.port());
    f.local_addr = Some(req.peer.local.ip().to_canonical().to_string());
    f.tls = req.peer.tls.clone();
    f.secret = config.secret_value().map(str::to_owned);
    Ok(f)
}

/// The error for a forward request that does not fit the packet: the URI alone too long
/// (414), else the header fields (431, in [`ClientError::client_status`]).
pub(crate) fn unencodable(
    e: EncodeError,
    forward: &ForwardRequest,
    size: PacketSize,
) -> ClientError {
    if let EncodeError::TooLarge { .. } = e {
        let mut bare = ForwardRequest::new(forward.method.clone(), forward.req_uri.clone());
        bare.query_string.clone_from(&forward.query_string);
        let mut buf = BytesMut::new();
        if let Err(EncodeError::TooLarge { needed, max }) = bare.encode(&mut buf, size) {
            return ClientError::Unencodable(EncodeError::UriTooLong { needed, max });
        }
    }
    ClientError::Unencodable(e)
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}
