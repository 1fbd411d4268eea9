//! keel's configuration: one YAML file, read with `serde_yaml_ng` (a maintained fork of the
//! unmaintained `serde_yaml`, same API and YAML 1.1 behaviour) through `serde_path_to_error`,
//! so that every error names its key path (`balancer.members[1].url: unsupported scheme
//! "htp"`). [`schema`] is the file as written, [`validate`] resolves it into [`Settings`].

pub mod duration;
pub mod schema;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use schema::{Config, FailurePolicy, LbMethod, MemberStatus};

use crate::upstream::AjpSettings;

/// The configuration `keel serve` uses without `--config`: one listener on 127.0.0.1:8080
/// and two loopback HTTP members.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// A configuration error, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is wrong.
    #[error("{key}: {message}")]
    Invalid {
        /// The key path, e.g. `balancer.members[1].url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key path, if the error is about a key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Read { .. } => None,
        }
    }
}

/// How a member is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `ajp://`
    Ajp,
}

/// A validated member.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// Route (jvmRoute).
    pub route: String,
    /// The URL as written.
    pub url: String,
    /// Transport.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: String,
    /// Resolved address.
    pub address: SocketAddr,
    /// Weight.
    pub weight: u32,
    /// Initial status.
    pub status: MemberStatus,
}

/// A validated listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Bind address.
    pub address: SocketAddr,
    /// Certificate chain and key files (resolved paths).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A validated filter: keel-wasm's `FilterSpec` (paths resolved, routes injected if asked).
pub use keel_wasm::FilterSpec as FilterSettings;

/// A validated admin section.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Bind address.
    pub address: SocketAddr,
    /// The bearer token.
    pub token: String,
}

/// The configuration after validation: what the server runs on.
#[derive(Debug)]
pub struct Settings {
    /// The file as written (for the plain settings: limits, balancer knobs, timeouts).
    pub config: Config,
    /// Listeners.
    pub listeners: Vec<ListenerSettings>,
    /// Members, in file order.
    pub members: Vec<MemberSettings>,
    /// Filters, in chain order.
    pub filters: Vec<FilterSettings>,
    /// Callout upstreams (name → address).
    pub callouts: BTreeMap<String, SocketAddr>,
    /// The callout upstreams whose http callouts speak HTTP/2 (h2c).
    pub callouts_http2: BTreeSet<String>,
    /// Admin listener.
    pub admin: Option<AdminSettings>,
    /// AJP settings.
    pub ajp: AjpSettings,
    /// The session store, when configured.
    pub session_store: Option<StoreSettings>,
}

/// A validated `session_store` section: what [`StoreSettings::build`] makes a store of.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// The callout upstream name served in process.
    pub upstream: String,
    /// Memory, or memcached on these nodes with this transport.
    pub backend: StoreBackend,
    /// Size limit and default TTL.
    pub config: keel_store::StoreConfig,
}

/// Where the store keeps sessions.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreBackend {
    /// In process.
    Memory,
    /// memcached.
    Memcached {
        /// The nodes (`n1:host:port,…`, with the failover nodes).
        nodes: keel_store::Nodes,
        /// Timeouts, pool size, retry delay.
        transport: keel_store::node::TransportConfig,
    },
}

impl StoreSettings {
    /// The store (memcached connects lazily: this never fails).
    pub fn build(&self) -> keel_store::Store {
        match &self.backend {
            StoreBackend::Memory => keel_store::Store::memory(self.config.clone()),
            StoreBackend::Memcached { nodes, transport } => {
                keel_store::Store::memcached(nodes, transport.clone(), self.config.clone())
            }
        }
    }
}

/// Parses and validates configuration text; relative paths are taken from `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Settings, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            "(file)".to_string()
        } else {
            key
        };
        let message = e.into_inner().to_string();
        // serde_yaml_ng prefixes its own (shorter) path; the key already says where.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') => rest.to_string(),
            _ => message,
        };
        ConfigError::at(key, message)
    })?;
    validate::validate(config, base_dir)
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

/// The embedded default configuration.
pub fn default_settings() -> Result<Settings, ConfigError> {
    parse(DEFAULT_CONFIG, Path::new("."))
}

/// A complete example configuration (every section; used by the documentation and tested).
pub const EXAMPLE_CONFIG: &str = include_str!("example.yaml");
