//! Codec errors: what cannot be encoded (the client's request does not fit AJP) and what a
//! container sent that breaks the protocol.

/// A request that cannot be encoded. Nothing was sent; the client's request is at fault
/// (answer 400, as httpd's mod_proxy_ajp does for `AJP_EOVERFLOW`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed the configured packet size (AJP has no continuation packet).
    #[error("the forward request needs {needed} bytes, more than the AJP packet size {max}")]
    TooLarge {
        /// Bytes the packet would need, header included.
        needed: usize,
        /// The packet size.
        max: usize,
    },
    /// The URI alone (path and query) does not fit the packet.
    #[error("the request URI needs {needed} bytes, more than the AJP packet size {max} allows")]
    UriTooLong {
        /// Bytes the forward request would need with the URI and no header.
        needed: usize,
        /// The packet size.
        max: usize,
    },
    /// More header fields than the member accepts (Tomcat's `maxHeaderCount`, 100 by default:
    /// beyond it Tomcat answers 500 and closes the connection).
    #[error("{count} request headers, more than the {max} the member accepts")]
    TooManyHeaders {
        /// Header fields the forward request would carry.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A string is too long for its u16 length field.
    #[error("{what} is {len} bytes, too long for an AJP string")]
    StringTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A string contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which field.
        what: &'static str,
    },
    /// A packet size outside 8192..=65536.
    #[error("AJP packet size {0} is outside 8192..=65536")]
    PacketSize(usize),
    /// A body chunk larger than one data packet carries.
    #[error("body chunk of {len} bytes exceeds the {max} bytes one packet carries")]
    ChunkTooLarge {
        /// The chunk length.
        len: usize,
        /// The most one packet carries.
        max: usize,
    },
}

/// A container's bytes that break AJP/1.3. The connection must be closed, never reused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet does not start with `'A' 'B'`.
    #[error("bad magic {0:#04x} {1:#04x}, expected 'A' 'B'")]
    BadMagic(u8, u8),
    /// The payload length exceeds the packet size.
    #[error(
        "packet payload of {len} bytes exceeds the packet size (at most {max}): is the \
         container's packetSize larger than keel's balancer.ajp.packet_size?"
    )]
    Oversize {
        /// The announced payload length.
        len: usize,
        /// The most the packet size allows.
        max: usize,
    },
    /// A packet with no payload (no message type).
    #[error("empty packet")]
    Empty,
    /// A message type the container never sends.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The payload ends inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes left over after the message.
    #[error("{extra} bytes after the end of the {message} message")]
    TrailingBytes {
        /// The message type's name.
        message: &'static str,
        /// How many bytes are left.
        extra: usize,
    },
    /// A string without its terminating NUL.
    #[error("{0} is not NUL-terminated")]
    MissingNul(&'static str),
    /// A null string where a value is needed.
    #[error("{0} is null")]
    NullString(&'static str),
    /// A coded response header name outside 0xA001..=0xA00B.
    #[error("unknown coded response header {0:#06x}")]
    UnknownHeaderCode(u16),
    /// A header name or value not valid in HTTP.
    #[error("invalid response header: {0}")]
    InvalidHeader(String),
    /// A status code outside 100..=999.
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    /// A SEND_HEADERS packet, framed right, whose content is not a valid response head
    /// (Tomcat drops a header string that does not fit the packet but keeps the count: the
    /// usual cause is response headers larger than the packet size).
    #[error("bad SEND_HEADERS (response headers larger than the packet size?): {0}")]
    Head(Box<DecodeError>),
    /// SEND_BODY_CHUNK whose chunk length disagrees with the packet length.
    #[error("body chunk length {chunk} disagrees with the packet length {packet}")]
    ChunkLength {
        /// The chunk length field.
        chunk: usize,
        /// The packet's payload length.
        packet: usize,
    },
}
