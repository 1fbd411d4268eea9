//! http callouts to the upstreams declared `protocol: http2`: HTTP/2 with prior knowledge (h2c),
//! as an Envoy cluster with `http2_protocol_options` carries `proxy_http_call` (the async
//! client uses the cluster's codec, `source/common/http/async_client_impl.cc`). Its HTTP/2
//! codec sends the message's trailers after the body and keeps the response's
//! (`source/common/http/http2/codec_impl.cc` `encodeTrailers`, `onFrameReceived`), so both pass
//! here; the `:authority` is the filter's, as Envoy sends its Host. One connection per upstream
//! carries the calls, made at first use and again once it has closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use keel_wasm::CallTrailers;

use super::{CalloutError, MAX_RESPONSE_BODY, StreamBody};

/// How long making a connection may take (as the HTTP/1.1 client's connector).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP/2 connections to the h2c callout upstreams, by address.
#[derive(Default)]
pub(super) struct Connections {
    senders: Mutex<HashMap<SocketAddr, SendRequest<StreamBody>>>,
}

impl Connections {
    /// Sends `request` (its URI carries the filter's scheme, authority and path) to `addr`, the
    /// request's [`CallTrailers`] after its body, and reads the whole response; the upstream's
    /// trailers, if it sent any, become the response's [`CallTrailers`].
    pub(super) async fn call(
        &self,
        addr: SocketAddr,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CalloutError> {
        let (mut parts, body) = request.into_parts();
        parts.version = http::Version::HTTP_2;
        let trailers = parts.extensions.remove::<CallTrailers>();
        let body = match trailers {
            Some(CallTrailers(map)) => Full::new(body)
                .with_trailers(std::future::ready(Some(Ok(map))))
                .map_err(|never| match never {})
                .boxed_unsync(),
            None => Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        };
        let mut sender = self.sender(addr).await?;
        let response = sender
            .send_request(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| CalloutError::Failed(crate::upstream::http::error_chain(&e)))?;
        let (mut parts, body) = response.into_parts();
        let collected = Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| CalloutError::Failed(e.to_string()))?;
        if let Some(trailers) = collected.trailers() {
            parts.extensions.insert(CallTrailers(trailers.clone()));
        }
        Ok(http::Response::from_parts(parts, collected.to_bytes()))
    }

    /// A ready sender on the connection to `addr`, connecting when there is none or it closed.
    async fn sender(&self, addr: SocketAddr) -> Result<SendRequest<StreamBody>, CalloutError> {
        let cached = self.lock().get(&addr).filter(|s| !s.is_closed()).cloned();
        if let Some(mut sender) = cached
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| CalloutError::Connect(format!("{addr}: no connection within 2 s")))?
            .map_err(|e| CalloutError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| CalloutError::Connect(format!("{addr}: HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("http2 callout connection to {addr}: {e}");
            }
        });
        self.lock().insert(addr, sender.clone());
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, SendRequest<StreamBody>>> {
        self.senders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
