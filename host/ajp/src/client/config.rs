//! Client configuration: packet size, the secret (required unless explicitly none),
//! timeouts and the pool's limits.

use std::time::Duration;

use crate::wire::PacketSize;

/// The connector's secret. There is no default: the configuration must either give the
/// secret or say explicitly that the connector has none.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Sent as attribute 0x0C with every request (Tomcat `secret`, `secretRequired=true`).
    Value(String),
    /// The connector has `secretRequired="false"`. Only for trusted networks.
    ExplicitlyNone,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret::Value(<redacted>)"),
            Secret::ExplicitlyNone => f.write_str("Secret::ExplicitlyNone"),
        }
    }
}

/// The connection pool of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// At most this many connections (busy and idle) to the member; `None` = no limit.
    pub max_connections: Option<usize>,
    /// At most this many idle connections are kept.
    pub max_idle: usize,
    /// Idle connections are closed after this (Tomcat never closes them by default, and
    /// firewalls drop idle flows silently: keep this shorter than both).
    pub idle_timeout: Duration,
    /// A connection idle longer than this is checked with CPING before it is reused.
    pub cping_after_idle: Duration,
    /// How long a CPONG may take.
    pub cping_timeout: Duration,
    /// How long to wait for a free connection when `max_connections` is reached.
    pub wait_timeout: Duration,
    /// When a connection is checked with CPING before a request.
    pub ping: Ping,
}

/// When the pool checks a connection with CPING before a request goes out on it. Tomcat
/// answers CPING on a worker thread, so a CPONG also says a thread is free; a CPING that
/// times out ends the checkout (nothing sent: any request may go to another member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ping {
    /// Only pooled connections idle for `cping_after_idle` or longer.
    Idle,
    /// Those, and every new connection (mod_jk's `ping_mode=C`): a hung member that still
    /// completes TCP connects (its accept backlog) gets no request.
    #[default]
    Connect,
    /// Before every request (httpd's `ping=`, mod_jk's `ping_mode=P`): a round trip more
    /// per request.
    Always,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: None,
            max_idle: 64,
            idle_timeout: Duration::from_secs(60),
            cping_after_idle: Duration::from_secs(5),
            cping_timeout: Duration::from_secs(2),
            wait_timeout: Duration::from_secs(5),
            ping: Ping::default(),
        }
    }
}

/// Everything the client needs besides the member's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Must equal the connector's `packetSize`.
    pub packet_size: PacketSize,
    /// The connector's secret.
    pub secret: Secret,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long the member may take to answer (SEND_HEADERS or GET_BODY_CHUNK) after the
    /// request or the last body chunk was written; time spent waiting for the client's body
    /// does not count. Also bounds each write to the member.
    pub response_timeout: Duration,
    /// The most header fields a forward request may carry (Tomcat's `maxHeaderCount`, 100 by
    /// default); more are refused with 431 before a connection is touched.
    pub max_headers: usize,
    /// The pool.
    pub pool: PoolConfig,
}

impl ClientConfig {
    /// Defaults (8192-byte packets, 5 s connect, 60 s response) with the given secret.
    pub fn new(secret: Secret) -> Self {
        ClientConfig {
            packet_size: PacketSize::DEFAULT,
            secret,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            max_headers: 100,
            pool: PoolConfig::default(),
        }
    }

    /// Checks the configuration; the message says how to fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Secret::Value(s) = &self.secret {
            if s.is_empty() {
                return Err(ConfigError::EmptySecret);
            }
            if s.contains('\0') || s.len() >= 0xFFFF {
                return Err(ConfigError::BadSecret);
            }
        }
        if self.pool.max_connections == Some(0) {
            return Err(ConfigError::ZeroConnections);
        }
        Ok(())
    }

    /// The secret as an option, for the forward request.
    pub(crate) fn secret_value(&self) -> Option<&str> {
        match &self.secret {
            Secret::Value(s) => Some(s),
            Secret::ExplicitlyNone => None,
        }
    }
}

/// A configuration the client refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An empty secret (Tomcat treats it as none).
    #[error(
        "the AJP secret is empty: set it to the connector's `secret` attribute, or say \
         explicitly that the connector has none (secretRequired=\"false\")"
    )]
    EmptySecret,
    /// A secret that cannot be an AJP string.
    #[error("the AJP secret contains a NUL byte or is 65535 bytes or longer")]
    BadSecret,
    /// A pool that allows no connection.
    #[error("max_connections is 0: allow at least one connection or leave it unset")]
    ZeroConnections,
}
