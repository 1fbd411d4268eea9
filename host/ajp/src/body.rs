//! Packets after the forward request: request body chunks and CPING.
//!
//! A data packet is the magic, a u16 payload length, a u16 chunk length and the bytes (the
//! payload length is chunk length + 2); one carries at most packet size − 6 bytes. An empty
//! packet (`12 34 00 00`) ends the body; Tomcat's `AjpProcessor.receive` takes a zero
//! payload or a zero chunk length as the end.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::wire::{self, PacketSize};

/// CPING: `12 34 00 01 0A`.
pub const CPING_PACKET: [u8; 5] = [0x12, 0x34, 0x00, 0x01, wire::CPING];

/// The empty data packet that ends a request body: `12 34 00 00`.
pub const END_OF_BODY: [u8; 4] = [0x12, 0x34, 0x00, 0x00];

/// Appends one body chunk packet. An empty `chunk` appends [`END_OF_BODY`].
pub fn encode_body_chunk(
    buf: &mut BytesMut,
    chunk: &[u8],
    size: PacketSize,
) -> Result<(), EncodeError> {
    if chunk.is_empty() {
        buf.put_slice(&END_OF_BODY);
        return Ok(());
    }
    let max = size.max_request_chunk();
    if chunk.len() > max {
        return Err(EncodeError::ChunkTooLarge {
            len: chunk.len(),
            max,
        });
    }
    buf.reserve(6 + chunk.len());
    buf.put_slice(&wire::MAGIC_TO_CONTAINER);
    buf.put_u16(chunk.len() as u16 + 2);
    buf.put_u16(chunk.len() as u16);
    buf.put_slice(chunk);
    Ok(())
}

/// Appends a CPING packet.
pub fn encode_cping(buf: &mut BytesMut) {
    buf.put_slice(&CPING_PACKET);
}
