//! The `balancer:` section as written: members, lbmethod, sticky, health checks, retry and
//! failover, timeouts, the connection pool, AJP.

use std::path::PathBuf;

use serde::Deserialize;

use super::d;
use crate::config::duration::ConfigDuration;

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
    /// Idle connections kept per member. Keep it at or above the number of requests a member
    /// has in flight at peak: a connection returned beyond it is closed, and the next request
    /// pays for a new one (with 32 and 64 concurrent clients, keel opened ~3500 connections a
    /// second to one member).
    pub max_idle: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            idle_timeout: d(60_000),
            max_idle: 1024,
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
    /// When a connection is checked with CPING before a request.
    pub ping: AjpPing,
    /// How long a CPONG may take (mod_jk's `ping_timeout`); longer: the member is hung or
    /// out of threads, nothing is sent, the request goes to another member.
    pub ping_timeout: ConfigDuration,
    /// The most header fields a request may carry to an AJP member (Tomcat's
    /// `maxHeaderCount`, 100 by default), counted with the headers keel adds.
    pub max_headers: usize,
    /// At most this many connections to each AJP member (busy and idle; no limit when
    /// absent): keep it at or below the connector's `maxThreads`. A request that finds none
    /// free within `timeouts.connect` gets 503, and the member is not blamed.
    pub max_connections: Option<usize>,
}

impl Default for Ajp {
    fn default() -> Self {
        Self {
            secret_file: None,
            secret_required: true,
            packet_size: 8192,
            ping: AjpPing::Connect,
            ping_timeout: d(5000),
            max_headers: 100,
            max_connections: None,
        }
    }
}

/// `balancer.ajp.ping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AjpPing {
    /// Pooled connections idle for a while.
    Idle,
    /// Those and every new connection (mod_jk `ping_mode=C`).
    Connect,
    /// Before every request (httpd `ping=`, mod_jk `ping_mode=P`).
    Always,
}
