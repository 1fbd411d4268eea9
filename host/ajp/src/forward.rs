//! The forward request (prefix 2): request line, client facts, headers and attributes.
//!
//! Layout (ajpv13a "Request Packet Structure"; read by Tomcat `AjpProcessor.prepareRequest`):
//! prefix, method, protocol, req_uri, remote_addr, remote_host, server_name, server_port (u16),
//! is_ssl, num_headers (u16), headers, attributes, 0xFF. Only the attributes keel builds
//! itself can be set here — there is no way to pass an arbitrary `req_attribute`, so nothing a
//! client sends reaches Tomcat as a request attribute (Ghostcat, CVE-2020-1938).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, Method};

use crate::error::EncodeError;
use crate::header_codes;
use crate::method;
use crate::wire::{self, PacketSize};

/// Attribute codes (Tomcat `Constants.SC_A_*`).
mod attr {
    pub const REMOTE_USER: u8 = 0x03;
    pub const AUTH_TYPE: u8 = 0x04;
    pub const QUERY_STRING: u8 = 0x05;
    pub const ROUTE: u8 = 0x06;
    pub const SSL_CERT: u8 = 0x07;
    pub const SSL_CIPHER: u8 = 0x08;
    pub const SSL_SESSION: u8 = 0x09;
    pub const REQ_ATTRIBUTE: u8 = 0x0A;
    pub const SSL_KEY_SIZE: u8 = 0x0B;
    pub const SECRET: u8 = 0x0C;
    pub const STORED_METHOD: u8 = 0x0D;
    pub const ARE_DONE: u8 = 0xFF;
}

/// `req_attribute` names Tomcat knows (`Constants.SC_A_REQ_*`); any other name is refused
/// with 403 unless it matches `allowedRequestAttributesPattern`.
pub const ATTR_REMOTE_PORT: &str = "AJP_REMOTE_PORT";
/// The local address `req_attribute`.
pub const ATTR_LOCAL_ADDR: &str = "AJP_LOCAL_ADDR";
/// The TLS protocol `req_attribute`.
pub const ATTR_SSL_PROTOCOL: &str = "AJP_SSL_PROTOCOL";

/// TLS facts of the client connection, sent as attributes when it came over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsAttributes {
    /// Cipher suite (attribute 0x08).
    pub cipher: Option<String>,
    /// Session id (0x09).
    pub session: Option<String>,
    /// Symmetric key size in bits (0x0B, a u16 — Tomcat reads it with `getInt`).
    pub key_size: Option<u16>,
    /// Client certificate chain, PEM (0x07).
    pub cert: Option<String>,
    /// Protocol, e.g. `TLSv1.3` (req_attribute `AJP_SSL_PROTOCOL`).
    pub protocol: Option<String>,
}

/// A forward request, borrowing what it can: the client builds one per request from the
/// request's own head and fields, with no copies (`Cow::Owned` where a caller has only owned
/// text, as the tests do). Build it, then [`encode`](Self::encode) it. Its `Debug` shows no
/// secret.
#[derive(Clone)]
pub struct ForwardRequest<'a> {
    /// The method; without an AJP code it goes as `stored_method`.
    pub method: Method,
    /// `HTTP/1.1` etc.
    pub protocol: Cow<'a, str>,
    /// The path only, as the client sent it (percent-encoding kept).
    pub req_uri: Cow<'a, str>,
    /// The client's IP address.
    pub remote_addr: Cow<'a, str>,
    /// The client's host name; keel sends the address (no lookups).
    pub remote_host: Option<Cow<'a, str>>,
    /// The server name (the Host the client asked for, without port).
    pub server_name: Cow<'a, str>,
    /// The port the client connected to.
    pub server_port: u16,
    /// Whether the client came over TLS.
    pub is_ssl: bool,
    /// The request headers, in order; duplicates go as separate headers.
    pub headers: Cow<'a, HeaderMap>,
    /// The query string without `?` (attribute 0x05).
    pub query_string: Option<Cow<'a, str>>,
    /// The member's route (attribute 0x06; Tomcat ignores it, mod_jk sends it).
    pub route: Option<Cow<'a, str>>,
    /// The client's port (`AJP_REMOTE_PORT`).
    pub remote_port: Option<u16>,
    /// The local address the client connected to (`AJP_LOCAL_ADDR`).
    pub local_addr: Option<Cow<'a, str>>,
    /// TLS attributes, when `is_ssl`.
    pub tls: Option<Cow<'a, TlsAttributes>>,
    /// An authenticated user (0x03), only when keel authenticated it.
    pub remote_user: Option<Cow<'a, str>>,
    /// The authentication type (0x04), with `remote_user`.
    pub auth_type: Option<Cow<'a, str>>,
    /// The connector's secret (0x0C).
    pub secret: Option<Cow<'a, str>>,
}

impl std::fmt::Debug for ForwardRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardRequest")
            .field("method", &self.method)
            .field("protocol", &self.protocol)
            .field("req_uri", &self.req_uri)
            .field("remote_addr", &self.remote_addr)
            .field("remote_host", &self.remote_host)
            .field("server_name", &self.server_name)
            .field("server_port", &self.server_port)
            .field("is_ssl", &self.is_ssl)
            .field("headers", &self.headers)
            .field("query_string", &self.query_string)
            .field("route", &self.route)
            .field("remote_port", &self.remote_port)
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls)
            .field("remote_user", &self.remote_user)
            .field("auth_type", &self.auth_type)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl<'a> ForwardRequest<'a> {
    /// A request with the given line and no headers or attributes; fill in the rest.
    pub fn new(method: Method, req_uri: impl Into<Cow<'a, str>>) -> Self {
        ForwardRequest {
            method,
            protocol: Cow::Borrowed("HTTP/1.1"),
            req_uri: req_uri.into(),
            remote_addr: Cow::Borrowed("127.0.0.1"),
            remote_host: None,
            server_name: Cow::Borrowed("localhost"),
            server_port: 80,
            is_ssl: false,
            headers: Cow::Owned(HeaderMap::new()),
            query_string: None,
            route: None,
            remote_port: None,
            local_addr: None,
            tls: None,
            remote_user: None,
            auth_type: None,
            secret: None,
        }
    }

    /// Appends the forward-request packet to `buf`. A packet larger than `size` is an error
    /// and leaves `buf` as it was.
    pub fn encode(&self, buf: &mut BytesMut, size: PacketSize) -> Result<(), EncodeError> {
        let start = wire::start_packet(buf);
        match self.encode_payload(buf) {
            Ok(()) => wire::finish_packet(buf, start, size),
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }

    fn encode_payload(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        use wire::{put_opt_string, put_string};
        buf.put_u8(wire::FORWARD_REQUEST);
        let code = method::code(&self.method);
        buf.put_u8(code);
        put_string(buf, self.protocol.as_bytes(), "protocol")?;
        put_string(buf, self.req_uri.as_bytes(), "request URI")?;
        put_string(buf, self.remote_addr.as_bytes(), "remote address")?;
        put_opt_string(
            buf,
            self.remote_host.as_deref().map(str::as_bytes),
            "remote host",
        )?;
        put_string(buf, self.server_name.as_bytes(), "server name")?;
        buf.put_u16(self.server_port);
        buf.put_u8(u8::from(self.is_ssl));

        let count = self.headers.len();
        let count = u16::try_from(count).map_err(|_| EncodeError::StringTooLong {
            what: "header count",
            len: count,
        })?;
        buf.put_u16(count);
        for (name, value) in self.headers.iter() {
            match header_codes::request_code(name) {
                Some(code) => buf.put_u16(code),
                None => put_string(buf, name.as_str().as_bytes(), "header name")?,
            }
            put_string(buf, value.as_bytes(), "header value")?;
        }

        let put_attr = |buf: &mut BytesMut, code: u8, value: Option<&str>, what| {
            if let Some(v) = value {
                buf.put_u8(code);
                put_string(buf, v.as_bytes(), what)?;
            }
            Ok::<(), EncodeError>(())
        };
        for (code, value, what) in [
            (
                attr::REMOTE_USER,
                self.remote_user.as_deref(),
                "remote user",
            ),
            (attr::AUTH_TYPE, self.auth_type.as_deref(), "auth type"),
            (
                attr::QUERY_STRING,
                self.query_string.as_deref(),
                "query string",
            ),
            (attr::ROUTE, self.route.as_deref(), "route"),
        ] {
            put_attr(buf, code, value, what)?;
        }
        if let Some(tls) = self.tls.as_deref().filter(|_| self.is_ssl) {
            put_attr(buf, attr::SSL_CERT, tls.cert.as_deref(), "ssl cert")?;
            put_attr(buf, attr::SSL_CIPHER, tls.cipher.as_deref(), "ssl cipher")?;
            put_attr(
                buf,
                attr::SSL_SESSION,
                tls.session.as_deref(),
                "ssl session",
            )?;
            if let Some(bits) = tls.key_size {
                buf.put_u8(attr::SSL_KEY_SIZE);
                buf.put_u16(bits);
            }
            if let Some(p) = &tls.protocol {
                req_attribute(buf, ATTR_SSL_PROTOCOL, p)?;
            }
        }
        if let Some(port) = self.remote_port {
            req_attribute(buf, ATTR_REMOTE_PORT, wire::decimal(port, &mut [0; 5]))?;
        }
        if let Some(addr) = &self.local_addr {
            req_attribute(buf, ATTR_LOCAL_ADDR, addr)?;
        }
        put_attr(buf, attr::SECRET, self.secret.as_deref(), "secret")?;
        if code == method::STORED {
            buf.put_u8(attr::STORED_METHOD);
            put_string(buf, self.method.as_str().as_bytes(), "method")?;
        }
        buf.put_u8(attr::ARE_DONE);
        Ok(())
    }
}

/// One `req_attribute` (0x0A): name and value strings. Private: only the fixed names above.
fn req_attribute(buf: &mut BytesMut, name: &'static str, value: &str) -> Result<(), EncodeError> {
    buf.put_u8(attr::REQ_ATTRIBUTE);
    wire::put_string(buf, name.as_bytes(), "attribute name")?;
    wire::put_string(buf, value.as_bytes(), "attribute value")
}
