//! Decoding what the container sends: SEND_HEADERS, SEND_BODY_CHUNK, GET_BODY_CHUNK,
//! END_RESPONSE and CPONG, from input that may end at any byte.
//!
//! [`decode`] takes the bytes read so far; it returns `Ok(None)` (incomplete: read more and
//! call again, nothing consumed), `Ok(Some(frame))` (one packet consumed from the front), or
//! an error (the connection is broken: close it). Layouts from ajpv13a "Response Packet
//! Structure" and Tomcat `AjpProcessor` (`prepareResponse`, `writeData`, the end, flush and
//! pong message arrays); the SEND_BODY_CHUNK length check is httpd's `ajp_parse_data`.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::error::DecodeError;
use crate::header_codes;
use crate::reader::Reader;
use crate::wire::{self, PacketSize};

/// The status line and headers of a response (SEND_HEADERS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status.
    pub status: StatusCode,
    /// The reason phrase (Tomcat sends the status number; may be null).
    pub reason: Option<Bytes>,
    /// Headers in order; coded names decoded.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// One message from the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SEND_HEADERS (4).
    SendHeaders(ResponseHead),
    /// SEND_BODY_CHUNK (3); an empty chunk is a flush.
    SendBodyChunk(Bytes),
    /// GET_BODY_CHUNK (6): the container wants at most this many body bytes.
    GetBodyChunk(u16),
    /// END_RESPONSE (5): whether the connection may be reused.
    EndResponse {
        /// Reuse byte = 1.
        reuse: bool,
    },
    /// CPONG (9).
    Cpong,
}

/// Decodes one packet from the front of `buf`; see the module doc. The packet size bounds
/// the announced length, so a hostile length never makes the caller buffer more.
pub fn decode(buf: &mut BytesMut, size: PacketSize) -> Result<Option<Frame>, DecodeError> {
    let Some(len) = packet_len(buf, size)? else {
        return Ok(None);
    };
    buf.advance(wire::HEADER_LEN);
    let payload = buf.split_to(len).freeze();
    parse(payload).map(Some)
}

/// Checks the header at the front of `buf`: `Ok(None)` until the whole packet is there,
/// else its payload length. Errors as soon as the header is wrong (before the payload arrives).
pub fn packet_len(buf: &[u8], size: PacketSize) -> Result<Option<usize>, DecodeError> {
    match payload_len(buf, wire::MAGIC_FROM_CONTAINER, size)? {
        Some(0) => Err(DecodeError::Empty),
        len => Ok(len),
    }
}

/// Checks a packet header with `magic` at the front of `buf`: `Ok(None)` until the whole
/// packet is there, else its payload length (possibly 0). Errors as soon as the magic or the
/// announced length is wrong. Both directions of the codec frame packets this way.
pub(crate) fn payload_len(
    buf: &[u8],
    magic: [u8; 2],
    size: PacketSize,
) -> Result<Option<usize>, DecodeError> {
    match buf.get(..2) {
        None => return Ok(None),
        Some(&[a, b]) if [a, b] != magic => {
            return Err(DecodeError::BadMagic(a, b));
        }
        Some(_) => {}
    }
    let Some(l) = buf.get(2..4) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
    if len > size.max_payload() {
        return Err(DecodeError::Oversize {
            len,
            max: size.max_payload(),
        });
    }
    if buf.len() < wire::HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some(len))
}

/// Decodes one complete payload (type byte first).
fn parse(payload: Bytes) -> Result<Frame, DecodeError> {
    let packet = payload.len();
    let mut r = Reader::new(payload);
    let frame = match r.u8("message type")? {
        wire::SEND_HEADERS => {
            let head = parse_head(&mut r)
                .and_then(|head| r.finish("SEND_HEADERS").map(|()| head))
                .map_err(|e| DecodeError::Head(Box::new(e)))?;
            Frame::SendHeaders(head)
        }
        wire::SEND_BODY_CHUNK => {
            let chunk = usize::from(r.u16("chunk length")?);
            // type + u16 length + chunk + the trailing byte Tomcat always writes.
            if packet != chunk + 4 {
                return Err(DecodeError::ChunkLength { chunk, packet });
            }
            let data = r.bytes(chunk, "body chunk")?;
            r.u8("body chunk terminator")?;
            Frame::SendBodyChunk(data)
        }
        wire::GET_BODY_CHUNK => {
            let n = r.u16("requested length")?;
            r.finish("GET_BODY_CHUNK")?;
            Frame::GetBodyChunk(n)
        }
        wire::END_RESPONSE => {
            // "anything other than 0" (ajpv13a); Tomcat sends 1 or 0.
            let reuse = r.u8("reuse flag")? != 0;
            r.finish("END_RESPONSE")?;
            Frame::EndResponse { reuse }
        }
        wire::CPONG => {
            r.finish("CPONG")?;
            Frame::Cpong
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(frame)
}

fn parse_head(r: &mut Reader) -> Result<ResponseHead, DecodeError> {
    let code = r.u16("status")?;
    let status = StatusCode::from_u16(code).map_err(|_| DecodeError::InvalidStatus(code))?;
    let reason = r.opt_string("reason phrase")?;
    let n = r.u16("header count")?;
    let mut headers = Vec::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        let peek = r.peek_u16("header name")?;
        let name = if peek & 0xFF00 == 0xA000 {
            r.u16("header name")?;
            header_codes::response_name(peek).ok_or(DecodeError::UnknownHeaderCode(peek))?
        } else {
            let raw = r.string("header name")?;
            HeaderName::from_bytes(&raw)
                .map_err(|_| DecodeError::InvalidHeader(format!("name {:?}", escape(&raw))))?
        };
        let raw = r.string("header value")?;
        let value = HeaderValue::from_maybe_shared(raw.clone()).map_err(|_| {
            DecodeError::InvalidHeader(format!("value of {name}: {:?}", escape(&raw)))
        })?;
        headers.push((name, value));
    }
    Ok(ResponseHead {
        status,
        reason,
        headers,
    })
}

/// Escapes at most 64 bytes for an error message (container bytes are untrusted).
fn escape(b: &[u8]) -> String {
    b.iter()
        .take(64)
        .flat_map(|c| std::ascii::escape_default(*c))
        .map(char::from)
        .collect()
}
