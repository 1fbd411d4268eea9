//! The errors of the runtime: building a chain, and a callout's failure.

use std::path::PathBuf;

/// Why a [`crate::FilterChain`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The `.wasm` file could not be read.
    #[error("filter {filter}: cannot read {path}: {source}")]
    Read {
        /// The filter's name.
        filter: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The module does not compile, does not link (an import keel lacks) or is not proxy-wasm.
    #[error("filter {filter}: invalid module: {reason}")]
    Module {
        /// The filter's name.
        filter: String,
        /// What is wrong.
        reason: String,
    },
    /// `_initialize`, the root context or `on_vm_start` failed.
    #[error("filter {filter}: the VM did not start: {reason}")]
    Start {
        /// The filter's name.
        filter: String,
        /// What happened (trap message or the filter's last log line).
        reason: String,
    },
    /// `on_configure` returned false (or failed).
    #[error("filter {filter}: on_configure rejected the configuration: {message}")]
    Configure {
        /// The filter's name.
        filter: String,
        /// The last message the filter logged, or the trap.
        message: String,
    },
    /// The engine could not be created.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// A spec is unusable (zero workers, bad limits).
    #[error("filter {filter}: {reason}")]
    Spec {
        /// The filter's name.
        filter: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why an http callout failed. As in Envoy, whose callouts go through its router, a timeout and
/// an upstream that cannot be reached arrive as responses (504, 503: see `ticker::start`); any
/// other failure is a reset, which the filter sees as a response with no headers.
#[derive(Debug, thiserror::Error)]
pub enum CalloutError {
    /// No callout upstream of that name.
    #[error("unknown callout upstream {0}")]
    UnknownUpstream(String),
    /// The callout did not answer in time.
    #[error("callout timed out")]
    Timeout,
    /// The upstream could not be connected to.
    #[error("callout could not connect: {0}")]
    Connect(String),
    /// The exchange failed after the connection was up (a reset).
    #[error("callout failed: {0}")]
    Failed(String),
}
