//! A small scriptable AJP container for tests and benchmarks (feature `test-support`).
//!
//! It listens on 127.0.0.1 port 0, answers CPING, checks the secret like Tomcat (403 and
//! END_RESPONSE without reuse), records every forward request and body, and plays a script of
//! [`Action`]s per request — well-behaved ones, or hostile ones ([`Action::Raw`],
//! [`Action::Close`], [`Action::Hang`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::container::{self, ReceivedRequest};
use crate::wire::PacketSize;

/// One step of the server's answer.
#[derive(Debug, Clone)]
pub enum Action {
    /// Read the whole request body (the unsolicited first chunk, then GET_BODY_CHUNK until
    /// Content-Length is reached or an empty packet arrives).
    ReadBody,
    /// Ask for one chunk (GET_BODY_CHUNK) and read it.
    ReadOneChunk,
    /// SEND_HEADERS.
    Headers(StatusCode, Vec<(HeaderName, HeaderValue)>),
    /// SEND_BODY_CHUNK (empty = flush).
    Chunk(Bytes),
    /// Send the body read so far back, in packet-sized chunks.
    EchoBody,
    /// Wait.
    Sleep(Duration),
    /// END_RESPONSE.
    End {
        /// The reuse flag.
        reuse: bool,
    },
    /// Raw bytes, as they are.
    Raw(Bytes),
    /// Close the connection now.
    Close,
    /// Never answer again (keep the connection open).
    Hang,
}

/// Builds the script for a request.
pub type Handler = Arc<dyn Fn(&ReceivedRequest) -> Vec<Action> + Send + Sync>;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Packet size.
    pub packet_size: PacketSize,
    /// Required secret, if any.
    pub secret: Option<String>,
    /// Whether CPING is answered (else the connection is closed).
    pub answer_cping: bool,
    /// CPING is read and never answered, the connection kept open (a hung container).
    pub ignore_cping: bool,
    /// The script.
    pub handler: Handler,
}

impl ServerConfig {
    /// A server with the given secret and handler.
    pub fn new(
        secret: Option<&str>,
        handler: impl Fn(&ReceivedRequest) -> Vec<Action> + Send + Sync + 'static,
    ) -> Self {
        ServerConfig {
            packet_size: PacketSize::DEFAULT,
            secret: secret.map(str::to_owned),
            answer_cping: true,
            ignore_cping: false,
            handler: Arc::new(handler),
        }
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// The peer address of each connection accepted, in order.
    pub peers: Mutex<Vec<SocketAddr>>,
    /// CPINGs answered.
    pub cpings: AtomicU64,
    /// Forward requests, in order.
    pub requests: Mutex<Vec<ReceivedRequest>>,
    /// The request bodies read, in order of requests.
    pub bodies: Mutex<Vec<Bytes>>,
    /// Connections that ended because the peer (keel) closed them or a read or write on
    /// them failed — not those the script closed.
    pub peer_closed: AtomicU64,
}

/// A running test server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts listening on 127.0.0.1, port 0.
    pub async fn start(config: ServerConfig) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                s.connections.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut peers) = s.peers.lock() {
                    peers.push(peer);
                }
                tokio::spawn(serve(stream, config.clone(), s.clone()));
            }
        });
        Ok(TestServer { addr, seen, task })
    }

    /// A server that echoes: reads the body, answers 200 with it.
    pub async fn echo(secret: Option<&str>) -> std::io::Result<TestServer> {
        TestServer::start(ServerConfig::new(secret, |_| {
            vec![
                Action::ReadBody,
                Action::Headers(StatusCode::OK, vec![]),
                Action::EchoBody,
                Action::End { reuse: true },
            ]
        }))
        .await
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw.
    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::Relaxed)
    }

    /// Requests received so far (copies).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.seen
            .requests
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Bodies read so far (copies).
    pub fn bodies(&self) -> Vec<Bytes> {
        self.seen
            .bodies
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

struct Io {
    stream: TcpStream,
    buf: BytesMut,
    size: PacketSize,
}

impl Io {
    async fn packet(&mut self) -> Option<Bytes> {
        loop {
            match container::decode_from_proxy(&mut self.buf, self.size) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(_) => return None,
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn write(&mut self, b: &[u8]) -> bool {
        self.stream.write_all(b).await.is_ok()
    }
}

async fn serve(stream: TcpStream, config: ServerConfig, seen: Arc<Seen>) {
    if !serve_conn(stream, config, &seen).await {
        seen.peer_closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves one connection; `true` if the script closed it, `false` if the peer did.
async fn serve_conn(stream: TcpStream, config: ServerConfig, seen: &Seen) -> bool {
    let size = config.packet_size;
    let mut io = Io {
        stream,
        buf: BytesMut::new(),
        size,
    };
    loop {
        let Some(payload) = io.packet().await else {
            return false;
        };
        if payload.as_ref() == [crate::wire::CPING] {
            if config.ignore_cping {
                continue;
            }
            if !config.answer_cping {
                return true;
            }
            seen.cpings.fetch_add(1, Ordering::Relaxed);
            let mut out = BytesMut::new();
            container::encode_cpong(&mut out);
            if !io.write(&out).await {
                return false;
            }
            continue;
        }
        let Ok(req) = container::parse_forward_request(payload) else {
            return true;
        };
        if let Ok(mut r) = seen.requests.lock() {
            r.push(req.clone());
        }
        let length: Option<u64> = req
            .header("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut body = Body {
            first_pending: length.is_some_and(|l| l > 0),
            length,
            read: BytesMut::new(),
            done: length == Some(0),
        };
        let secret_ok = match &config.secret {
            None => true,
            Some(s) => req.attribute(0x0C) == Some(s.as_str()),
        };
        let script = if secret_ok {
            (config.handler)(&req)
        } else {
            vec![
                Action::Headers(StatusCode::FORBIDDEN, vec![]),
                Action::End { reuse: false },
            ]
        };
        let mut keep = true;
        for action in script {
            match run(&mut io, &mut body, action).await {
                Step::Go => {}
                Step::Failed => {
                    return false;
                }
                Step::Close => {
                    keep = false;
                    break;
                }
                Step::Hang => {
                    std::future::pending::<()>().await;
                }
                Step::EndReuse(r) => keep = r,
            }
        }
        if let Ok(mut b) = seen.bodies.lock() {
            b.push(body.read.freeze());
        }
        if !keep {
            return true;
        }
    }
}

struct Body {
    first_pending: bool,
    length: Option<u64>,
    read: BytesMut,
    done: bool,
}

enum Step {
    Go,
    Failed,
    Close,
    Hang,
    EndReuse(bool),
}

/// Reads one body packet (asking first unless the unsolicited first chunk is due).
async fn read_chunk(io: &mut Io, body: &mut Body) -> bool {
    if body.done {
        return true;
    }
    if body.first_pending {
        body.first_pending = false;
    } else {
        let mut out = BytesMut::new();
        container::encode_get_body_chunk(&mut out, (io.size.max_request_chunk()) as u16);
        if !io.write(&out).await {
            return false;
        }
    }
    let Some(p) = io.packet().await else {
        return false;
    };
    let Ok(data) = container::parse_body_data(p) else {
        return false;
    };
    if data.is_empty() {
        body.done = true;
    }
    body.read.extend_from_slice(&data);
    if body.length.is_some_and(|l| body.read.len() as u64 >= l) {
        body.done = true;
    }
    true
}

async fn run(io: &mut Io, body: &mut Body, action: Action) -> Step {
    let mut out = BytesMut::new();
    match action {
        Action::ReadBody => {
            while !body.done {
                if !read_chunk(io, body).await {
                    return Step::Failed;
                }
            }
            return Step::Go;
        }
        Action::ReadOneChunk => {
            return if read_chunk(io, body).await {
                Step::Go
            } else {
                Step::Failed
            };
        }
        Action::Headers(status, headers) => {
            container::encode_send_headers(&mut out, status, &headers)
        }
        Action::Chunk(b) => container::encode_send_body_chunk(&mut out, &b),
        Action::EchoBody => {
            for c in body.read.chunks(io.size.get() - 8) {
                container::encode_send_body_chunk(&mut out, c);
            }
        }
        Action::Sleep(d) => {
            tokio::time::sleep(d).await;
            return Step::Go;
        }
        Action::End { reuse } => {
            // Like Tomcat's finishResponse: swallow an unread unsolicited first chunk.
            if body.first_pending && !read_chunk(io, body).await {
                return Step::Failed;
            }
            container::encode_end_response(&mut out, reuse);
            return if io.write(&out).await {
                Step::EndReuse(reuse)
            } else {
                Step::Failed
            };
        }
        Action::Raw(b) => out.extend_from_slice(&b),
        Action::Close => return Step::Close,
        Action::Hang => return Step::Hang,
    }
    if io.write(&out).await {
        Step::Go
    } else {
        Step::Failed
    }
}
