//! [`BodyBuf`]: what a filter buffers of a body. A chunk that arrives while nothing is buffered
//! is kept as it came (a reference to the connection's buffer, no copy); the bytes are copied
//! only when a second chunk joins them or a filter changes them (`proxy_set_buffer_bytes`). A
//! body that goes through filters that only look at it (or not even that) is never copied.

use bytes::{Bytes, BytesMut};

/// A body buffer (see the module docs).
#[derive(Debug)]
pub(crate) enum BodyBuf {
    /// One chunk as it came, or nothing.
    Shared(Bytes),
    /// Chunks joined, or bytes a filter changed.
    Owned(BytesMut),
}

impl Default for BodyBuf {
    fn default() -> Self {
        BodyBuf::Shared(Bytes::new())
    }
}

impl BodyBuf {
    /// The buffered bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            BodyBuf::Shared(bytes) => bytes,
            BodyBuf::Owned(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Appends a chunk: kept as it is when nothing is buffered, else joined.
    pub fn push(&mut self, chunk: Bytes) {
        match self {
            BodyBuf::Shared(bytes) if bytes.is_empty() => *bytes = chunk,
            BodyBuf::Shared(bytes) => {
                let mut joined = BytesMut::with_capacity(bytes.len() + chunk.len());
                joined.extend_from_slice(bytes);
                joined.extend_from_slice(&chunk);
                *self = BodyBuf::Owned(joined);
            }
            BodyBuf::Owned(bytes) => bytes.extend_from_slice(&chunk),
        }
    }

    /// The bytes to change in place (copied out of a shared chunk first).
    pub fn make_mut(&mut self) -> &mut BytesMut {
        if let BodyBuf::Shared(bytes) = self {
            *self = BodyBuf::Owned(BytesMut::from(&bytes[..]));
        }
        match self {
            BodyBuf::Owned(bytes) => bytes,
            BodyBuf::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// Takes everything buffered, leaving the buffer empty.
    pub fn take(&mut self) -> Bytes {
        match std::mem::take(self) {
            BodyBuf::Shared(bytes) => bytes,
            BodyBuf::Owned(bytes) => bytes.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_passed_on_without_a_copy() {
        let chunk = Bytes::from_static(b"hello");
        let mut buf = BodyBuf::default();
        buf.push(chunk.clone());
        assert_eq!(buf.len(), 5);
        let out = buf.take();
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "the same bytes, not a copy");
        assert_eq!(buf.len(), 0);
    }

    #[test]
    fn chunks_join_and_changes_copy_first() {
        let mut buf = BodyBuf::default();
        buf.push(Bytes::from_static(b"hel"));
        buf.push(Bytes::from_static(b"lo"));
        assert_eq!(buf.as_slice(), b"hello");
        let mut one = BodyBuf::default();
        let chunk = Bytes::from_static(b"abc");
        one.push(chunk.clone());
        one.make_mut().extend_from_slice(b"d");
        assert_eq!(one.take(), Bytes::from_static(b"abcd"));
        assert_eq!(
            chunk,
            Bytes::from_static(b"abc"),
            "the shared chunk is untouched"
        );
    }
}
