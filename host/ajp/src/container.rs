//! The container's side of the codec: decode what a proxy sends (forward request, body data,
//! CPING) and encode what a container answers. keel itself never needs this; the test server
//! ([`crate::test_server`]) and the golden tests do, so both directions are pinned.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::decode::payload_len;
use crate::error::DecodeError;
use crate::header_codes;
use crate::method;
use crate::reader::Reader;
use crate::wire::{self, PacketSize};

/// A forward request as the container read it. Attributes are kept raw so tests can check
/// that only the expected ones arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Method (from the code or `stored_method`).
    pub method: Method,
    /// Protocol string.
    pub protocol: String,
    /// The path.
    pub req_uri: String,
    /// Remote address.
    pub remote_addr: String,
    /// Remote host (null → `None`).
    pub remote_host: Option<String>,
    /// Server name.
    pub server_name: String,
    /// Server port.
    pub server_port: u16,
    /// is_ssl.
    pub is_ssl: bool,
    /// Headers in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Every attribute in order: code and value (`req_attribute` as `name=value`, key size
    /// as its decimal number).
    pub attributes: Vec<(u8, String)>,
}

impl ReceivedRequest {
    /// The first value of an attribute code.
    pub fn attribute(&self, code: u8) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Takes one packet from the proxy off the front of `buf`: `Ok(None)` if incomplete, else
/// its payload (possibly empty: the end of a body).
pub fn decode_from_proxy(
    buf: &mut BytesMut,
    size: PacketSize,
) -> Result<Option<Bytes>, DecodeError> {
    let Some(len) = payload_len(buf, wire::MAGIC_TO_CONTAINER, size)? else {
        return Ok(None);
    };
    buf.advance(wire::HEADER_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The chunk in a body data packet's payload (empty = end of body).
pub fn parse_body_data(payload: Bytes) -> Result<Bytes, DecodeError> {
    if payload.is_empty() {
        return Ok(payload);
    }
    let mut r = Reader::new(payload);
    let n = usize::from(r.u16("chunk length")?);
    let data = r.bytes(n, "body chunk")?;
    r.finish("body data")?;
    Ok(data)
}

fn text(b: Bytes) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

/// Parses a forward request payload (type byte 2 first).
pub fn parse_forward_request(payload: Bytes) -> Result<ReceivedRequest, DecodeError> {
    let mut r = Reader::new(payload);
    let t = r.u8("message type")?;
    if t != wire::FORWARD_REQUEST {
        return Err(DecodeError::UnknownType(t));
    }
    let code = r.u8("method")?;
    let protocol = text(r.string("protocol")?);
    let req_uri = text(r.string("req_uri")?);
    let remote_addr = text(r.string("remote_addr")?);
    let remote_host = r.opt_string("remote_host")?.map(text);
    let server_name = text(r.string("server_name")?);
    let server_port = r.u16("server_port")?;
    let is_ssl = r.u8("is_ssl")? != 0;
    let n = r.u16("num_headers")?;
    let mut headers = Vec::new();
    for _ in 0..n {
        let peek = r.peek_u16("header name")?;
        let name = if peek & 0xFF00 == 0xA000 {
            r.u16("header name")?;
            header_codes::request_name(peek).ok_or(DecodeError::UnknownHeaderCode(peek))?
        } else {
            let raw = r.string("header name")?;
            HeaderName::from_bytes(&raw).map_err(|e| DecodeError::InvalidHeader(e.to_string()))?
        };
        let value = HeaderValue::from_maybe_shared(r.string("header value")?)
            .map_err(|e| DecodeError::InvalidHeader(e.to_string()))?;
        headers.push((name, value));
    }
    let mut attributes = Vec::new();
    let mut stored = None;
    loop {
        let a = r.u8("attribute")?;
        match a {
            0xFF => break,
            0x0A => {
                let n = text(r.string("attribute name")?);
                let v = text(r.string("attribute value")?);
                attributes.push((a, format!("{n}={v}")));
            }
            0x0B => attributes.push((a, r.u16("ssl_key_size")?.to_string())),
            0x0D => {
                let m = r.string("stored_method")?;
                stored = Some(m.clone());
                attributes.push((a, text(m)));
            }
            _ => attributes.push((a, text(r.string("attribute")?))),
        }
    }
    r.finish("FORWARD_REQUEST")?;
    let method = match (code, stored) {
        (method::STORED, Some(m)) => {
            Method::from_bytes(&m).map_err(|e| DecodeError::InvalidHeader(e.to_string()))?
        }
        (c, _) => method::from_code(c).ok_or(DecodeError::UnknownType(c))?,
    };
    Ok(ReceivedRequest {
        method,
        protocol,
        req_uri,
        remote_addr,
        remote_host,
        server_name,
        server_port,
        is_ssl,
        headers,
        attributes,
    })
}

fn start(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_slice(&wire::MAGIC_FROM_CONTAINER);
    buf.put_u16(0);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at - 4) as u16;
    buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Appends SEND_HEADERS as Tomcat writes it: the reason phrase is the status number, coded
/// names where a code exists.
pub fn encode_send_headers(
    buf: &mut BytesMut,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
) {
    let at = start(buf);
    buf.put_u8(wire::SEND_HEADERS);
    buf.put_u16(status.as_u16());
    put_str(buf, status.as_str().as_bytes());
    buf.put_u16(headers.len() as u16);
    for (n, v) in headers {
        match header_codes::response_code(n) {
            Some(c) => buf.put_u16(c),
            None => put_str(buf, n.as_str().as_bytes()),
        }
        put_str(buf, v.as_bytes());
    }
    finish(buf, at);
}

/// Appends SEND_BODY_CHUNK (u16 length, bytes, one trailing 0). Empty = flush.
pub fn encode_send_body_chunk(buf: &mut BytesMut, chunk: &[u8]) {
    let at = start(buf);
    buf.put_u8(wire::SEND_BODY_CHUNK);
    put_str(buf, chunk);
    finish(buf, at);
}

/// Appends GET_BODY_CHUNK asking for `n` bytes.
pub fn encode_get_body_chunk(buf: &mut BytesMut, n: u16) {
    let at = start(buf);
    buf.put_u8(wire::GET_BODY_CHUNK);
    buf.put_u16(n);
    finish(buf, at);
}

/// Appends END_RESPONSE with the reuse flag.
pub fn encode_end_response(buf: &mut BytesMut, reuse: bool) {
    buf.put_slice(&[b'A', b'B', 0, 2, wire::END_RESPONSE, u8::from(reuse)]);
}

/// Appends CPONG: `41 42 00 01 09`.
pub fn encode_cpong(buf: &mut BytesMut) {
    buf.put_slice(&[b'A', b'B', 0, 1, wire::CPONG]);
}
