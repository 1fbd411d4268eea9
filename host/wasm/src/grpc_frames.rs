//! gRPC's length-prefixed messages on HTTP/2 (gRPC `PROTOCOL-HTTP2.md`: a compressed-flag byte,
//! a 4-byte big-endian length, the message): framing one, and taking them back out of DATA
//! frames that may split a message or carry several, as Envoy's `Grpc::Decoder`
//! (`source/common/grpc/codec.cc`) does for its async stream (`source/common/grpc/
//! async_client_impl.cc` `AsyncStreamImpl::onData`). The length a peer announces is checked
//! against [`MAX_MESSAGE`] before any byte of the message is kept, and the buffer only ever
//! holds bytes that arrived.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest message keel takes from a gRPC stream: gRPC's default maximum receive message
/// size (4 MiB, `GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH`). Envoy's async client bounds it with
/// `max_receive_message_length`.
pub(crate) const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The prefix: the compressed flag and the length.
const PREFIX: usize = 5;

/// One message with its prefix (uncompressed); `None` when it is longer than a prefix can say.
pub(crate) fn frame(message: &[u8]) -> Option<Bytes> {
    let length = u32::try_from(message.len()).ok()?;
    let mut framed = BytesMut::with_capacity(PREFIX + message.len());
    framed.put_u8(0);
    framed.put_u32(length);
    framed.extend_from_slice(message);
    Some(framed.freeze())
}

/// Why the messages of a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A message with content and the compressed flag: keel asks for no compression (Envoy
    /// `onData`: `frame.length_ > 0 && frame.flags_ != GRPC_FH_DEFAULT` is INTERNAL).
    Compressed,
    /// A message announced longer than [`MAX_MESSAGE`], with its length.
    TooLarge(u64),
}

/// The messages of one direction of a stream, from its DATA frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    pending: BytesMut,
    limit: usize,
}

impl Decoder {
    pub fn new(limit: usize) -> Self {
        Decoder {
            pending: BytesMut::new(),
            limit,
        }
    }

    /// Adds the bytes of one DATA frame.
    pub fn push(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    /// The next whole message, `Ok(None)` until one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, DecodeError> {
        let Some(prefix) = self.pending.get(..PREFIX) else {
            return Ok(None);
        };
        let flag = prefix[0];
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > self.limit {
            return Err(DecodeError::TooLarge(
                u64::try_from(length).unwrap_or(u64::MAX),
            ));
        }
        if length > 0 && flag != 0 {
            return Err(DecodeError::Compressed);
        }
        if self.pending.len() < PREFIX + length {
            return Ok(None);
        }
        self.pending.advance(PREFIX);
        Ok(Some(self.pending.split_to(length).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut Decoder) -> Result<Vec<Bytes>, DecodeError> {
        let mut messages = Vec::new();
        while let Some(message) = decoder.next_message()? {
            messages.push(message);
        }
        Ok(messages)
    }

    #[test]
    fn a_message_is_its_prefix_and_bytes() {
        assert_eq!(&frame(b"hi").expect("small")[..], b"\0\0\0\0\x02hi");
        assert_eq!(&frame(b"").expect("empty")[..], b"\0\0\0\0\0");
    }

    #[test]
    fn messages_split_across_frames_or_sharing_one_come_out_whole() {
        let mut decoder = Decoder::new(MAX_MESSAGE);
        let mut wire = Vec::new();
        for message in [&b"one"[..], b"", b"three"] {
            wire.extend_from_slice(&frame(message).expect("small"));
        }
        // Byte by byte: nothing until a message is whole.
        let mut seen = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            seen.extend(all(&mut decoder).expect("valid"));
        }
        assert_eq!(seen, [&b"one"[..], b"", b"three"]);
        // All in one frame.
        decoder.push(&wire);
        assert_eq!(all(&mut decoder).expect("valid").len(), 3);
        // A prefix alone is not a message.
        decoder.push(&wire[..4]);
        assert_eq!(decoder.next_message(), Ok(None));
    }

    #[test]
    fn an_announced_length_over_the_limit_is_refused_before_it_arrives() {
        let mut decoder = Decoder::new(8);
        decoder.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decoder.next_message(),
            Err(DecodeError::TooLarge(u64::from(u32::MAX)))
        );
        let mut decoder = Decoder::new(8);
        decoder.push(&frame(b"12345678").expect("small"));
        assert_eq!(all(&mut decoder).expect("at the limit").len(), 1);
    }

    #[test]
    fn a_compressed_message_is_refused_an_empty_one_is_not() {
        let mut decoder = Decoder::new(MAX_MESSAGE);
        decoder.push(&[1, 0, 0, 0, 0]);
        assert_eq!(decoder.next_message(), Ok(Some(Bytes::new())));
        decoder.push(&[1, 0, 0, 0, 1, b'x']);
        assert_eq!(decoder.next_message(), Err(DecodeError::Compressed));
    }
}
