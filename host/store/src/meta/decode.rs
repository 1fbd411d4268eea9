//! Decoding meta responses from input that may end at any byte.
//!
//! [`decode`] looks at the bytes read so far: `Ok(None)` means incomplete (nothing consumed;
//! read more and call again), `Ok(Some(response))` consumed exactly one response from the
//! front, and an error means the connection is broken. A `VA` length above
//! [`Limits::max_value`] is refused as soon as its line is complete, before any of the data
//! is buffered; a line without `\r\n` within [`Limits::max_line`] bytes likewise.

use bytes::{Buf, Bytes, BytesMut};

use crate::meta::error::{DecodeError, ErrorReply};

/// The default largest `VA` data block: memcached's default item size (1 MiB) plus the store's
/// envelope (2 bytes of header and a route of at most 255 bytes).
pub const DEFAULT_MAX_VALUE: usize = 1024 * 1024 + 2 + 255;

/// Bounds on what the decoder buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest `VA` data block.
    pub max_value: usize,
    /// The longest response line, `\r\n` included (a 250-byte key echoed by `k` and a few
    /// flags fit in far less than the default).
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value: DEFAULT_MAX_VALUE,
            max_line: 1024,
        }
    }
}

/// One returned flag: its letter and its token (`c123` is `c` with token `123`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The flag's letter.
    pub code: u8,
    /// What follows the letter (may be empty).
    pub token: String,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `VA <len> <flags>*` and its data block (a hit of `mg … v`).
    Value {
        /// The data block.
        data: Bytes,
        /// The flags.
        flags: Vec<Flag>,
    },
    /// `HD <flags>*`: success (stored, deleted, or a hit without `v`).
    Done(Vec<Flag>),
    /// `EN`: a miss of `mg`.
    Miss(Vec<Flag>),
    /// `NS`: not stored (an add whose key exists, a replace whose key does not).
    NotStored(Vec<Flag>),
    /// `EX`: the compared CAS token does not match.
    Exists(Vec<Flag>),
    /// `NF`: not found (a CAS write or a delete of an absent key).
    NotFound(Vec<Flag>),
    /// `MN`: the answer to `mn`.
    Noop,
    /// `ERROR`, `CLIENT_ERROR …` or `SERVER_ERROR …`.
    Error(ErrorReply),
}

impl Response {
    /// The flags returned with the response (none for `MN` and errors).
    pub fn flags(&self) -> &[Flag] {
        match self {
            Response::Value { flags, .. }
            | Response::Done(flags)
            | Response::Miss(flags)
            | Response::NotStored(flags)
            | Response::Exists(flags)
            | Response::NotFound(flags) => flags,
            Response::Noop | Response::Error(_) => &[],
        }
    }

    /// The token of flag `code`, if returned.
    pub fn flag(&self, code: u8) -> Option<&str> {
        self.flags()
            .iter()
            .find(|f| f.code == code)
            .map(|f| f.token.as_str())
    }

    /// The CAS token (`c` flag), if returned and numeric.
    pub fn cas(&self) -> Option<u64> {
        self.flag(b'c')?.parse().ok()
    }
}

/// Decodes one response from the front of `buf`; see the module doc.
pub fn decode(buf: &mut BytesMut, limits: Limits) -> Result<Option<Response>, DecodeError> {
    let window = &buf[..buf.len().min(limits.max_line)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= limits.max_line {
            return Err(DecodeError::LineTooLong {
                max: limits.max_line,
            });
        }
        return Ok(None);
    };
    let line = &buf[..end];
    if let Some((at, &byte)) = line
        .iter()
        .enumerate()
        .find(|(_, b)| !(0x20..=0x7E).contains(*b))
    {
        return Err(DecodeError::NotText { byte, at });
    }
    // Checked above: printable ASCII.
    let line = String::from_utf8_lossy(line).into_owned();
    let (code, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
    let line_len = end + 2;
    let response = match code {
        "VA" => {
            let mut tokens = rest.split(' ').filter(|t| !t.is_empty());
            let len_token = tokens.next().unwrap_or("");
            let len = parse_len(len_token)?;
            if len > limits.max_value as u64 {
                return Err(DecodeError::ValueTooLarge {
                    len,
                    max: limits.max_value,
                });
            }
            let len = len as usize;
            let flags = flags(tokens)?;
            if buf.len() < line_len + len + 2 {
                return Ok(None);
            }
            if &buf[line_len + len..line_len + len + 2] != b"\r\n" {
                return Err(DecodeError::MissingDataTerminator(len));
            }
            buf.advance(line_len);
            let data = buf.split_to(len).freeze();
            buf.advance(2);
            return Ok(Some(Response::Value { data, flags }));
        }
        "HD" => Response::Done(flags(tokens(rest))?),
        "EN" => Response::Miss(flags(tokens(rest))?),
        "NS" => Response::NotStored(flags(tokens(rest))?),
        "EX" => Response::Exists(flags(tokens(rest))?),
        "NF" => Response::NotFound(flags(tokens(rest))?),
        "MN" if rest.is_empty() => Response::Noop,
        "ERROR" => Response::Error(ErrorReply::UnknownCommand),
        "CLIENT_ERROR" => Response::Error(ErrorReply::Client(rest.to_owned())),
        "SERVER_ERROR" => Response::Error(ErrorReply::Server(rest.to_owned())),
        _ => return Err(DecodeError::UnknownResponse(truncate(&line))),
    };
    buf.advance(line_len);
    Ok(Some(response))
}

fn tokens(rest: &str) -> impl Iterator<Item = &str> {
    rest.split(' ').filter(|t| !t.is_empty())
}

fn parse_len(token: &str) -> Result<u64, DecodeError> {
    if token.is_empty() || token.len() > 19 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::BadLength(truncate(token)));
    }
    token
        .parse()
        .map_err(|_| DecodeError::BadLength(truncate(token)))
}

fn flags<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Vec<Flag>, DecodeError> {
    tokens
        .map(|t| {
            let code = t.as_bytes()[0];
            if !code.is_ascii_alphabetic() {
                return Err(DecodeError::BadFlag(truncate(t)));
            }
            Ok(Flag {
                code,
                token: t[1..].to_owned(),
            })
        })
        .collect()
}

/// At most 64 characters of a (printable) line for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
