//! Shared test helpers: request builders, a channel-fed request body, CRC32, and (in
//! `tomcat`) a real Tomcat 10 started per test binary.
#![allow(dead_code, clippy::unwrap_used)]

pub mod tomcat;

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request};
use keel_ajp::client::{
    AjpClient, AjpRequest, BodySource, BoxError, ClientConfig, Peer, RequestBody, ResponseBody,
    Secret,
};
use tokio::sync::mpsc;

/// A bodiless `GET /` (Host `keel.test`, route `r1`).
pub fn get_root() -> AjpRequest {
    request(Method::GET, "/", &[], RequestBody::Empty)
}

/// A client peer as keel would describe it.
pub fn peer() -> Peer {
    Peer {
        remote: "127.0.0.7:40001".parse().unwrap(),
        local: "127.0.0.1:8443".parse().unwrap(),
        tls: None,
    }
}

/// A request with headers from `headers`.
pub fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: RequestBody,
) -> AjpRequest {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "keel.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    AjpRequest {
        parts,
        body,
        peer: peer(),
        route: Some("r1".into()),
        retry_unanswered: false,
    }
}

/// A client with the given secret.
pub fn client(addr: SocketAddr, secret: Option<&str>) -> AjpClient {
    let secret = secret.map_or(Secret::ExplicitlyNone, |s| Secret::Value(s.to_owned()));
    AjpClient::new(addr, ClientConfig::new(secret)).unwrap()
}

/// Reads a whole response body.
pub async fn collect(mut body: ResponseBody) -> Result<Vec<u8>, keel_ajp::client::ClientError> {
    let mut out = Vec::new();
    while let Some(c) = body.chunk().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

/// A request body fed through a channel.
pub struct ChannelBody(pub mpsc::Receiver<Result<Bytes, BoxError>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

/// A streaming body and the sender that feeds it.
pub fn channel_body(length: Option<u64>) -> (mpsc::Sender<Result<Bytes, BoxError>>, RequestBody) {
    let (tx, rx) = mpsc::channel(4);
    let body = RequestBody::Stream {
        source: BodySource::new(Box::pin(ChannelBody(rx))),
        length,
    };
    (tx, body)
}

/// A streaming body of `data` in `piece`-byte chunks.
pub fn stream_of(data: Bytes, piece: usize, length: Option<u64>) -> RequestBody {
    let (tx, body) = channel_body(length);
    tokio::spawn(async move {
        let mut at = 0;
        while at < data.len() {
            let end = (at + piece).min(data.len());
            if tx.send(Ok(data.slice(at..end))).await.is_err() {
                return;
            }
            at = end;
        }
    });
    body
}

/// Pseudo-random bytes.
pub fn data(n: usize) -> Bytes {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// CRC-32 (IEEE), as java.util.zip.CRC32 computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
