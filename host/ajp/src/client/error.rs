//! Client errors. Each says whether the request may have reached the member (retry
//! safety), whether it counts against the member's health (a client's fault never does) and
//! which status the client should get.

use std::time::Duration;

use http::StatusCode;

use crate::error::{DecodeError, EncodeError};

/// Why an exchange with a member failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed. Nothing sent; counts; 502.
    #[error("connect to AJP member failed: {0}")]
    Connect(std::io::Error),
    /// TCP connect did not finish in time. Nothing sent; counts; 504.
    #[error("connect to AJP member timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// CPING got no CPONG (error, wrong answer or timeout). Nothing sent; counts; 502.
    #[error("CPING failed: {0}")]
    Cping(String),
    /// No CPONG within the CPING timeout: the member is hung or out of threads (Tomcat
    /// answers CPING on a worker thread). Nothing sent; counts; 504.
    #[error("no CPONG within {0:?}: the member is hung or has no free thread")]
    CpingTimeout(Duration),
    /// The member's response head cannot be read: valid framing, invalid content (most
    /// likely response headers larger than the packet size: Tomcat drops a header that does
    /// not fit but keeps its count). The same request fails the same way on any member: sent;
    /// does not count; no failover; 502.
    #[error("unreadable response head from AJP member: {0}")]
    BadHead(DecodeError),
    /// A pooled connection turned out closed when the request was written to it, and so did
    /// the new connection tried next. Nothing was processed; does not count; 502.
    #[error("pooled AJP connection was closed by the member: {0}")]
    Stale(String),
    /// A pooled connection was closed (or reset) by the member after the request was
    /// written, before any answer: an idle close racing the request, or a member that died
    /// processing it. Sent (only an idempotent request may be retried); does not count (the
    /// next attempt or health check tells); 502.
    #[error("pooled AJP connection closed before any answer: {0}")]
    Unanswered(String),
    /// No free connection within the wait timeout (max_connections reached). Nothing sent;
    /// does not count; 503.
    #[error("no free AJP connection within {0:?}")]
    PoolTimeout(Duration),
    /// The request does not fit AJP (headers exceed the packet size: 413; NUL bytes and
    /// the like: 400 — httpd answers every `AJP_EOVERFLOW` with 400). Nothing sent; does not
    /// count.
    #[error("request cannot be sent over AJP: {0}")]
    Unencodable(EncodeError),
    /// Ambiguous body framing (Content-Length with Transfer-Encoding, or two lengths).
    /// Nothing sent; does not count; 400.
    #[error("ambiguous request body framing: {0}")]
    Framing(&'static str),
    /// The request body was taken by an earlier attempt. Nothing sent; does not count; 502.
    #[error("request body already consumed by an earlier attempt")]
    BodyUnavailable,
    /// Writing to the member failed. Sent (perhaps partly); counts; 502.
    #[error("writing to AJP member failed: {0}")]
    Write(std::io::Error),
    /// Reading from the member failed. Sent; counts; 502.
    #[error("reading from AJP member failed: {0}")]
    Read(std::io::Error),
    /// The member closed the connection before END_RESPONSE. Sent; counts; 502.
    #[error("AJP member closed the connection before the end of the response")]
    Truncated,
    /// No SEND_HEADERS within the response timeout. Sent; counts; 504.
    #[error("no response from AJP member within {0:?}")]
    ResponseTimeout(Duration),
    /// The member broke the protocol. Sent; counts; 502. The connection was closed.
    #[error("AJP protocol violation by member: {0}")]
    Protocol(ProtocolViolation),
    /// The client's request body failed or came up short. Sent; never counts; 400. The
    /// backend connection was closed (CVE-2008-5519).
    #[error("client request body failed: {0}")]
    ClientBody(String),
    /// The exchange task went away (runtime shutting down). Sent; does not count; 502.
    #[error("AJP exchange aborted")]
    Aborted,
}

/// What a member did wrong.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolViolation {
    /// Undecodable bytes (bad magic, oversize, unknown type, malformed message).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message that is valid but not allowed at this point.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
}

impl ClientError {
    /// Whether any of the request may have reached the member.
    pub fn was_sent(&self) -> bool {
        !matches!(
            self,
            Self::Connect(_)
                | Self::ConnectTimeout(_)
                | Self::Cping(_)
                | Self::CpingTimeout(_)
                | Self::Stale(_)
                | Self::PoolTimeout(_)
                | Self::Unencodable(_)
                | Self::Framing(_)
                | Self::BodyUnavailable
        )
    }

    /// Whether the failure counts against the member's health.
    pub fn counts_against_member(&self) -> bool {
        matches!(
            self,
            Self::Connect(_)
                | Self::ConnectTimeout(_)
                | Self::Cping(_)
                | Self::CpingTimeout(_)
                | Self::Write(_)
                | Self::Read(_)
                | Self::Truncated
                | Self::ResponseTimeout(_)
                | Self::Protocol(_)
        )
    }

    /// Whether the client caused it (no failover: another member would fail the same way).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Unencodable(_) | Self::Framing(_) | Self::ClientBody(_)
        )
    }

    /// The status for the client when this is the last attempt.
    pub fn client_status(&self) -> StatusCode {
        match self {
            Self::ConnectTimeout(_) | Self::CpingTimeout(_) | Self::ResponseTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::PoolTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The head does not fit the packet: too many or too large header fields (httpd
            // answers 400, mod_jk 500; 431 names the cause), or a URI too long by itself.
            Self::Unencodable(
                EncodeError::TooLarge { .. } | EncodeError::TooManyHeaders { .. },
            ) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unencodable(EncodeError::UriTooLong { .. }) => StatusCode::URI_TOO_LONG,
            Self::Unencodable(_) | Self::Framing(_) | Self::ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> Self {
        ClientError::Protocol(ProtocolViolation::Decode(e))
    }
}
