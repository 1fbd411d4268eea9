//! What the client sends: the request head, who the client is, the body; and how that becomes
//! a [`ForwardRequest`] (body framing checked, only keel's own attributes).

use std::borrow::Cow;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

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
    /// The member's route, sent as the route attribute (shared: not copied per request).
    pub route: Option<Arc<str>>,
    /// The caller may have the request sent again when a pooled connection closes after it
    /// went out but before any answer: an idempotent method with an empty or whole body.
    pub retry_unanswered: bool,
}

/// The forward-request packet for `req`, as the client sends it: the request's header
/// fields are made ready for AJP in place ([`build`]), then encoded. A request that does not
/// fit the packet is refused with the status its error names, and nothing is sent.
pub fn encode_request(req: &mut AjpRequest, config: &ClientConfig) -> Result<Bytes, ClientError> {
    let addresses = [req.peer.remote.ip(), req.peer.local.ip()].map(IpText::new);
    let forward = build(req, config, &addresses)?;
    let size = config.packet_size;
    let mut encoded = BytesMut::with_capacity(1024);
    forward
        .encode(&mut encoded, size)
        .map_err(|e| unencodable(e, &forward, size))?;
    Ok(encoded.freeze())
}

/// An IP address as text, on the stack (the longest, an IPv6 address with an IPv4 tail, is 45
/// bytes): a forward request borrows it instead of a `String` per address and request. IPv4 (a
/// mapped IPv6 address too) is written octet by octet, without the formatting machinery.
struct IpText {
    bytes: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            bytes: [0; 45],
            len: 0,
        };
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b".");
                    }
                    text.push(crate::wire::decimal(u16::from(octet), &mut [0; 5]).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text.bytes[..];
                // An address's text always fits; were it ever not to, it would be cut short.
                let _ = write!(rest, "{v6}");
                text.len = 45 - rest.len();
            }
        }
        text
    }

    /// Appends `part` (an IPv4 address's parts always fit).
    fn push(&mut self, part: &[u8]) {
        if let Some(to) = self.bytes.get_mut(self.len..self.len + part.len()) {
            to.copy_from_slice(part);
            self.len += part.len();
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

/// Builds the forward request, borrowing from `req`, `config` and `addresses` (the client's
/// and the listener's, as text). The request's header fields are changed in place for AJP.
/// Framing: a Transfer-Encoding with a Content-Length, or two different Content-Lengths, are
/// refused (CVE-2022-26377); AJP frames the body itself, so Content-Length is set from the
/// body (0 when there is none) and a body of unknown length is announced as
/// `Transfer-Encoding: chunked`, as httpd and mod_jk forward it.
fn build<'a>(
    req: &'a mut AjpRequest,
    config: &'a ClientConfig,
    [remote, local]: &'a [IpText; 2],
) -> Result<ForwardRequest<'a>, ClientError> {
    let headers = &mut req.parts.headers;
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
    match req.body.length() {
        // Tomcat takes a missing Content-Length for a body of unknown length, not for none
        // (mod_jk always sends `Content-Length: 0`, mod_jk.c): an application that reads the
        // body then gets its end at once, and getContentLength() is 0, not -1.
        Some(0) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        // AJP frames the body itself (Tomcat asks for it chunk by chunk); the header tells
        // Tomcat's Request.parseParameters that a form body follows, as httpd and mod_jk pass
        // it on. Without it, getParameter() never sees a form posted without a length.
        None => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }
    // The Host header, else the URI's authority (HTTP/2), which then goes as the Host header.
    if !headers.contains_key(header::HOST)
        && let Some(h) = req
            .parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, h);
    }
    if headers.len() > config.max_headers {
        return Err(ClientError::Unencodable(EncodeError::TooManyHeaders {
            count: headers.len(),
            max: config.max_headers,
        }));
    }

    let req: &'a AjpRequest = req;
    let parts = &req.parts;
    let server_name = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .map(strip_port)
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let path = parts.uri.path();
    let mut f = ForwardRequest::new(
        parts.method.clone(),
        if path.is_empty() { "/" } else { path },
    );
    f.protocol = Cow::Borrowed(match parts.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        // As httpd's r->protocol under mod_http2; Tomcat also reads a form body of unknown
        // length for "HTTP/2.0" (Request.parseParameters).
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    });
    f.remote_addr = Cow::Borrowed(remote.as_str());
    f.remote_host = Some(Cow::Borrowed(remote.as_str()));
    f.server_name = Cow::Borrowed(server_name);
    f.server_port = req.peer.local.port();
    f.is_ssl = req.peer.tls.is_some();
    f.headers = Cow::Borrowed(&parts.headers);
    f.query_string = parts.uri.query().map(Cow::Borrowed);
    f.route = req.route.as_deref().map(Cow::Borrowed);
    f.remote_port = Some(req.peer.remote.port());
    f.local_addr = Some(Cow::Borrowed(local.as_str()));
    f.tls = req.peer.tls.as_ref().map(Cow::Borrowed);
    f.secret = config.secret_value().map(Cow::Borrowed);
    Ok(f)
}

/// The error for a forward request that does not fit the packet: the URI alone too long
/// (414), else the header fields (431, in [`ClientError::client_status`]).
fn unencodable(e: EncodeError, forward: &ForwardRequest<'_>, size: PacketSize) -> ClientError {
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

#[cfg(test)]
mod tests {
    use super::IpText;
    use std::net::IpAddr;

    #[test]
    fn addresses_as_text_on_the_stack() {
        for (ip, text) in [
            ("127.0.0.1", "127.0.0.1"),
            ("255.255.255.255", "255.255.255.255"),
            ("0.0.0.0", "0.0.0.0"),
            ("10.20.0.9", "10.20.0.9"),
            ("::1", "::1"),
            // A mapped IPv4 address goes as plain IPv4, as before.
            ("::ffff:10.1.2.3", "10.1.2.3"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
            ),
        ] {
            let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
            assert_eq!(IpText::new(ip).as_str(), text);
        }
        // IPv4 octet by octet, as std writes it, for addresses spread over the whole range.
        for n in 0..2000u32 {
            let ip = std::net::Ipv4Addr::from(n.wrapping_mul(2_654_435_761));
            assert_eq!(IpText::new(ip.into()).as_str(), ip.to_string());
        }
    }
}
