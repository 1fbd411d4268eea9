//! The configuration file as written (serde structs, `deny_unknown_fields` everywhere).
//! [`super::validate`] turns it into [`super::Settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::ConfigDuration;

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
    /// Named upstreams a filter may reach with `proxy_http_call` (name → `http://host:port`).
    #[serde(default)]
    pub callout_upstreams: BTreeMap<String, String>,
    /// The admin listener (absent: no admin listener).
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLog,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: ConfigDuration,
    /// Reserved for the session store (a later issue): refused for now.
    #[serde(default)]
    pub session_store: Option<serde_yaml_ng::Value>,
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
    /// Time allowed for a client to send the request head.
    pub header_read_timeout: ConfigDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: d(10_000),
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
}

impl Default for Forwarded {
    fn default() -> Self {
        Self {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            forwarded: false,
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
    /// Plugin configuration (any YAML; handed to the filter as JSON).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// VM configuration (any YAML; handed as JSON).
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

/// Filter resource limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterLimits {
    /// Linear memory per instance.
    pub memory_bytes: u64,
    /// Deadline per callback.
    pub callback_deadline: ConfigDuration,
    /// Body bytes a filter may hold.
    pub max_buffered_body: usize,
    /// How long a paused stream may stay paused.
    pub pause_timeout: ConfigDuration,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            callback_deadline: d(100),
            max_buffered_body: 1024 * 1024,
            pause_timeout: d(5_000),
        }
    }
}

/// The balancer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balancer {
    /// The members.
    pub members: Vec<Member>,
    /// How a member is picked for a request without a (usable) route.
    #[serde(default)]
    pub lbmethod: LbMethod,
    /// Sticky routing.
    #[serde(default)]
    pub sticky: Sticky,
    /// Active health checks.
    #[serde(default)]
    pub health: Health,
    /// Passive ejection and failover.
    #[serde(default)]
    pub retry: Retry,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Connection pool.
    #[serde(default)]
    pub pool: Pool,
    /// AJP settings for `ajp://` members.
    #[serde(default)]
    pub ajp: Ajp,
}

/// One member.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The route (Tomcat's jvmRoute).
    pub route: String,
    /// `http://host:port` or `ajp://host:port`.
    pub url: String,
    /// Weight for byrequests (1..=1000).
    #[serde(default = "one")]
    pub weight: u32,
    /// Initial status.
    #[serde(default)]
    pub status: MemberStatus,
}

fn one() -> u32 {
    1
}

/// A member's administrative status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Takes new and sticky requests.
    #[default]
    Active,
    /// Takes requests only when no active member can.
    HotStandby,
    /// Takes only requests already bound to it (sticky).
    Drain,
    /// Takes nothing.
    Disabled,
}

/// lbmethod.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbMethod {
    /// Smooth weighted round robin.
    #[default]
    Byrequests,
    /// Fewest requests in flight.
    Bybusyness,
}

/// Sticky settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sticky {
    /// The routing header set by the sticky filter (removed before forwarding).
    pub header: String,
    /// 503 instead of failover when the sticky member cannot take the request.
    pub force: bool,
}

impl Default for Sticky {
    fn default() -> Self {
        Self {
            header: "x-keel-route".into(),
            force: false,
        }
    }
}

/// Active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Whether active checks run.
    pub enabled: bool,
    /// Time between checks.
    pub interval: ConfigDuration,
    /// Time a check may take.
    pub timeout: ConfigDuration,
    /// Consecutive passes that bring a member back.
    pub passes: u32,
    /// Consecutive failures that take a member out.
    pub fails: u32,
    /// HTTP path for the GET (HTTP members).
    pub path: String,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: d(5_000),
            timeout: d(2_000),
            passes: 1,
            fails: 2,
            path: "/".into(),
        }
    }
}

/// Passive ejection and failover.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// How long a failed member stays in error before it is tried again.
    pub interval: ConfigDuration,
    /// Factor the interval grows by for each failure in a row.
    pub backoff: f64,
    /// Upper bound of the grown interval.
    pub max_interval: ConfigDuration,
    /// Attempts per request across members (0: one per member).
    pub maxattempts: u32,
    /// Statuses treated as failures for idempotent requests.
    pub failonstatus: Vec<u16>,
    /// Request bodies up to this size are held whole for idempotent methods (replayable).
    pub max_replay_body: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            interval: d(10_000),
            backoff: 2.0,
            max_interval: d(120_000),
            maxattempts: 0,
            failonstatus: Vec::new(),
            max_replay_body: 64 * 1024,
        }
    }
}

/// Upstream timeouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect (504).
    pub connect: ConfigDuration,
    /// Request sent → response head (504).
    pub response_header: ConfigDuration,
    /// Whole exchange up to the response head, across attempts (504).
    pub total: ConfigDuration,
    /// Longest silence within a request or response body (the stream is then cut).
    pub body_idle: ConfigDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: d(2_000),
            response_header: d(60_000),
            total: d(120_000),
            body_idle: d(60_000),
        }
    }
}

/// Connection pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Idle connections are closed after this.
    pub idle_timeout: ConfigDuration,
    /// Idle connections kept per member.
    pub max_idle: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            idle_timeout: d(60_000),
            max_idle: 32,
        }
    }
}

/// AJP settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ajp {
    /// File holding the connector secret.
    pub secret_file: Option<PathBuf>,
    /// Set to `false` to say explicitly that the connector has no secret
    /// (`secretRequired="false"`; trusted networks only).
    pub secret_required: bool,
    /// Packet size (8192..=65536).
    pub packet_size: usize,
}

impl Default for Ajp {
    fn default() -> Self {
        Self {
            secret_file: None,
            secret_required: true,
            packet_size: 8192,
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
    /// Whether to write it (log target `keel::access`, level info).
    pub enabled: bool,
    /// Cookie names that hold the session id (hashed in the log).
    pub session_cookies: Vec<String>,
    /// Path parameter that holds the session id.
    pub session_path_parameter: String,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            session_cookies: vec!["JSESSIONID".into()],
            session_path_parameter: "jsessionid".into(),
        }
    }
}
