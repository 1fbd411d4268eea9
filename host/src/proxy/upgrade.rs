//! HTTP/1.1 upgrades (WebSocket and the like) to HTTP members. The request keeps its
//! `Connection: upgrade` and `Upgrade` headers on the way to the member; when the member answers
//! 101, the client gets that 101 and the two connections are joined into a tunnel that copies
//! bytes both ways until either side closes. Routing is the request's, so a WebSocket sticks to
//! its session's member like any request. Filters see the request and the 101's headers; the
//! tunnel's bytes pass them by. An AJP member cannot upgrade: it gets the request without the
//! upgrade headers and answers it as a plain request. The client's side of the tunnel is the
//! connection the server hands over once the 101 has gone out ([`ClientUpgrade`]); the member's
//! is hyper's upgraded client connection.

use std::sync::{Arc, Mutex};

use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::headers::connection_tokens;

/// A client connection as the server hands it over for a tunnel (the bytes the client sent
/// after its request head are read first).
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// The client's side of an upgrade, in the request's extensions: the server fulfils it with
/// the connection once the 101 has gone out, or drops it when the connection cannot switch.
/// (Shared only because extensions must be `Clone`: the first to take it has it.)
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<Handover>>>);

/// Where the server hands a client connection over.
pub type Handover = oneshot::Receiver<Box<dyn ClientIo>>;

impl ClientUpgrade {
    /// The handle for the connection `to_tunnel` will deliver.
    pub fn new(connection: Handover) -> Self {
        Self(Arc::new(Mutex::new(Some(connection))))
    }

    fn take(&self) -> Option<Handover> {
        self.0.lock().ok().and_then(|mut c| c.take())
    }
}

/// An upgrade the client asked for, with the client's side of it.
pub struct Upgrade {
    protocol: HeaderValue,
    client: Handover,
}

/// Whether `Connection` lists the `upgrade` token.
fn connection_upgrade(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// The upgrade an HTTP/1.1 request asks for (`Connection: upgrade` and an `Upgrade` header),
/// its client side taken out of the request; `None` for any other request.
pub fn requested(parts: &mut http::request::Parts) -> Option<Upgrade> {
    if parts.version != Version::HTTP_11 || !connection_upgrade(&parts.headers) {
        return None;
    }
    let protocol = parts.headers.get(header::UPGRADE)?.clone();
    let client = parts.extensions.remove::<ClientUpgrade>()?.take()?;
    Some(Upgrade { protocol, client })
}

impl Upgrade {
    /// Puts the upgrade back into the member's request headers (after the hop-by-hop ones were
    /// removed).
    pub fn forward(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// The member's answer `rparts`, its hop-by-hop headers already removed, and `protocol`,
    /// the `Upgrade` header it answered with. A 101 gets its upgrade headers back and starts the
    /// tunnel, which holds `keep` (the member's in-flight guard) until it ends; any other answer
    /// is left alone (the client's upgrade is dropped and its connection goes on as HTTP).
    /// `Err` when a 101 cannot be tunnelled (502).
    pub fn finish<K: Send + 'static>(
        self,
        rparts: &mut http::response::Parts,
        protocol: Option<HeaderValue>,
        keep: K,
    ) -> Result<(), &'static str> {
        if rparts.status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(());
        }
        let member = rparts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or("the member switched protocols on a connection that cannot be upgraded")?;
        rparts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        rparts
            .headers
            .insert(header::UPGRADE, protocol.unwrap_or(self.protocol));
        let client = self.client;
        tokio::spawn(async move {
            let _keep = keep;
            let (mut client, member) = match tokio::join!(client, member) {
                (Ok(client), Ok(member)) => (client, member),
                (Err(_), _) => {
                    log::debug!("upgrade: the client's connection did not switch");
                    return;
                }
                (_, Err(e)) => {
                    log::debug!("upgrade: the member's connection did not switch: {e}");
                    return;
                }
            };
            let mut member = TokioIo::new(member);
            match tokio::io::copy_bidirectional(&mut client, &mut member).await {
                Ok((up, down)) => {
                    log::debug!("upgrade: tunnel closed ({up} bytes up, {down} down)")
                }
                Err(e) => log::debug!("upgrade: tunnel ended: {e}"),
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http11_request_with_connection_upgrade_asks() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(connection_upgrade(&h));
        h.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        assert!(!connection_upgrade(&h));
        let (mut parts, ()) = http::Request::get("/ws")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(())
            .unwrap()
            .into_parts();
        // Without the server's upgrade handle (no server connection) there is nothing to tunnel.
        assert!(requested(&mut parts).is_none());
    }
}
