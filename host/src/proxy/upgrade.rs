//! HTTP/1.1 upgrades (WebSocket and the like) to HTTP members. The request keeps its
//! `Connection: upgrade` and `Upgrade` headers on the way to the member; when the member answers
//! 101, the client gets that 101 and the two connections are joined into a tunnel that copies
//! bytes both ways until either side closes. Routing is the request's, so a WebSocket sticks to
//! its session's member like any request. Filters see the request and the 101's headers; the
//! tunnel's bytes pass them by. An AJP member cannot upgrade: it gets the request without the
//! upgrade headers and answers it as a plain request.

use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::headers::connection_tokens;

/// An upgrade the client asked for, with the client's side of it.
pub struct Upgrade {
    protocol: HeaderValue,
    client: OnUpgrade,
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
    let client = parts.extensions.remove::<OnUpgrade>()?;
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
            let (client, member) = match tokio::try_join!(client, member) {
                Ok(both) => both,
                Err(e) => {
                    log::debug!("upgrade: a side did not switch: {e}");
                    return;
                }
            };
            let (mut client, mut member) = (TokioIo::new(client), TokioIo::new(member));
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
        // Without hyper's upgrade handle (no server connection) there is nothing to tunnel.
        assert!(requested(&mut parts).is_none());
    }
}
