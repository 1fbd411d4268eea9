//! What the filter adapters share: reading and validating the plugin configuration in
//! `on_configure`, the header list the logic reads, and counters (`proxy_define_metric`).
//!
//! Compiled into each filter crate with `#[path]`: every filter is its own `cdylib`, and the logic
//! crate (`keel-filter-logic`) stays free of proxy-wasm.

use keel_filter_logic::config::ConfigError;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType};

/// The guest's log level: everything, the host filters by its own level. Not the host's level
/// from `proxy_get_log_level`: Envoy answers with its raw spdlog level, 6 when logging is off, and
/// the SDK (0.2.5) writes that into a `LogLevel` enum that stops at 5 (undefined behaviour). With
/// the host's level taken over, its `critical` would also become the SDK's `Off` and swallow the
/// error line of a refused configuration.
pub const LOG_LEVEL: LogLevel = LogLevel::Trace;

/// The work of `on_configure`: read the plugin configuration and `parse` it. `None` after logging
/// an error that names the filter and the bad field; the caller then returns false. Called again
/// with a new configuration, it reads that one: the caller replaces what it held.
pub fn configure<T>(
    filter: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Option<T> {
    let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(status) => {
            log::error!("{filter}: could not read the plugin configuration (status {status:?})");
            return None;
        }
    };
    match parse(&bytes) {
        Ok(config) => Some(config),
        Err(err) => {
            log::error!("{filter}: invalid plugin configuration: {err}");
            None
        }
    }
}

/// A header map as the SDK's `*_bytes` getters return it, as the pairs the logic reads.
pub fn view(headers: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect()
}

/// `N` counters, defined once per VM (`None` where the host refused one: counting is then
/// skipped).
#[derive(Debug)]
pub struct Counters<const N: usize> {
    ids: [Option<u32>; N],
}

impl<const N: usize> Counters<N> {
    /// Defines a counter with the host for each name.
    pub fn define(names: [&str; N]) -> Self {
        Counters {
            ids: names.map(|name| hostcalls::define_metric(MetricType::Counter, name).ok()),
        }
    }

    /// Adds `n` to the counter at `index` in the names (nothing for 0).
    pub fn add(&self, index: usize, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(Some(id)) = self.ids.get(index) {
            // A host that no longer knows the metric is no reason to fail the request.
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
