//! What can go wrong on the answer side: bytes that are not the meta protocol
//! ([`DecodeError`]: the connection must be closed) and the error lines memcached sends on
//! purpose ([`ErrorReply`]: well framed, but the command failed).

/// Bytes from a memcached node that break the protocol. The connection is in an unknown
/// state: close it and count the failure against the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `\r\n` within the longest response line the decoder accepts.
    #[error("no line end within {max} bytes of a memcached response")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// A byte that is neither printable ASCII nor a space in a response line.
    #[error("byte {byte:#04x} at offset {at} of a memcached response line")]
    NotText {
        /// The byte.
        byte: u8,
        /// Its offset in the line.
        at: usize,
    },
    /// A response code the meta protocol does not have.
    #[error("unknown memcached response {0:?}")]
    UnknownResponse(String),
    /// `VA` without a valid decimal length.
    #[error("bad value length {0:?} in a VA response")]
    BadLength(String),
    /// `VA` announcing more than the configured maximum (nothing is buffered for it).
    #[error("VA announces {len} bytes, more than the maximum {max}")]
    ValueTooLarge {
        /// The announced length.
        len: u64,
        /// The maximum.
        max: usize,
    },
    /// A flag that does not start with a letter.
    #[error("bad flag {0:?} in a memcached response")]
    BadFlag(String),
    /// The data block of `VA` not followed by `\r\n`.
    #[error("VA data block of {0} bytes not followed by CRLF")]
    MissingDataTerminator(usize),
}

/// An error line from memcached ("Error strings" in protocol.txt). The line is consumed and
/// the response is well framed, but the command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorReply {
    /// `ERROR`: memcached does not know the command (a client bug).
    #[error("memcached answered ERROR (unknown command)")]
    UnknownCommand,
    /// `CLIENT_ERROR <message>`: the command line was malformed (a client bug).
    #[error("memcached answered CLIENT_ERROR {0}")]
    Client(String),
    /// `SERVER_ERROR <message>`: memcached could not carry it out (out of memory, item too
    /// large); it may close the connection after this.
    #[error("memcached answered SERVER_ERROR {0}")]
    Server(String),
}
