//! What the filter adapters share: the root context ([`Root`], configured through a [`Filter`]),
//! reading and validating the plugin configuration in `on_configure` (and adopting the host's log
//! level there), the header list the logic reads, taking over buffers the host hands back, and
//! counters (`proxy_define_metric`).
//!
//! Compiled into each filter crate with `#[path]`: every filter is its own `cdylib`, and the logic
//! crate (`keel-filter-logic`) stays free of proxy-wasm.

use std::rc::Rc;

use keel_filter_logic::config::ConfigError;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType, MetricType};

/// The guest's log level until `on_configure` takes over the host's ([`adopt_host_log_level`]).
pub const LOG_LEVEL: LogLevel = LogLevel::Trace;

// The host's log level, read without the SDK's `hostcalls::get_log_level`: that one (0.2.5) has
// the host write into a `LogLevel` enum that stops at 5, and Envoy answers with its raw spdlog
// level, 6 when logging is off (undefined behaviour). The same import the SDK declares, with the
// same wasm signature (i32) -> i32, so the module still imports it once.
#[link(wasm_import_module = "env")]
#[allow(unsafe_code)]
unsafe extern "C" {
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
}

/// The host's log level as the guest logger's: 0 trace … 4 error; 5 (critical), Envoy's 6 (off)
/// and anything above are taken as error, never as the SDK's `Critical` (= log nothing), so that
/// the error line of a refused configuration still reaches the host (which drops it if it likes).
/// `None` when the host does not answer `Ok`.
fn host_log_level() -> Option<LogLevel> {
    let mut raw: u32 = 0;
    // SAFETY: `raw` is a live local `u32`; the pointer is valid and aligned for the 4 bytes the
    // host writes (a `u32` level) and is not kept past the call. Any value is a valid `u32`.
    #[allow(unsafe_code)]
    let status = unsafe { proxy_get_log_level(&mut raw) };
    // Status 0 is `Ok`.
    (status == 0).then_some(match raw {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        _ => LogLevel::Error,
    })
}

/// Adopts the host's log level (called first thing in `on_configure`): lines the host would drop
/// are then not even formatted (`log::debug!` and friends check `log::max_level()` first). A host
/// that does not answer leaves the level as it was.
pub fn adopt_host_log_level() {
    if let Some(level) = host_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

/// The work of `on_configure`: read the plugin configuration and `parse` it. `None` after logging
/// an error that names the filter and the bad field; the caller then returns false. Called again
/// with a new configuration, it reads that one: the caller replaces what it held.
pub fn configure<T>(
    filter: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Option<T> {
    adopt_host_log_level();
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

/// What a filter crate gives the shared root context: its configuration, counters and streams.
pub trait Filter: 'static {
    /// The validated plugin configuration.
    type Config: 'static;
    /// The filter's counters.
    type Counters: 'static;
    /// The filter's name, in log lines.
    const NAME: &'static str;
    /// Parses and validates the plugin configuration.
    fn parse(bytes: &[u8]) -> Result<Self::Config, ConfigError>;
    /// What the "configured" log line says about a configuration.
    fn summary(config: &Self::Config) -> String;
    /// Defines the counters with the host (once per VM).
    fn define_counters() -> Self::Counters;
    /// A stream context. `config` is `None` only if a host creates streams for a plugin it never
    /// configured: the stream then passes everything through.
    fn stream(
        config: Option<Rc<Self::Config>>,
        counters: Option<Rc<Self::Counters>>,
    ) -> Box<dyn HttpContext>;
}

/// The plugin (root) context of filter `F`: holds the configuration and the counters.
pub struct Root<F: Filter> {
    config: Option<Rc<F::Config>>,
    counters: Option<Rc<F::Counters>>,
}

/// The module's start (what `proxy_wasm::main!` runs): the guest's log level and `F`'s root
/// context.
pub fn start<F: Filter>() {
    proxy_wasm::set_log_level(LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root::<F> {
            config: None,
            counters: None,
        })
    });
}

impl<F: Filter> Context for Root<F> {}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(config) = configure(F::NAME, F::parse) else {
            return false;
        };
        log::info!("{}: configured: {}", F::NAME, F::summary(&config));
        self.config = Some(Rc::new(config));
        if self.counters.is_none() {
            self.counters = Some(Rc::new(F::define_counters()));
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(F::stream(self.config.clone(), self.counters.clone()))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

// The host's header map, read without the SDK's `get_map_bytes`, which copies every name and
// value into its own `String` / `Vec` (two allocations per header, per read). The same import the
// SDK declares (its `MapType` is a `#[repr(u32)]` enum): the wasm signature is (i32, i32, i32) ->
// i32 either way, so the module still imports it once.
#[link(wasm_import_module = "env")]
#[allow(unsafe_code)]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// A header map as the host serialized it: one buffer, read once per callback; [`pairs`] views it
/// as the `(name, value)` list the logic reads, borrowing from it.
pub struct HeaderMap {
    bytes: Vec<u8>,
}

impl HeaderMap {
    /// Reads `map` (empty when the host has none or refuses).
    pub fn read(map: MapType) -> Self {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers point to live locals of the types the ABI writes (a guest
        // pointer, a 32-bit size) and are not kept past the call.
        #[allow(unsafe_code)]
        let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
        // Status 0 is `Ok`.
        if status != 0 {
            return Self::empty();
        }
        // SAFETY: the host answered `Ok`, so `data` and `size` are the buffer it filled in.
        #[allow(unsafe_code)]
        let bytes = unsafe { take_host_buffer(data, size) };
        HeaderMap { bytes }
    }

    /// A map with no header (what [`read`](Self::read) gives when the host has none).
    pub fn empty() -> Self {
        HeaderMap { bytes: Vec::new() }
    }

    /// The `(name, value)` pairs, in the host's order, borrowed from the buffer (names as bytes:
    /// the logic compares them ASCII case-insensitively and needs no UTF-8 check). A malformed
    /// buffer yields the pairs before the damage.
    pub fn pairs(&self) -> Vec<(&[u8], &[u8])> {
        parse_pairs(&self.bytes)
    }
}

/// Takes over a buffer the host filled in and handed back through out-parameters (header maps,
/// properties); empty for a null pointer (the host's answer for an empty value).
///
/// # Safety
///
/// `data` and `size` must come from a host call that answered `Ok`: the host then obtained
/// `data` from this module's `proxy_on_memory_allocate` (the SDK's: a `Box<[u8]>` of exactly
/// `size` bytes, align 1) and handed it over, so nothing else owns or frees it.
#[allow(unsafe_code)]
pub unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: by the contract above, a `Vec` of that length and capacity owns the allocation and
    // frees it the way it was made (what the SDK's own `get_map_bytes` does).
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// The proxy-wasm map serialization: a u32 count, then `count` (name length, value length) u32
/// pairs, then each name and value followed by a NUL byte; little-endian.
fn parse_pairs(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let u32_at = |at: usize| -> Option<usize> {
        let raw = bytes.get(at..at.checked_add(4)?)?;
        let raw: [u8; 4] = raw.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let Some(mut at) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    let mut take = |len: usize| -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        let part = bytes.get(at..end)?;
        // Each name and value ends with a NUL; a buffer cut before it is damaged there.
        if *bytes.get(end)? != 0 {
            return None;
        }
        at = end + 1;
        Some(part)
    };
    for n in 0..count {
        let sizes = 4 + n * 8;
        let (Some(name_len), Some(value_len)) = (u32_at(sizes), u32_at(sizes + 4)) else {
            break;
        };
        let (Some(name), Some(value)) = (take(name_len), take(value_len)) else {
            break;
        };
        pairs.push((name, value));
    }
    pairs
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

#[cfg(test)]
mod tests {
    use super::parse_pairs;

    /// The proxy-wasm serialization of `pairs`.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = u32::try_from(pairs.len())
            .expect("few")
            .to_le_bytes()
            .to_vec();
        for (name, value) in pairs {
            out.extend(u32::try_from(name.len()).expect("short").to_le_bytes());
            out.extend(u32::try_from(value.len()).expect("short").to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    #[test]
    fn pairs_in_order_values_as_bytes() {
        let bytes = serialize(&[
            (b":path", b"/a;jsessionid=X.t1"),
            (b"cookie", b"A=1; B=\xff"),
            (b"x-empty", b""),
        ]);
        assert_eq!(
            parse_pairs(&bytes),
            vec![
                (&b":path"[..], &b"/a;jsessionid=X.t1"[..]),
                (b"cookie", b"A=1; B=\xff"),
                (b"x-empty", b""),
            ]
        );
        assert!(parse_pairs(&serialize(&[])).is_empty());
        assert!(parse_pairs(b"").is_empty());
    }

    #[test]
    fn malformed_buffers_do_not_panic() {
        let good = serialize(&[(b"a", b"1"), (b"\xff", b"2"), (b"c", b"3")]);
        // Names are bytes: one that is not UTF-8 is passed on (the logic matches none of them).
        assert_eq!(
            parse_pairs(&good),
            vec![(&b"a"[..], &b"1"[..]), (b"\xff", b"2"), (b"c", b"3")]
        );
        for cut in 0..good.len() {
            let pairs = parse_pairs(&good[..cut]);
            assert!(pairs.len() < 3, "{cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_pairs(&huge).is_empty());
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_pairs(&long).is_empty());
    }
}
