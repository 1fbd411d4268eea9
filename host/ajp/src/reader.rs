//! A bounds-checked cursor over one packet's payload: every read either succeeds or says
//! which field was truncated. Never panics, whatever the bytes.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::wire::NULL_STRING;

/// Reads fields from a payload.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn peek_u16(&self, what: &'static str) -> Result<u16, DecodeError> {
        match self.buf.get(self.pos..self.pos + 2) {
            Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
            None => Err(DecodeError::Truncated(what)),
        }
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let v = self.peek_u16(what)?;
        self.pos += 2;
        Ok(v)
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// An AJP string: `None` for the null string (0xFFFF).
    pub(crate) fn opt_string(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let len = self.u16(what)?;
        if len == NULL_STRING {
            return Ok(None);
        }
        let s = self.bytes(usize::from(len), what)?;
        if self.u8(what)? != 0 {
            return Err(DecodeError::MissingNul(what));
        }
        Ok(Some(s))
    }

    /// An AJP string that must not be null.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        self.opt_string(what)?.ok_or(DecodeError::NullString(what))
    }

    /// Fails if bytes are left over.
    pub(crate) fn finish(&self, message: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { message, extra }),
        }
    }
}
