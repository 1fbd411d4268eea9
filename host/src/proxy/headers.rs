//! Header work of a reverse proxy: framing checks, limits, hop-by-hop removal, and the
//! X-Forwarded-* / Forwarded headers.

use std::net::{IpAddr, SocketAddr};

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded, and `Transfer-Encoding` (the next
/// hop frames the body itself). `Connection` first: it names more.
const HOPS: usize = 9;
const HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
];

/// The tokens the `Connection` headers list, trimmed (`keep-alive`, `upgrade`, header names).
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Removes hop-by-hop headers, those named in `Connection`, and `Transfer-Encoding` (the
/// next hop frames the body itself).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are here (usually none, or a member's `Connection:
    // keep-alive`): cheaper than a lookup for each of the nine.
    let mut here = [false; HOPS];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            here[i] = true;
        }
    }
    if here[0] {
        // Only tokens naming a header that is here and that the loop below leaves: usually
        // none (`keep-alive`, `close`, `upgrade`), and then nothing is allocated.
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| {
                !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
                    && headers.contains_key(*t)
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for (name, here) in HOP_BY_HOP.iter().zip(here) {
        if here {
            headers.remove(name);
        }
    }
}

/// Checks a request head before anything else: ambiguous framing (400), header count and size
/// (431).
pub fn check_request(
    headers: &HeaderMap,
    max_headers: usize,
    max_header_bytes: usize,
) -> Result<(), (StatusCode, &'static str)> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "Content-Length together with Transfer-Encoding",
        ));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.any(|v| v != first) {
            return Err((StatusCode::BAD_REQUEST, "conflicting Content-Length"));
        }
        if first
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_none()
        {
            return Err((StatusCode::BAD_REQUEST, "bad Content-Length"));
        }
    }
    if headers.len() > max_headers {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many headers",
        ));
    }
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > max_header_bytes {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers too large",
        ));
    }
    Ok(())
}

/// The announced body length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

/// Which forwarding headers to add.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedSettings {
    /// X-Forwarded-For.
    pub xff: bool,
    /// X-Forwarded-Proto.
    pub proto: bool,
    /// X-Forwarded-Host.
    pub host: bool,
    /// Forwarded.
    pub forwarded: bool,
}

/// Appends `value` to the list header `name`, keeping every earlier value (all of its
/// fields, joined), or starts it.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined = String::new();
    for prev in headers.get_all(&name) {
        let Ok(prev) = prev.to_str() else { continue };
        if !prev.trim().is_empty() {
            joined.push_str(prev);
            joined.push_str(", ");
        }
    }
    joined.push_str(value);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// `ip` as X-Forwarded-For names the client (made once per connection: [`add_forwarded`]
/// clones it).
pub fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    HeaderValue::try_from(ip.to_string()).ok()
}

/// Adds X-Forwarded-For/-Proto/-Host and Forwarded as configured. `client_ip` is
/// [`ip_value`] of `client`; `host` is the client's authority (Host header or HTTP/2
/// `:authority`).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    s: ForwardedSettings,
    client: SocketAddr,
    client_ip: Option<&HeaderValue>,
    tls: bool,
    host: Option<&HeaderValue>,
) {
    let proto = if tls { "https" } else { "http" };
    if s.xff
        && let Some(ip) = client_ip
    {
        let name = HeaderName::from_static("x-forwarded-for");
        if !headers.contains_key(&name) {
            headers.insert(name, ip.clone());
        } else if let Ok(ip) = ip.to_str() {
            append(headers, name, ip);
        }
    }
    if s.proto {
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(proto),
        );
    }
    if s.host {
        match host {
            Some(v) => {
                headers.insert(HeaderName::from_static("x-forwarded-host"), v.clone());
            }
            None => {
                headers.remove("x-forwarded-host");
            }
        }
    }
    if s.forwarded {
        let ip = client.ip();
        let mut v = if client.is_ipv6() {
            format!("for=\"[{ip}]\";proto={proto}")
        } else {
            format!("for={ip};proto={proto}")
        };
        if let Some(h) = host.map(HeaderValue::as_bytes)
            && let Ok(h) = std::str::from_utf8(h)
            && h.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            v.push_str(";host=\"");
            v.push_str(h);
            v.push('"');
        }
        append(headers, header::FORWARDED, &v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_tokens_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn every_hop_by_hop_header_goes_alone_and_others_stay() {
        for name in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.append(name.clone(), HeaderValue::from_static("y"));
            h.insert(header::HOST, HeaderValue::from_static("a"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} stayed");
            assert_eq!(h.len(), 2, "{name}: {h:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        // The tokens of `Connection` are looked at only when it is there (`here[0]`).
        assert_eq!(HOP_BY_HOP[0], header::CONNECTION);
    }

    #[test]
    fn framing_and_limits() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(
            check_request(&h, 100, 65536).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        let mut h = HeaderMap::new();
        for i in 0..5 {
            h.insert(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert_eq!(
            check_request(&h, 4, 65536).unwrap_err().0,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert!(check_request(&h, 5, 65536).is_ok());
    }

    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("127.0.0.11"));
        h.append("x-forwarded-for", HeaderValue::from_static("127.0.0.12"));
        let s = ForwardedSettings {
            xff: true,
            proto: true,
            host: true,
            forwarded: true,
        };
        let client: SocketAddr = "[::1]:5000".parse().unwrap();
        add_forwarded(
            &mut h,
            s,
            client,
            ip_value(client.ip()).as_ref(),
            true,
            Some(&HeaderValue::from_static("example.org")),
        );
        assert_eq!(
            h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
            ["127.0.0.11, 127.0.0.12, ::1"],
            "every earlier hop is kept"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=https;host=\"example.org\""
        );
    }
}
