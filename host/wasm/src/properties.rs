//! `proxy_get_property`: Envoy's attributes (arch_overview/attributes) that keel can answer,
//! then the filter state (`crate::filter_state`).
//!
//! Encoding as Envoy's: strings raw, integers 8 bytes little endian, booleans one byte, maps as
//! serialized header maps.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::abi::status;
use crate::headers::MapRef;
use crate::state::{HostState, StreamData, open};

fn int(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// A duration as Envoy's wasm serializer writes one: int64 nanoseconds
/// (`source/extensions/common/wasm/context.cc` `serializeValue`, `kDuration`).
fn nanos(duration: Duration) -> Vec<u8> {
    int(u64::try_from(duration.as_nanos()).unwrap_or(i64::MAX as u64))
}

fn addr(address: SocketAddr) -> Vec<u8> {
    address.to_string().into_bytes()
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The longest dotted property name keel answers (longer paths can only be filter state).
const MAX_NAME: usize = 64;

/// The value of a property path (segments joined by `\0`, as the SDK sends it), or the status
/// to answer (`NotFound`; `SerializationFailure` for the whole `request` or `response`, which
/// Envoy cannot list, `context.cc` `getProperty`: `ListKeys()` is unimplemented there).
pub(crate) fn get(state: &mut HostState, raw_path: &[u8]) -> Result<Vec<u8>, i32> {
    // The dotted name (`crate::serial::split_property_path` joined by `.`), built on the stack:
    // every name keel knows is short ASCII, anything else can only be filter state.
    let joined = raw_path.strip_suffix(b"\0").unwrap_or(raw_path);
    // Envoy walks the path segment by segment, so `["request.path"]` names nothing there.
    let dotted = joined
        .split(|byte| *byte == 0)
        .any(|segment| segment.contains(&b'.'));
    let mut buffer = [0u8; MAX_NAME];
    let name = match buffer.get_mut(..joined.len()).filter(|_| !dotted) {
        Some(name) => {
            for (to, from) in name.iter_mut().zip(joined) {
                *to = if *from == 0 { b'.' } else { *from };
            }
            std::str::from_utf8(name).unwrap_or("")
        }
        None => "",
    };
    match name {
        "plugin_name" => return Ok(state.plugin.name.as_bytes().to_vec()),
        "plugin_root_id" => return Ok(state.plugin.root_id.as_bytes().to_vec()),
        "plugin_vm_id" => return Ok(state.plugin.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    // A root context has no stream, hence no attributes and no filter state (Envoy: no
    // stream info).
    let stream = state.current_stream().ok_or(status::NOT_FOUND)?;
    if matches!(name, "request" | "response") {
        return Err(status::SERIALIZATION_FAILURE);
    }
    if let Some(value) = stream_property(stream, name) {
        return Ok(value);
    }
    header_field(stream, joined)
        .or_else(|| crate::filter_state::get(&stream.filter_state, joined).map(<[u8]>::to_vec))
        .ok_or(status::NOT_FOUND)
}

/// `["request", "headers", name]` and the like: one header of a map, as Envoy walks into the
/// map (`source/extensions/filters/common/expr/context.h` `HeadersWrapper::operator[]`: the
/// name lowercased, every value joined by ","), while the map is the filter's.
fn header_field(stream: &mut StreamData, joined: &[u8]) -> Option<Vec<u8>> {
    let mut segments = joined.splitn(3, |byte| *byte == 0);
    let (Some(head), Some(map), Some(key)) = (segments.next(), segments.next(), segments.next())
    else {
        return None;
    };
    let tls = stream.info.tls;
    let map = match (head, map) {
        (b"request", b"headers") if stream.open & open::REQUEST_HEADERS != 0 => {
            MapRef::Request(stream.request.as_mut()?, tls)
        }
        (b"request", b"trailers") if stream.open & open::REQUEST_TRAILERS != 0 => {
            MapRef::Trailers(stream.request_trailers.as_mut()?)
        }
        (b"response", b"headers") if stream.open & open::RESPONSE_HEADERS != 0 => {
            MapRef::Response(stream.response.as_mut()?)
        }
        (b"response", b"trailers") if stream.open & open::RESPONSE_TRAILERS != 0 => {
            MapRef::Trailers(stream.response_trailers.as_mut()?)
        }
        _ => return None,
    };
    map.all_of(key)
}

/// `request.size`: the request's Content-Length while its headers are the filter's, else the
/// body bytes seen so far (Envoy `expr/context.cc`: `ContentLength()` of the request headers,
/// else `bytesReceived()`).
fn request_size(stream: &StreamData) -> u64 {
    stream
        .request
        .as_ref()
        .filter(|_| stream.open & open::REQUEST_HEADERS != 0)
        .and_then(|parts| parts.headers.get(http::header::CONTENT_LENGTH))
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or(stream.request_body_bytes)
}

/// The bytes of keys and values of a head while it is the filter's, else 0 (Envoy
/// `expr/context.cc` `HeadersBytes`: `byteSize()` of the map, 0 without one).
fn head_bytes(stream: &mut StreamData, bit: u8) -> u64 {
    if stream.open & bit == 0 {
        return 0;
    }
    let tls = stream.info.tls;
    let size = match bit {
        open::REQUEST_HEADERS => stream
            .request
            .as_mut()
            .map(|parts| MapRef::Request(parts, tls).byte_size()),
        open::RESPONSE_HEADERS => stream
            .response
            .as_mut()
            .map(|parts| MapRef::Response(parts).byte_size()),
        _ => stream
            .response_trailers
            .as_mut()
            .map(|map| MapRef::Trailers(map).byte_size()),
    };
    size.map_or(0, |size| size as u64)
}

/// `response.grpc_status`, from the maps the filter may read and the response's status.
fn grpc_status(stream: &StreamData) -> Option<i64> {
    let readable = |bit: u8| stream.open & bit != 0;
    crate::grpc::response_status(
        stream
            .response_trailers
            .as_ref()
            .filter(|_| readable(open::RESPONSE_TRAILERS)),
        stream
            .response
            .as_ref()
            .filter(|_| readable(open::RESPONSE_HEADERS))
            .map(|parts| &parts.headers),
        stream.response.as_ref().map(|parts| parts.status),
    )
}

/// The sizes and details Envoy computes from the stream info and the heads (`expr/context.cc`:
/// `request.duration` once the request is complete, `TotalSize` = body bytes plus the heads'
/// `byteSize()`, `response.code_details`, `response.grpc_status`).
fn accounting_property(stream: &mut StreamData, name: &str) -> Option<Vec<u8>> {
    let value = match name {
        "request.duration" if stream.log_phase => nanos(
            *stream
                .duration
                .get_or_insert_with(|| stream.started.elapsed()),
        ),
        "request.headers_bytes" => int(head_bytes(stream, open::REQUEST_HEADERS)),
        "request.total_size" => {
            int(stream.request_body_bytes + head_bytes(stream, open::REQUEST_HEADERS))
        }
        "response.headers_bytes" => int(head_bytes(stream, open::RESPONSE_HEADERS)),
        // Envoy `expr/context.cc`: `bytesSent()` plus the heads, for the total.
        "response.total_size" => int(stream.response_sent_bytes
            + head_bytes(stream, open::RESPONSE_HEADERS)
            + head_bytes(stream, open::RESPONSE_TRAILERS)),
        "response.code_details" => stream.code_details.as_deref()?.as_bytes().to_vec(),
        "response.grpc_status" => grpc_status(stream)?.to_le_bytes().to_vec(),
        // Envoy `expr/context.cc` `BackendLatency`: from the first byte sent upstream to the last
        // byte received, absent until the member's response is complete (and without one).
        "response.backend_latency" => nanos(
            stream
                .upstream_received?
                .saturating_duration_since(stream.upstream_sent?),
        ),
        _ => return None,
    };
    Some(value)
}

fn stream_property(stream: &mut StreamData, name: &str) -> Option<Vec<u8>> {
    if let Some(value) = accounting_property(stream, name) {
        return Some(value);
    }
    let info = &stream.info;
    let value = match name {
        "source.address" => addr(info.source),
        "source.port" => int(u64::from(info.source.port())),
        "destination.address" => addr(info.destination),
        "destination.port" => int(u64::from(info.destination.port())),
        "connection.mtls" => vec![0],
        // Envoy `expr/context.cc`: the SNI, an empty string without one (plain connections
        // too); the version only on a TLS connection (`extractSslInfo`).
        "connection.requested_server_name" => info
            .downstream_tls
            .as_ref()
            .and_then(|tls| tls.server_name.as_deref())
            .unwrap_or("")
            .as_bytes()
            .to_vec(),
        "connection.tls_version" => info.downstream_tls.as_ref()?.version.as_bytes().to_vec(),
        // Envoy `expr/context.cc` `extractSslInfo`: on a TLS connection the listener's subject
        // (RFC 2253, an empty string without one) and its first URI and DNS names (absent
        // without one); nothing on a plain connection.
        "connection.subject_local_certificate" => {
            let local = &info.downstream_tls.as_ref()?.local_certificate;
            local.subject.as_bytes().to_vec()
        }
        "connection.uri_san_local_certificate" => {
            let local = &info.downstream_tls.as_ref()?.local_certificate;
            local.uri_san.as_deref()?.as_bytes().to_vec()
        }
        "connection.dns_san_local_certificate" => {
            let local = &info.downstream_tls.as_ref()?.local_certificate;
            local.dns_san.as_deref()?.as_bytes().to_vec()
        }
        // Envoy's `connection.id` (expr/context.cc) and `connection_id` (wasm context.cc).
        "connection.id" | "connection_id" => int(info.connection_id),
        "request.protocol" => protocol(info.protocol).as_bytes().to_vec(),
        "xds.cluster_name" => info.cluster_name.as_bytes().to_vec(),
        "xds.route_name" => info.route_name.as_bytes().to_vec(),
        "upstream.address" => stream.upstream.as_ref()?.address_text().as_bytes().to_vec(),
        "upstream.port" => int(u64::from(stream.upstream.as_ref()?.address().port())),
        // Envoy `expr/context.cc` `UpstreamLocality`: the host's `Locality` message, which the
        // wasm serializer writes as its protobuf bytes (`wasm/context.cc` `serializeValue`,
        // `kMessage`); keel's members have no locality, and an empty message is no bytes.
        // The upstream TLS fields (`tls_version`, `subject_peer_certificate`, ...) are absent,
        // as Envoy's on a plaintext upstream (`UpstreamWrapper`: no `upstreamSslConnection()`).
        "upstream.locality" => {
            stream.upstream.as_ref()?;
            Vec::new()
        }
        // Envoy `expr/context.cc` `UpstreamTransportFailureReason`: the transport's failure text
        // once an upstream is chosen; keel's plaintext connections give none (an empty string).
        "upstream.transport_failure_reason" => {
            stream.upstream.as_ref()?;
            Vec::new()
        }
        // Envoy `expr/context.cc` `UpstreamNumEndpoints`: the cluster's `membership_total`,
        // every member healthy or not, from the moment the cluster is known.
        "upstream.num_endpoints" => int(u64::from(info.endpoints)),
        // Envoy `expr/context.cc`: the attempt count (0 before any), and the local address of
        // the upstream connection.
        "upstream.request_attempt_count" => int(u64::from(stream.attempts)),
        "upstream.local_address" => addr(stream.upstream_connection?.local?),
        // Envoy `expr/context.cc` `UpstreamConnectionPoolReadyDuration`: the pool's callback
        // latency, from asking for a connection to having one (absent before that).
        "upstream.cx_pool_ready_duration" => nanos(stream.upstream_connection?.pool_wait),
        "request.size" => int(request_size(stream)),
        // Envoy `expr/context.cc`: `bytesSent()`, what went to the client, not what the member
        // sent.
        "response.size" => int(stream.response_sent_bytes),
        "request.time" => {
            let started = stream.started;
            let at = *stream.started_at.get_or_insert_with(|| {
                let now = SystemTime::now();
                now.checked_sub(started.elapsed()).unwrap_or(now)
            });
            let since = at.duration_since(UNIX_EPOCH).ok()?;
            int(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
        }
        // Header-based values follow the header maps: Envoy builds them from the filter's
        // header pointers (`context.cc` `findValue`: `request_headers_ ? request_headers_ :
        // access_log_request_headers_`), null once its phase is over.
        _ if name.starts_with("request.") => request_property(stream, name)?,
        "response.code" => int(u64::from(stream.response.as_ref()?.status.as_u16())),
        "response.flags" => int(0),
        "response.headers" if stream.open & open::RESPONSE_HEADERS != 0 => {
            MapRef::Response(stream.response.as_mut()?).serialize_joined()
        }
        "response.trailers" if stream.open & open::RESPONSE_TRAILERS != 0 => {
            MapRef::Trailers(stream.response_trailers.as_mut()?).serialize_joined()
        }
        _ => return None,
    };
    Some(value)
}

fn request_property(stream: &mut StreamData, name: &str) -> Option<Vec<u8>> {
    let tls = stream.info.tls;
    let request_id = stream.info.request_id;
    if name == "request.trailers" {
        if stream.open & open::REQUEST_TRAILERS == 0 {
            return None;
        }
        return Some(MapRef::Trailers(stream.request_trailers.as_mut()?).serialize_joined());
    }
    if stream.open & open::REQUEST_HEADERS == 0 {
        return None;
    }
    let parts = stream.request.as_mut()?;
    let header = |parts: &http::request::Parts, name: &str| {
        parts
            .headers
            .get(name)
            .map(|value| value.as_bytes().to_vec())
    };
    let value = match name {
        "request.path" => parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes()
            .to_vec(),
        "request.url_path" => parts.uri.path().as_bytes().to_vec(),
        "request.query" => parts.uri.query().unwrap_or("").as_bytes().to_vec(),
        "request.method" => parts.method.as_str().as_bytes().to_vec(),
        "request.host" => MapRef::Request(parts, tls).get(b":authority")?.to_vec(),
        "request.scheme" => MapRef::Request(parts, tls).get(b":scheme")?.to_vec(),
        "request.referer" => header(parts, "referer")?,
        "request.useragent" => header(parts, "user-agent")?,
        "request.id" => {
            header(parts, "x-request-id").unwrap_or_else(|| request_id.to_string().into_bytes())
        }
        "request.headers" => MapRef::Request(parts, tls).serialize_joined(),
        _ => return None,
    };
    Some(value)
}
