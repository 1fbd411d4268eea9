//! Ambiguous HTTP/1 framing detection. hyper handles a request with both Content-Length and
//! Transfer-Encoding by the RFC's other option (framed by Transfer-Encoding, Content-Length
//! dropped, connection closed after); keel refuses such a request instead, so it must see what
//! hyper hides. [`Sniff`] wraps the client stream and follows the HTTP/1 framing of the bytes
//! hyper reads (heads, Content-Length bodies, chunked bodies); a head with both headers sets
//! the connection's flag, and the proxy answers 400. On anything it does not follow (HTTP/2
//! preface, an upgrade, a malformed chunk, an over-long line) it stops watching: hyper's own
//! parser stays the authority.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head; `first` until the request line is done.
    Head { first: bool },
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// In the trailer section.
    Trailers,
    /// Not following any more.
    Off,
}

/// The framing follower, sans IO.
#[derive(Debug)]
pub struct Follower {
    state: State,
    line: Vec<u8>,
    content_length: Option<u64>,
    chunked: bool,
    te: bool,
    upgrade: bool,
    /// Set when a head had both Content-Length and Transfer-Encoding.
    pub ambiguous: bool,
    /// How many whole heads have been read.
    heads: u64,
}

impl Default for Follower {
    fn default() -> Self {
        Self {
            state: State::Head { first: true },
            line: Vec::new(),
            content_length: None,
            chunked: false,
            te: false,
            upgrade: false,
            ambiguous: false,
            heads: 0,
        }
    }
}

impl Follower {
    /// Follows these bytes.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Body(n) | State::ChunkData(n) if n > 0 => {
                    let take = data.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    data = data.get(take..).unwrap_or_default();
                    let left = n.saturating_sub(u64::try_from(take).unwrap_or(u64::MAX));
                    self.state = match self.state {
                        State::Body(_) if left == 0 => State::Head { first: true },
                        State::Body(_) => State::Body(left),
                        _ => State::ChunkData(left),
                    };
                }
                State::Body(_) => self.state = State::Head { first: true },
                State::ChunkData(_) | State::Head { .. } | State::ChunkSize | State::Trailers => {
                    let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > MAX_LINE {
                            self.state = State::Off;
                        }
                        return;
                    };
                    let (head, rest) = data.split_at(pos);
                    data = rest.get(1..).unwrap_or_default();
                    if self.line.is_empty() {
                        // The usual case: the whole line is in this read; no copy.
                        self.on_line(strip_cr(head));
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(head);
                        self.on_line(strip_cr(&line));
                        line.clear();
                        self.line = line; // keeps its capacity
                    }
                }
            }
        }
    }

    /// Bytes of a head have come, and not yet all of it.
    fn in_head(&self) -> bool {
        match self.state {
            State::Head { first: true } => !self.line.is_empty(),
            State::Head { first: false } => true,
            _ => false,
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        match self.state {
            State::Head { first: true } => {
                if line.is_empty() {
                    return; // stray CRLF between requests
                }
                if line.starts_with(b"PRI * HTTP/2.0") {
                    self.state = State::Off;
                    return;
                }
                self.content_length = None;
                self.chunked = false;
                self.te = false;
                self.upgrade = line.starts_with(b"CONNECT ");
                self.state = State::Head { first: false };
            }
            State::Head { first: false } if line.is_empty() => {
                self.heads += 1;
                if self.te && self.content_length.is_some() {
                    self.ambiguous = true;
                }
                self.state = if self.upgrade {
                    State::Off
                } else if self.te {
                    if self.chunked {
                        State::ChunkSize
                    } else {
                        State::Off
                    }
                } else {
                    match self.content_length {
                        Some(n) if n > 0 => State::Body(n),
                        _ => State::Head { first: true },
                    }
                };
            }
            State::Head { first: false } => {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    return;
                };
                let (name, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default().trim_ascii();
                if name.eq_ignore_ascii_case(b"content-length") {
                    self.content_length = Some(number(value, 10).unwrap_or(0));
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    self.te = true;
                    self.chunked = value
                        .rsplit(|&b| b == b',')
                        .next()
                        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                } else if name.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade = true;
                }
            }
            State::ChunkSize => {
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                match number(size.trim_ascii(), 16) {
                    Some(0) => self.state = State::Trailers,
                    // data, then the CRLF after it (read as an empty line)
                    Some(n) => self.state = State::ChunkData(n),
                    None => self.state = State::Off,
                }
            }
            State::ChunkData(_) => {
                // The line ending a chunk's data.
                self.state = if line.is_empty() {
                    State::ChunkSize
                } else {
                    State::Off
                };
            }
            State::Trailers if line.is_empty() => self.state = State::Head { first: true },
            State::Trailers => {}
            State::Body(_) | State::Off => {}
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn number(digits: &[u8], radix: u32) -> Option<u64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| u64::from_str_radix(s, radix).ok())
}

/// A client stream whose read side is followed for ambiguous framing.
pub struct Sniff<T> {
    inner: T,
    follower: Follower,
    flag: Arc<AtomicBool>,
}

impl<T> Sniff<T> {
    /// Wraps `inner`; `flag` turns true when an ambiguous head was read.
    pub fn new(inner: T, flag: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            follower: Follower::default(),
            flag,
        }
    }

    /// Wraps `inner` without following anything (HTTP/2 by ALPN).
    pub fn off(inner: T) -> Self {
        Self {
            inner,
            follower: Follower {
                state: State::Off,
                ..Follower::default()
            },
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Part of a request head has been read, not yet the whole of it.
    pub fn in_head(&self) -> bool {
        self.follower.in_head()
    }

    /// How many whole request heads have been read.
    pub fn heads(&self) -> u64 {
        self.follower.heads
    }

    /// Whether the framing is still followed (not after HTTP/2's preface, an upgrade, or
    /// anything else it gave up on).
    pub fn following(&self) -> bool {
        self.follower.state != State::Off
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniff<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            this.follower.feed(&buf.filled()[before..]);
            if this.follower.ambiguous {
                this.flag.store(true, Ordering::Release);
            }
        }
        r
    }
}

write_through!(Sniff);

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(parts: &[&[u8]]) -> Follower {
        let mut f = Follower::default();
        for p in parts {
            f.feed(p);
        }
        f
    }

    #[test]
    fn both_headers_are_ambiguous_in_any_order_and_split() {
        let req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for cut in 0..req.len() {
            let f = follow(&[&req[..cut], &req[cut..]]);
            assert!(f.ambiguous, "cut at {cut}");
        }
        let f = follow(&[
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
        ]);
        assert!(f.ambiguous);
    }

    #[test]
    fn bodies_are_skipped_so_their_bytes_are_not_headers() {
        // A CL body and a chunked body whose data looks like a head with both headers.
        let evil = b"X: y\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut req =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", evil.len()).into_bytes();
        req.extend_from_slice(evil);
        req.extend_from_slice(
            format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                evil.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(evil);
        req.extend_from_slice(b"\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        for cut in 0..req.len() {
            let f = follow(&[&req[..cut], &req[cut..]]);
            assert!(!f.ambiguous, "false positive at cut {cut}");
            assert_eq!(f.state, State::Head { first: true }, "cut {cut}");
        }
    }

    #[test]
    fn a_head_ends_at_its_blank_line_even_when_more_follows() {
        let mut f = Follower::default();
        assert!(!f.in_head(), "nothing read yet");
        f.feed(b"GET / HTTP/1.1\r\nHo");
        assert!(f.in_head());
        assert_eq!(f.heads, 0);
        f.feed(b"st: a\r\n\r\nGET /next HT");
        assert_eq!(f.heads, 1, "the first head is whole");
        assert!(f.in_head(), "in the next one");
        f.feed(b"TP/1.1\r\n\r\n");
        assert_eq!(f.heads, 2);
        assert!(!f.in_head());
        let h2 = follow(&[b"PRI * HTTP/2.0\r\n"]);
        assert!(!h2.in_head() && h2.state == State::Off);
    }

    #[test]
    fn h2_preface_stops_following() {
        let f = follow(&[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ncontent-length: 1\r\ntransfer-encoding: x\r\n\r\n",
        ]);
        assert!(!f.ambiguous);
        assert_eq!(f.state, State::Off);
    }
}
