//! Checks what serde cannot (schemes, addresses, ranges, duplicates, files) and resolves the
//! file into [`Settings`]; every error names its key path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use super::schema::{
    AjpPing, CalloutProtocol, CalloutUpstream, Config, FailurePolicy, SessionStore, StoreKind,
};
use super::{
    AdminSettings, ConfigError, FilterSettings, ListenerSettings, MemberSettings, Scheme, Settings,
    StoreBackend, StoreSettings,
};
use crate::upstream::AjpSettings;
use keel_ajp::client::Ping;

type R<T> = Result<T, ConfigError>;

/// The most members a balancer has (the attempt loop tracks tried members in a 128-bit set).
const MAX_MEMBERS: usize = 128;

fn socket_addr(key: &str, text: &str) -> R<SocketAddr> {
    text.parse::<SocketAddr>()
        .map_err(|_| ConfigError::at(key, format!("{text:?} is not an ip:port address")))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn readable(key: &str, path: &Path) -> R<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| ConfigError::at(key, format!("cannot read {}: {e}", path.display())))
}

/// Parses `scheme://host[:port][/]` into scheme, authority and address.
fn member_url(key: &str, url: &str) -> R<(Scheme, String, SocketAddr)> {
    let (scheme_text, rest) = url.split_once("://").ok_or_else(|| {
        ConfigError::at(key, format!("{url:?} is not a URL (scheme://host:port)"))
    })?;
    let (scheme, default_port) = match scheme_text {
        "http" => (Scheme::Http, 80),
        "ajp" => (Scheme::Ajp, 8009),
        "https" => {
            return Err(ConfigError::at(
                key,
                "unsupported scheme \"https\" (TLS to members is not supported)",
            ));
        }
        other => {
            return Err(ConfigError::at(
                key,
                format!("unsupported scheme {other:?}"),
            ));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(ConfigError::at(
            key,
            format!("{url:?}: expected scheme://host:port with no path, query or user"),
        ));
    }
    let parsed: http::uri::Authority = authority
        .parse()
        .map_err(|e| ConfigError::at(key, format!("{url:?}: bad host or port: {e}")))?;
    let port = parsed.port_u16().unwrap_or(default_port);
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    let address = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConfigError::at(key, format!("cannot resolve {host:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::at(key, format!("{host:?} resolves to no address")))?;
    let authority = if parsed.port().is_some() {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    };
    Ok((scheme, authority, address))
}

fn valid_route(route: &str) -> bool {
    !route.is_empty()
        && route.len() <= 64
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn validate(mut config: Config, base: &Path) -> R<Settings> {
    let session_store = config
        .session_store
        .as_ref()
        .map(|s| store(s, &config.callout_upstreams))
        .transpose()?;
    if let Some(path) = config.access_log.path.take() {
        let path = resolve(base, &path);
        // The file itself is created when keel starts; a directory that is not there is a typo.
        let dir = path.parent().unwrap_or(Path::new("/"));
        if path.file_name().is_none() || !dir.is_dir() {
            return Err(ConfigError::at(
                "access_log.path",
                format!("{} is not a file in an existing directory", path.display()),
            ));
        }
        config.access_log.path = Some(path);
    }
    if config.listeners.is_empty() {
        return Err(ConfigError::at(
            "listeners",
            "at least one listener is needed",
        ));
    }
    let mut listeners = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let address = socket_addr(&format!("{key}.address"), &l.address)?;
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                let cert = resolve(base, &t.cert);
                let keyf = resolve(base, &t.key);
                readable(&format!("{key}.tls.cert"), &cert)?;
                readable(&format!("{key}.tls.key"), &keyf)?;
                Some((cert, keyf))
            }
        };
        listeners.push(ListenerSettings { address, tls });
    }

    if config.workers > 1024 {
        return Err(ConfigError::at(
            "workers",
            "must be 0 (one per core) or at most 1024",
        ));
    }
    let lim = &config.limits;
    if lim.max_headers == 0 {
        return Err(ConfigError::at("limits.max_headers", "must be at least 1"));
    }
    if lim.max_header_bytes < 1024 {
        return Err(ConfigError::at(
            "limits.max_header_bytes",
            "must be at least 1024",
        ));
    }
    if lim.idle_timeout.0.is_zero() {
        return Err(ConfigError::at(
            "limits.idle_timeout",
            "must be longer than 0 (a connection would close before its first request)",
        ));
    }
    if lim.send_timeout.0.is_zero() {
        return Err(ConfigError::at(
            "limits.send_timeout",
            "must be longer than 0 (every response that fills the socket would be cut off)",
        ));
    }

    let b = &config.balancer;
    if b.members.is_empty() {
        return Err(ConfigError::at(
            "balancer.members",
            "at least one member is needed",
        ));
    }
    if b.members.len() > MAX_MEMBERS {
        return Err(ConfigError::at(
            "balancer.members",
            format!("at most {MAX_MEMBERS} members"),
        ));
    }
    let mut members = Vec::new();
    let mut routes = BTreeSet::new();
    for (i, m) in b.members.iter().enumerate() {
        let key = format!("balancer.members[{i}]");
        if !valid_route(&m.route) {
            return Err(ConfigError::at(
                format!("{key}.route"),
                format!("{:?}: a route is 1-64 of [A-Za-z0-9_-]", m.route),
            ));
        }
        if !routes.insert(m.route.clone()) {
            return Err(ConfigError::at(
                format!("{key}.route"),
                format!("duplicate route {:?}", m.route),
            ));
        }
        if m.weight == 0 || m.weight > 1000 {
            return Err(ConfigError::at(format!("{key}.weight"), "must be 1..=1000"));
        }
        let (scheme, authority, address) = member_url(&format!("{key}.url"), &m.url)?;
        if scheme == Scheme::Ajp && crate::upstream::ajp_constructor().is_none() {
            return Err(ConfigError::at(
                format!("{key}.url"),
                "ajp upstream not available in this build",
            ));
        }
        members.push(MemberSettings {
            route: m.route.clone(),
            url: m.url.clone(),
            scheme,
            authority,
            address,
            weight: m.weight,
            status: m.status,
        });
    }
    HeaderName::from_bytes(b.sticky.header.as_bytes()).map_err(|_| {
        ConfigError::at(
            "balancer.sticky.header",
            format!("{:?} is not a header name", b.sticky.header),
        )
    })?;
    let h = &b.health;
    if h.enabled && h.interval.0.is_zero() {
        return Err(ConfigError::at(
            "balancer.health.interval",
            "must be more than 0",
        ));
    }
    if h.passes == 0 {
        return Err(ConfigError::at(
            "balancer.health.passes",
            "must be at least 1",
        ));
    }
    if h.fails == 0 {
        return Err(ConfigError::at(
            "balancer.health.fails",
            "must be at least 1",
        ));
    }
    if !h.path.starts_with('/') || http::uri::PathAndQuery::try_from(h.path.as_str()).is_err() {
        return Err(ConfigError::at(
            "balancer.health.path",
            format!("{:?} is not an absolute path", h.path),
        ));
    }
    let r = &b.retry;
    if !(r.backoff >= 1.0 && r.backoff <= 10.0) {
        return Err(ConfigError::at(
            "balancer.retry.backoff",
            "must be 1.0..=10.0",
        ));
    }
    if r.max_interval.0 < r.interval.0 {
        return Err(ConfigError::at(
            "balancer.retry.max_interval",
            "must be at least balancer.retry.interval",
        ));
    }
    for (i, s) in r.failonstatus.iter().enumerate() {
        if !(100..=599).contains(s) {
            return Err(ConfigError::at(
                format!("balancer.retry.failonstatus[{i}]"),
                format!("{s} is not an HTTP status"),
            ));
        }
    }
    for (k, v) in [
        ("balancer.timeouts.connect", b.timeouts.connect),
        (
            "balancer.timeouts.response_header",
            b.timeouts.response_header,
        ),
        ("balancer.timeouts.total", b.timeouts.total),
        ("balancer.timeouts.body_idle", b.timeouts.body_idle),
        ("balancer.ajp.ping_timeout", b.ajp.ping_timeout),
    ] {
        if v.0.is_zero() {
            return Err(ConfigError::at(k, "must be more than 0"));
        }
    }
    if !(8192..=65536).contains(&b.ajp.packet_size) {
        return Err(ConfigError::at(
            "balancer.ajp.packet_size",
            "must be 8192..=65536",
        ));
    }
    if b.ajp.max_connections == Some(0) {
        return Err(ConfigError::at(
            "balancer.ajp.max_connections",
            "must be more than 0 (leave it out for no limit)",
        ));
    }
    if b.ajp.max_headers == 0 {
        return Err(ConfigError::at(
            "balancer.ajp.max_headers",
            "must be more than 0",
        ));
    }
    let secret = match &b.ajp.secret_file {
        None => None,
        Some(p) => {
            let p = resolve(base, p);
            let s = std::fs::read_to_string(&p).map_err(|e| {
                ConfigError::at(
                    "balancer.ajp.secret_file",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            Some(s.trim().to_string())
        }
    };

    if members.iter().any(|m| m.scheme == Scheme::Ajp) && secret.is_none() && b.ajp.secret_required
    {
        return Err(ConfigError::at(
            "balancer.ajp.secret_file",
            crate::upstream::ajp::NO_SECRET,
        ));
    }
    if secret.is_some() && !b.ajp.secret_required {
        return Err(ConfigError::at(
            "balancer.ajp.secret_required",
            "false, but balancer.ajp.secret_file is set: remove one",
        ));
    }
    let route_map: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .map(|m| {
            (
                m.route.clone(),
                serde_json::Value::String(m.address.to_string()),
            )
        })
        .collect();
    let mut filters = Vec::new();
    let mut names = BTreeSet::new();
    for (i, f) in config.filters.iter().enumerate() {
        let key = format!("filters[{i}]");
        if f.name.is_empty() || !names.insert(f.name.clone()) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!("{:?}: names must be non-empty and unique", f.name),
            ));
        }
        let wasm = resolve(base, &f.wasm);
        readable(&format!("{key}.wasm"), &wasm)?;
        let mut plugin = f.config.clone();
        if f.inject_routes {
            let obj = match plugin.get_or_insert_with(|| serde_json::json!({})) {
                serde_json::Value::Object(o) => o,
                _ => {
                    return Err(ConfigError::at(
                        format!("{key}.config"),
                        "must be a mapping when inject_routes is true",
                    ));
                }
            };
            if obj.contains_key("routes") {
                return Err(ConfigError::at(
                    format!("{key}.config.routes"),
                    "set by inject_routes from the members; remove one of the two",
                ));
            }
            obj.insert(
                "routes".into(),
                serde_json::Value::Object(route_map.clone()),
            );
        }
        // A string goes as its bytes, as Envoy passes a `google.protobuf.StringValue`
        // configuration (`source/extensions/common/wasm/plugin.cc` `anyToBytes`); anything else
        // as JSON.
        let to_bytes = |v: &Option<serde_json::Value>| match v {
            None => Vec::new(),
            Some(serde_json::Value::String(text)) => text.clone().into_bytes(),
            Some(v) => v.to_string().into_bytes(),
        };
        filters.push(FilterSettings {
            name: f.name.clone(),
            wasm,
            plugin_config: to_bytes(&plugin),
            vm_config: to_bytes(&f.vm_config),
            root_id: f.root_id.clone(),
            vm_id: f.vm_id.clone(),
            failure_policy: match f.failure_policy {
                FailurePolicy::FailClosed => keel_wasm::FailurePolicy::FailClosed,
                FailurePolicy::FailOpen => keel_wasm::FailurePolicy::FailOpen,
            },
            limits: keel_wasm::Limits {
                memory_bytes: f.limits.memory_bytes,
                callback_deadline: f.limits.callback_deadline.0,
                start_deadline: f.limits.start_deadline.0,
                max_buffered_body: f.limits.max_buffered_body,
                pause_timeout: f.limits.pause_timeout.0,
            },
            env: f.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        });
    }

    let mut callouts = BTreeMap::new();
    let mut callouts_http2 = BTreeSet::new();
    for (name, upstream) in &config.callout_upstreams {
        let key = format!("callout_upstreams.{name}");
        let (scheme, _, address) = member_url(&key, &upstream.url)?;
        if scheme != Scheme::Http {
            return Err(ConfigError::at(key, "callout upstreams must be http://"));
        }
        callouts.insert(name.clone(), address);
        if upstream.protocol == CalloutProtocol::Http2 {
            callouts_http2.insert(name.clone());
        }
    }

    let admin = match &config.admin {
        None => None,
        Some(a) => {
            let address = socket_addr("admin.address", &a.address)?;
            if !address.ip().is_loopback() && !a.allow_remote {
                return Err(ConfigError::at(
                    "admin.address",
                    format!("{address} is not loopback (set admin.allow_remote to allow it)"),
                ));
            }
            let p = resolve(base, &a.token_file);
            let token = std::fs::read_to_string(&p).map_err(|e| {
                ConfigError::at(
                    "admin.token_file",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            let token = token.trim().to_string();
            if token.len() < 16 {
                return Err(ConfigError::at(
                    "admin.token_file",
                    "the token must be at least 16 characters",
                ));
            }
            Some(AdminSettings { address, token })
        }
    };

    for (i, name) in config.access_log.session_cookies.iter().enumerate() {
        if name.is_empty() || name.contains([';', '=', ' ']) {
            return Err(ConfigError::at(
                format!("access_log.session_cookies[{i}]"),
                format!("{name:?} is not a cookie name"),
            ));
        }
    }

    Ok(Settings {
        listeners,
        members,
        filters,
        callouts,
        callouts_http2,
        admin,
        session_store,
        ajp: AjpSettings {
            secret,
            secret_required: b.ajp.secret_required,
            packet_size: b.ajp.packet_size,
            ping: match b.ajp.ping {
                AjpPing::Idle => Ping::Idle,
                AjpPing::Connect => Ping::Connect,
                AjpPing::Always => Ping::Always,
            },
            max_headers: b.ajp.max_headers,
            max_connections: b.ajp.max_connections,
            ping_timeout: b.ajp.ping_timeout.0,
        },
        config,
    })
}

/// The `session_store` section.
fn store(s: &SessionStore, callouts: &BTreeMap<String, CalloutUpstream>) -> R<StoreSettings> {
    if s.upstream.is_empty() || callouts.contains_key(&s.upstream) {
        return Err(ConfigError::at(
            "session_store.upstream",
            format!(
                "{:?} must be a name of its own, not one of callout_upstreams",
                s.upstream
            ),
        ));
    }
    if s.max_state_bytes == 0 || s.max_state_bytes > 1024 * 1024 {
        return Err(ConfigError::at(
            "session_store.max_state_bytes",
            "must be 1..=1048576 (memcached's item size)",
        ));
    }
    if s.default_ttl.0 < Duration::from_secs(1) {
        return Err(ConfigError::at(
            "session_store.default_ttl",
            "must be at least 1s",
        ));
    }
    let backend = match (s.kind, &s.nodes) {
        (StoreKind::Memory, None) if s.failover_nodes.is_empty() => StoreBackend::Memory,
        (StoreKind::Memory, _) => {
            return Err(ConfigError::at(
                "session_store.nodes",
                "only for type: memcached",
            ));
        }
        (StoreKind::Memcached, None) => {
            return Err(ConfigError::at(
                "session_store.nodes",
                "type: memcached needs nodes (n1:host:port,n2:host:port)",
            ));
        }
        (StoreKind::Memcached, Some(nodes)) => {
            let nodes = keel_store::Nodes::parse(nodes, &s.failover_nodes)
                .map_err(|e| ConfigError::at("session_store.nodes", e.to_string()))?;
            for (key, v) in [
                ("session_store.connect_timeout", s.connect_timeout),
                ("session_store.op_timeout", s.op_timeout),
                ("session_store.retry_delay", s.retry_delay),
            ] {
                if v.0.is_zero() {
                    return Err(ConfigError::at(key, "must be more than 0"));
                }
            }
            if s.max_connections == 0 {
                return Err(ConfigError::at(
                    "session_store.max_connections",
                    "must be more than 0",
                ));
            }
            let transport = keel_store::node::TransportConfig {
                connect_timeout: s.connect_timeout.0,
                op_timeout: s.op_timeout.0,
                max_connections: s.max_connections,
                max_idle: s.max_connections,
                retry_delay: s.retry_delay.0,
                ..keel_store::node::TransportConfig::default()
            };
            StoreBackend::Memcached { nodes, transport }
        }
    };
    Ok(StoreSettings {
        upstream: s.upstream.clone(),
        backend,
        config: keel_store::StoreConfig {
            max_state_bytes: s.max_state_bytes,
            default_ttl: s.default_ttl.0,
        },
    })
}
