//! A fast AJP container for `cargo xtask bench`: the same job as the static nginx backend of the
//! HTTP rows, over AJP, so that the proxies (httpd mod_proxy_ajp, keel) and not the container
//! are measured. Unlike `keel_ajp::test_server` it records nothing (a benchmark would fill the
//! memory), and it answers from files: `GET /small.txt` and `GET /64k.bin` with the files'
//! bytes, any request with a body (`POST /post`) with `posted` once the body is read.
//!
//! `cargo run --release -p keel-ajp --example ajp_bench_server -- <route> <port> <www dir>`
//! prints `listening <port>` once it accepts connections. Every response carries
//! `X-Served-By: <route>`. One thread (like one nginx worker); no secret is checked.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};
use keel_ajp::PacketSize;
use keel_ajp::container::{
    decode_from_proxy, encode_cpong, encode_end_response, encode_get_body_chunk,
    encode_send_body_chunk, encode_send_headers, parse_body_data, parse_forward_request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The payload of a CPING packet.
const CPING: u8 = 10;
/// The most body bytes in one SEND_BODY_CHUNK of a default (8 KiB) packet.
const MAX_CHUNK: usize = 8192 - 8;

struct Content {
    route: HeaderValue,
    small: Bytes,
    big: Bytes,
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, route, port, www] = args.as_slice() else {
        eprintln!("usage: ajp_bench_server <route> <port> <www dir>");
        std::process::exit(2);
    };
    let read = |name: &str| std::fs::read(Path::new(www).join(name)).map(Bytes::from);
    let content = Arc::new(Content {
        route: HeaderValue::from_str(route).map_err(std::io::Error::other)?,
        small: read("small.txt")?,
        big: read("64k.bin")?,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port.parse().unwrap_or(0))).await?;
        println!("listening {}", listener.local_addr()?.port());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, content.clone()));
        }
    })
}

/// Reads packets until one is complete; `None` when the proxy closed or sent garbage.
async fn packet(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Bytes> {
    loop {
        match decode_from_proxy(buf, PacketSize::DEFAULT) {
            Ok(Some(payload)) => return Some(payload),
            Ok(None) => {}
            Err(_) => return None,
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn serve(mut stream: TcpStream, content: Arc<Content>) -> Option<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let payload = packet(&mut stream, &mut buf).await?;
        out.clear();
        if payload.as_ref() == [CPING] {
            encode_cpong(&mut out);
            stream.write_all(&out).await.ok()?;
            continue;
        }
        let request = parse_forward_request(payload).ok()?;
        let length: u64 = request
            .header("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        // The first chunk comes unasked; the rest only when asked for.
        let mut read = 0u64;
        let mut first = true;
        while read < length {
            if !first {
                encode_get_body_chunk(&mut out, MAX_CHUNK as u16);
                stream.write_all(&out).await.ok()?;
                out.clear();
            }
            first = false;
            let chunk = parse_body_data(packet(&mut stream, &mut buf).await?).ok()?;
            if chunk.is_empty() {
                break;
            }
            read += chunk.len() as u64;
        }
        let body: &[u8] = if length > 0 {
            b"posted\n"
        } else if request.req_uri.ends_with("64k.bin") {
            &content.big
        } else {
            &content.small
        };
        let headers = [
            (
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                HeaderName::from_static("content-length"),
                HeaderValue::from(body.len()),
            ),
            (
                HeaderName::from_static("x-served-by"),
                content.route.clone(),
            ),
        ];
        encode_send_headers(&mut out, StatusCode::OK, &headers);
        for chunk in body.chunks(MAX_CHUNK) {
            encode_send_body_chunk(&mut out, chunk);
        }
        encode_end_response(&mut out, true);
        stream.write_all(&out).await.ok()?;
    }
}
