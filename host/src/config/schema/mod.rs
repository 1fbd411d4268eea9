//! The configuration file as written (serde structs, `deny_unknown_fields` everywhere).
//! [`super::validate`] turns it into [`super::Settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::ConfigDuration;

mod balancer;
mod callout;

pub use balancer::{
    Ajp, AjpPing, Balancer, Health, LbMethod, Member, MemberStatus, Pool, Retry, Sticky, Timeouts,
};
pub use callout::{CalloutProtocol, CalloutUpstream};

fn d(ms: u64) -> ConfigDuration {
    ConfigDuration(Duration::from_millis(ms))
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect.
    pub listeners: Vec<Listener>,
    /// Request limits (client side).
    #[serde(default)]
    pub limits: Limits,
    /// X-Forwarded-* / Forwarded.
    #[serde(default)]
    pub forwarded: Forwarded,
    /// The proxy-wasm filter chain, in order.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Members and how requests are spread over them.
    pub balancer: Balancer,
    /// Named upstreams a filter may reach with `proxy_http_call` and gRPC (name →
    /// `http://host:port`, or `{url, protocol: http2}` for http callouts over h2c).
    #[serde(default)]
    pub callout_upstreams: BTreeMap<String, CalloutUpstream>,
    /// The admin listener (absent: no admin listener).
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLog,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: ConfigDuration,
    /// Worker threads, each with its own listening sockets, filter instances and upstream
    /// connections (0: one per core). Taken at start only.
    #[serde(default)]
    pub workers: usize,
    /// The session store the `session` filter reaches as a callout upstream, served in
    /// process (absent: no store).
    #[serde(default)]
    pub session_store: Option<SessionStore>,
}

/// `session_store:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStore {
    /// `memory` (one keel instance, lost on restart: the demo) or `memcached`.
    #[serde(rename = "type")]
    pub kind: StoreKind,
    /// The callout upstream name the `session` filter calls (its `store_upstream`).
    #[serde(default = "default_store_upstream")]
    pub upstream: String,
    /// memcached nodes, `n1:host:port,n2:host:port` (memcached-session-manager's
    /// `memcachedNodes`).
    #[serde(default)]
    pub nodes: Option<String>,
    /// Node ids used only when no primary is available (msm's `failoverNodes`), comma
    /// separated.
    #[serde(default)]
    pub failover_nodes: String,
    /// The largest state a backend may store (bytes).
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: usize,
    /// The idle timeout when a request does not say (the filter always says).
    #[serde(default = "default_store_ttl")]
    pub default_ttl: ConfigDuration,
    /// memcached: TCP connect timeout per node.
    #[serde(default = "default_store_connect")]
    pub connect_timeout: ConfigDuration,
    /// memcached: how long one command may take.
    #[serde(default = "default_store_op")]
    pub op_timeout: ConfigDuration,
    /// memcached: a node whose command failed is skipped this long.
    #[serde(default = "default_store_retry")]
    pub retry_delay: ConfigDuration,
    /// memcached: connections per node at most.
    #[serde(default = "default_store_connections")]
    pub max_connections: usize,
}

/// `session_store.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In process.
    Memory,
    /// memcached nodes.
    Memcached,
}

fn default_store_upstream() -> String {
    "keel_store".to_owned()
}

fn default_max_state_bytes() -> usize {
    4096
}

fn default_store_ttl() -> ConfigDuration {
    d(30 * 60 * 1000)
}

fn default_store_connect() -> ConfigDuration {
    d(500)
}

fn default_store_op() -> ConfigDuration {
    d(1000)
}

fn default_store_retry() -> ConfigDuration {
    d(1000)
}

fn default_store_connections() -> usize {
    8
}

fn default_shutdown_grace() -> ConfigDuration {
    d(30_000)
}

/// One listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port`.
    pub address: String,
    /// TLS (certificate chain and key, PEM); ALPN offers h2 and http/1.1.
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// TLS files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Client-side limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Total request header bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Number of request headers (431 beyond).
    pub max_headers: usize,
    /// Request body bytes (413 beyond).
    pub max_body_bytes: u64,
    /// Time allowed for a client to send the request head (and, on HTTP/1.1 keep-alive, for
    /// the next request to start).
    pub header_read_timeout: ConfigDuration,
    /// A client connection without a request in flight for this long is shut down (HTTP/2:
    /// GOAWAY).
    pub idle_timeout: ConfigDuration,
    /// HTTP/1: a client that takes none of the response for this long (a write waits for it
    /// the whole time) is cut off, as nginx's `send_timeout`.
    pub send_timeout: ConfigDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: d(10_000),
            idle_timeout: d(60_000),
            send_timeout: d(60_000),
        }
    }
}

/// Which forwarding headers keel adds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarded {
    /// X-Forwarded-For (appended).
    pub x_forwarded_for: bool,
    /// X-Forwarded-Proto.
    pub x_forwarded_proto: bool,
    /// X-Forwarded-Host.
    pub x_forwarded_host: bool,
    /// RFC 7239 Forwarded (appended).
    pub forwarded: bool,
    /// X-Request-Id (a UUID v4) on every request without one, before the filters run, as
    /// Envoy's `generate_request_id` (true by default there too).
    pub generate_request_id: bool,
}

impl Default for Forwarded {
    fn default() -> Self {
        Self {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            forwarded: false,
            generate_request_id: true,
        }
    }
}

/// One filter of the chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Name (for logs and metrics).
    pub name: String,
    /// The `.wasm` file (relative to the configuration file).
    pub wasm: PathBuf,
    /// Plugin configuration: a string is handed to the filter as it is (Envoy's
    /// `StringValue`), any other YAML as JSON.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// VM configuration: a string as it is, any other YAML as JSON.
    #[serde(default)]
    pub vm_config: Option<serde_json::Value>,
    /// proxy-wasm root id.
    #[serde(default)]
    pub root_id: String,
    /// proxy-wasm vm id.
    #[serde(default)]
    pub vm_id: String,
    /// What a failing filter does to the request.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Resource limits.
    #[serde(default)]
    pub limits: FilterLimits,
    /// Fill the plugin configuration's `routes` map (route → `ip:port`) from the members.
    #[serde(default)]
    pub inject_routes: bool,
    /// Environment variables the filter sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Filter failure policy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// 503 for the request.
    #[default]
    FailClosed,
    /// The request goes on without that filter.
    FailOpen,
}

/// Filter resource limits. The defaults are Envoy's (README, "Envoy fidelity") except the
/// per-request callback deadline, keel's safety choice; `0s` turns a deadline off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterLimits {
    /// Linear memory per instance (Envoy: 1 GiB).
    pub memory_bytes: u64,
    /// Deadline per request-path or root callback (Envoy: none).
    pub callback_deadline: ConfigDuration,
    /// Deadline per start-up callback: `_initialize`/`_start`, `on_vm_start`, `on_configure`
    /// (Envoy: none).
    pub start_deadline: ConfigDuration,
    /// Body bytes a filter may hold.
    pub max_buffered_body: usize,
    /// How long a paused stream may stay paused before it is answered 408 (Envoy: the stream
    /// idle timeout, 5 minutes).
    pub pause_timeout: ConfigDuration,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 1024 * 1024 * 1024,
            callback_deadline: d(100),
            start_deadline: d(60_000),
            max_buffered_body: 1024 * 1024,
            pause_timeout: d(300_000),
        }
    }
}

/// The admin listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `ip:port` (loopback by default).
    #[serde(default = "admin_address")]
    pub address: String,
    /// File holding the bearer token.
    pub token_file: PathBuf,
    /// Allow a non-loopback address.
    #[serde(default)]
    pub allow_remote: bool,
}

fn admin_address() -> String {
    "127.0.0.1:9901".into()
}

/// The access log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// Whether to write it.
    pub enabled: bool,
    /// The file the lines are appended to (opened again on reload, for log rotation); without
    /// one they go to keel's log (target `keel::access`, level info), a write per line.
    pub path: Option<PathBuf>,
    /// Cookie names that hold the session id (hashed in the log).
    pub session_cookies: Vec<String>,
    /// Path parameter that holds the session id.
    pub session_path_parameter: String,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            session_cookies: vec!["JSESSIONID".into()],
            session_path_parameter: "jsessionid".into(),
        }
    }
}
