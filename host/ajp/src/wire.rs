//! AJP/1.3 framing: magic bytes, message type codes, the packet size, and the primitive
//! encodings (u8, u16 big endian, bool, string with its null form), with the decimal text of a
//! number that some strings carry (ports, address octets).
//!
//! Sources: tomcat-connectors `xdocs/ajp/ajpv13a.xml` ("Packet Format", "Data types");
//! Tomcat `java/org/apache/coyote/ajp/Constants.java`, `AjpMessage.java`.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;

/// Magic of a packet from the proxy to the container: `0x12 0x34`.
pub const MAGIC_TO_CONTAINER: [u8; 2] = [0x12, 0x34];
/// Magic of a packet from the container to the proxy: `'A' 'B'`.
pub const MAGIC_FROM_CONTAINER: [u8; 2] = [b'A', b'B'];
/// Packet header: two magic bytes and a u16 payload length.
pub const HEADER_LEN: usize = 4;
/// The u16 length that stands for a null string.
pub const NULL_STRING: u16 = 0xFFFF;

/// Message type: forward request (proxy → container).
pub const FORWARD_REQUEST: u8 = 2;
/// Message type: CPING (proxy → container).
pub const CPING: u8 = 10;
/// Message type: a body chunk of the response (container → proxy).
pub const SEND_BODY_CHUNK: u8 = 3;
/// Message type: response status and headers (container → proxy).
pub const SEND_HEADERS: u8 = 4;
/// Message type: end of the response, with the reuse flag (container → proxy).
pub const END_RESPONSE: u8 = 5;
/// Message type: the container asks for more request body (container → proxy).
pub const GET_BODY_CHUNK: u8 = 6;
/// Message type: the answer to CPING (container → proxy).
pub const CPONG: u8 = 9;

/// The AJP packet size, header included: Tomcat's `packetSize` (8192 by default, at most
/// 65536). Both ends must agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketSize(usize);

impl PacketSize {
    /// The protocol default and Tomcat's default, 8192.
    pub const DEFAULT: PacketSize = PacketSize(8192);
    /// The smallest size accepted (Tomcat raises anything smaller to 8192).
    pub const MIN: usize = 8192;
    /// The largest size accepted (Tomcat's limit; the u16 length field allows no more).
    pub const MAX: usize = 65536;

    /// A packet size in 8192..=65536.
    pub fn new(size: usize) -> Result<Self, EncodeError> {
        if (Self::MIN..=Self::MAX).contains(&size) {
            Ok(PacketSize(size))
        } else {
            Err(EncodeError::PacketSize(size))
        }
    }

    /// The size in bytes, header included.
    pub fn get(self) -> usize {
        self.0
    }

    /// The most payload bytes one packet carries (size − 4 header bytes).
    pub fn max_payload(self) -> usize {
        self.0 - HEADER_LEN
    }

    /// The most request body bytes in one data packet: size − 4 (header) − 2 (chunk length),
    /// what Tomcat asks for in GET_BODY_CHUNK (`Constants.READ_HEAD_LEN` = 6).
    pub fn max_request_chunk(self) -> usize {
        self.0 - 6
    }
}

impl Default for PacketSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Starts a packet to the container: magic and a placeholder length. Returns the offset of
/// the packet in `buf`, for [`finish_packet`].
pub(crate) fn start_packet(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_slice(&MAGIC_TO_CONTAINER);
    buf.put_u16(0);
    start
}

/// Writes the payload length of the packet that starts at `start`, checking it against the
/// packet size. On error the partial packet is removed from `buf`.
pub(crate) fn finish_packet(
    buf: &mut BytesMut,
    start: usize,
    size: PacketSize,
) -> Result<(), EncodeError> {
    let total = buf.len() - start;
    if total > size.get() {
        buf.truncate(start);
        return Err(EncodeError::TooLarge {
            needed: total,
            max: size.get(),
        });
    }
    let payload = (total - HEADER_LEN) as u16;
    buf[start + 2..start + 4].copy_from_slice(&payload.to_be_bytes());
    Ok(())
}

/// Appends an AJP string: u16 length, the bytes, a NUL (the length excludes the NUL).
/// A string of 0xFFFF bytes or more, or one with a NUL inside, cannot be encoded.
pub(crate) fn put_string(
    buf: &mut BytesMut,
    s: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    if s.len() >= usize::from(NULL_STRING) {
        return Err(EncodeError::StringTooLong { what, len: s.len() });
    }
    if s.contains(&0) {
        return Err(EncodeError::Nul { what });
    }
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
    buf.put_u8(0);
    Ok(())
}

/// Appends an optional AJP string: `None` is the null string (`0xFFFF`, no bytes, no NUL).
pub(crate) fn put_opt_string(
    buf: &mut BytesMut,
    s: Option<&[u8]>,
    what: &'static str,
) -> Result<(), EncodeError> {
    match s {
        Some(s) => put_string(buf, s, what),
        None => {
            buf.put_u16(NULL_STRING);
            Ok(())
        }
    }
}

/// `n` in decimal, written into `digits` (no allocation per request).
pub(crate) fn decimal(mut n: u16, digits: &mut [u8; 5]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn ports_in_decimal() {
        for (port, text) in [
            (0, "0"),
            (7, "7"),
            (80, "80"),
            (8009, "8009"),
            (65535, "65535"),
        ] {
            assert_eq!(decimal(port, &mut [0; 5]), text);
        }
    }
}
