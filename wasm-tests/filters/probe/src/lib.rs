//! A proxy-wasm test filter for keel-wasm: its plugin configuration names one behaviour (the
//! first word; the rest are arguments), and the runtime tests check what the host did.
//!
//! Well-behaved modes: `headers` (header maps, properties, filter state, metrics, shared data,
//! time), `local` (a local response), `callout <upstream>`, `pause` (never resumed),
//! `decorate` (marks every response with its status, then makes it 418), `fire` (a callout
//! not waited for), `log_callout` (a callout from `on_log`),
//! `body_buffer`, `tick`, `tick_resume` (request headers pause; the next on_tick resumes them),
//! `tick_edit` (as `tick_resume`, and on_tick first adds `x-from-tick: <:path>, <request.path>`
//! to the paused request), `tick_reply` (on_tick answers the paused request 429),
//! `grpc <upstream> [cancel]` (a unary gRPC call; its answer in `x-grpc-answer`; with
//! `cancel`, cancelled at once), `grpc_stream
//! <upstream> [cancel]` (a gRPC stream to `probe.Echo/Chat`: sends `one` and `two`, closes its
//! side and records each callback into `x-grpc-stream`; with `cancel`, cancels it after `one`
//! and goes on at once), `grpc_tokens` and `grpc_late_cancel` (see `grpc_tokens.rs`),
//! `grpc_flood` (see `grpc_flood.rs`),
//! `grpc_local` (a gRPC local reply, ABORTED), `queue`, `wasi`,
//! `foreign`, `signature` and `declare` (`foreign.rs`), `local_details` (a local reply whose
//! details are "denied by\tprobe"),
//! `accounting` (the sizes, durations and details Envoy computes for a stream: into
//! `x-acct-*` headers in the headers callbacks, into `probe.log.*` gauges in on_log, an absent
//! one counted in `probe.log.*_absent`),
//! `root_done` (counts the root's `on_done`), `root_flush` (the
//! root's `on_done` sends a batch and calls `proxy_done` when it is answered),
//! `root_stream_flush` (the same over a gRPC stream to `store`: `batch` with `end_stream`,
//! `proxy_done` at the stream's close), `reject`
//! (on_configure fails), `slow_configure` (100 ms of work in on_configure); in every mode the
//! trailers callbacks mark the trailers they saw.
//! Hostile modes: `trap`, `trap_response`, `loop`, `alloc`, `exit`, `bad_pointers`.
#![allow(unsafe_code)]

mod foreign;
mod grpc_flood;
mod grpc_tokens;

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, GrpcStatusCode, LogLevel, MapType, MetricType,
};

// The module's entry point (`_initialize`), as the SDK's macro writes it.
#[allow(missing_docs)]
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Trace);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot::default()) });
    }}
}

thread_local! {
    /// `tick_resume`: the stream contexts paused on request headers, for on_tick to resume.
    static PAUSED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct ProbeRoot {
    mode: String,
    args: Vec<String>,
    queue: u32,
}

/// Sets gauge `name` to `value` (defined on first use).
fn gauge(name: &str, value: u64) {
    if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, name) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// A value of the http-call response's `map` (headers or trailers), or the status the host
/// answered ("none" for NotFound, "BadArgument", ...).
fn call_response_value(map: MapType, key: &str) -> String {
    let key = key.as_bytes();
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: valid key and out-pointers; on Ok the host wrote a buffer it allocated in this
    // module's memory and its length, read once here (and leaked: a test filter).
    unsafe {
        match raw::proxy_get_header_map_value(
            map as u32,
            key.as_ptr(),
            key.len(),
            &mut ptr,
            &mut len,
        ) {
            0 if !ptr.is_null() => {
                String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned()
            }
            1 => "none".to_owned(),
            2 => "BadArgument".to_owned(),
            other => format!("status {other}"),
        }
    }
}

/// `proxy_done` itself (the SDK's `done()` panics unless it answers Ok): its status.
fn raw_done() -> u32 {
    // SAFETY: no arguments; the host only answers a status.
    unsafe { raw::proxy_done() }
}

impl Context for ProbeRoot {
    /// `root_done`: counts the root context's `on_done` (the host calls it when it lets the
    /// instance go). `root_flush`: sends its batch (a callout to `store`, `/flush?id=flush`) and
    /// asks to be waited for; the callout's response calls `proxy_done`.
    fn on_done(&mut self) -> bool {
        match self.mode.as_str() {
            "root_done" => {
                if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe.root_done") {
                    let _ = hostcalls::increment_metric(id, 1);
                }
                true
            }
            "root_flush" => self
                .dispatch_http_call(
                    "store",
                    vec![
                        (":method", "POST"),
                        (":path", "/flush?id=flush"),
                        (":authority", "store"),
                    ],
                    Some(b"batch"),
                    vec![],
                    Duration::from_secs(1),
                )
                .is_err(),
            "root_stream_flush" => {
                match self.open_grpc_stream("store", "probe.Echo", "Chat", vec![("x-id", b"echo")])
                {
                    Ok(token) => {
                        self.send_grpc_stream_message(token, Some(b"batch"), true);
                        false
                    }
                    Err(_) => true,
                }
            }
            _ => true,
        }
    }

    /// `root_stream_flush`: the size of the echoed batch (gauge `probe.flush_echo`).
    fn on_grpc_stream_message(&mut self, _token: u32, message_size: usize) {
        gauge("probe.flush_echo", message_size as u64);
    }

    /// `root_stream_flush`: the stream's close; `proxy_done`'s status goes to gauge
    /// `probe.flushed`.
    fn on_grpc_stream_close(&mut self, _token: u32, _status_code: u32) {
        if self.mode == "root_stream_flush" {
            gauge("probe.flushed", u64::from(raw_done()));
        }
    }

    /// `root_flush`: the batch's answer; `proxy_done`'s status goes to gauge `probe.flushed`.
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        if self.mode == "root_flush" {
            gauge("probe.flushed", u64::from(raw_done()));
        }
    }
}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config).into_owned();
        let mut words = text.split_whitespace().map(str::to_owned);
        self.mode = words.next().unwrap_or_default();
        self.args = words.collect();
        match self.mode.as_str() {
            "reject" => {
                log::error!("probe: rejected configuration: field `mode` is reject");
                return false;
            }
            "tick" | "tick_resume" | "tick_edit" | "tick_reply" => {
                self.set_tick_period(Duration::from_millis(10));
            }
            "slow_configure" => {
                // Compiles a large rule set, as it were: 100 ms of work.
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(100) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "queue" => self.queue = self.register_shared_queue("probe_queue"),
            "declare" => {
                let answers = foreign::declare_on_root();
                let _ = self.set_shared_data("probe_declare_root", Some(answers.as_bytes()), None);
            }
            // Before on_done, no root waits for proxy_done: gauge `probe.done_early` gets its
            // status (NotFound, 1).
            "root_flush" => gauge("probe.done_early", u64::from(raw_done())),
            _ => {}
        }
        log::info!("probe configured: {}", self.mode);
        true
    }

    fn on_tick(&mut self) {
        if matches!(
            self.mode.as_str(),
            "tick_resume" | "tick_edit" | "tick_reply"
        ) {
            for context in PAUSED.with(|paused| std::mem::take(&mut *paused.borrow_mut())) {
                if hostcalls::set_effective_context(context).is_err() {
                    continue;
                }
                match self.mode.as_str() {
                    "tick_edit" => {
                        let map = MapType::HttpRequestHeaders;
                        let path = hostcalls::get_map_value(map, ":path").ok().flatten();
                        let property = hostcalls::get_property(vec!["request", "path"])
                            .ok()
                            .flatten()
                            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                        let seen = format!(
                            "{}, {}",
                            path.as_deref().unwrap_or("-"),
                            property.as_deref().unwrap_or("-")
                        );
                        let _ = hostcalls::add_map_value(map, "x-from-tick", &seen);
                        let _ = hostcalls::resume_http_request();
                    }
                    "tick_reply" => {
                        let _ = hostcalls::send_http_response(
                            429,
                            vec![("x-from", "tick")],
                            Some(b"slow down\n"),
                        );
                    }
                    _ => {
                        let _ = hostcalls::resume_http_request();
                    }
                }
            }
            return;
        }
        let (value, cas) = self.get_shared_data("probe_ticks");
        let count = value.map_or(0, |v| {
            String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0)
        });
        let _ = self.set_shared_data("probe_ticks", Some((count + 1).to_string().as_bytes()), cas);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // One item per notification, as the SDK's shared_queue example: the items dequeued so
        // far, joined by ",".
        if let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            let (got, _) = self.get_shared_data("probe_queue_got");
            let mut got = got.unwrap_or_default();
            if !got.is_empty() {
                got.push(b',');
            }
            got.extend_from_slice(&item);
            let _ = self.set_shared_data("probe_queue_got", Some(&got), None);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id: context_id,
            mode: self.mode.clone(),
            args: self.args.clone(),
            stream_log: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    mode: String,
    args: Vec<String>,
    /// `grpc_stream`: the stream's callbacks so far.
    stream_log: Vec<String>,
}

fn text(bytes: Option<Vec<u8>>) -> String {
    bytes.map_or_else(
        || "-".to_owned(),
        |b| String::from_utf8_lossy(&b).into_owned(),
    )
}

/// A foreign function's answer as text: its result, or its status.
fn foreign_text(answer: Result<Option<Vec<u8>>, proxy_wasm::types::Status>) -> String {
    match answer {
        Ok(bytes) => text(bytes),
        Err(status) => format!("{status:?}"),
    }
}

fn int(bytes: Option<Vec<u8>>) -> String {
    match bytes {
        Some(b) if b.len() == 8 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&b);
            u64::from_le_bytes(raw).to_string()
        }
        _ => "-".to_owned(),
    }
}

impl Probe {
    /// `x-acct-<object>-<field>` and the property's integer value ("-" when absent), read
    /// before any header is added.
    fn accounting(&self, names: &[(&str, &str)]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|(object, field)| {
                let value = int(self.get_property(vec![object, field]));
                (format!("x-acct-{object}-{field}"), value)
            })
            .collect()
    }

    fn headers(&mut self, num_headers: usize) -> Action {
        let pairs = self.get_http_request_headers_bytes();
        self.add_http_request_header("x-probe-count", &format!("{num_headers}/{}", pairs.len()));
        let path = self.get_http_request_header(":path").unwrap_or_default();
        self.add_http_request_header("x-probe-path", &path);
        self.set_http_request_header("x-replace", Some("new"));
        self.remove_http_request_header("x-remove");
        let props = [
            ("source", text(self.get_property(vec!["source", "address"]))),
            (
                "source-port",
                int(self.get_property(vec!["source", "port"])),
            ),
            (
                "destination",
                text(self.get_property(vec!["destination", "address"])),
            ),
            ("method", text(self.get_property(vec!["request", "method"]))),
            ("host", text(self.get_property(vec!["request", "host"]))),
            (
                "url-path",
                text(self.get_property(vec!["request", "url_path"])),
            ),
            (
                "protocol",
                text(self.get_property(vec!["request", "protocol"])),
            ),
            ("route", text(self.get_property(vec!["xds", "route_name"]))),
            (
                "cluster",
                text(self.get_property(vec!["xds", "cluster_name"])),
            ),
            ("plugin", text(self.get_property(vec!["plugin_name"]))),
            ("root-id", text(self.get_property(vec!["plugin_root_id"]))),
            ("vm-id", text(self.get_property(vec!["plugin_vm_id"]))),
            ("missing", text(self.get_property(vec!["no", "such"]))),
            (
                "dotted-segment",
                text(self.get_property(vec!["request.path"])),
            ),
            (
                "header-field",
                text(self.get_property(vec!["request", "headers", "X-Multi"])),
            ),
            ("size", int(self.get_property(vec!["request", "size"]))),
            (
                "connection-id",
                int(self.get_property(vec!["connection", "id"])),
            ),
            (
                "connection-id-wasm",
                int(self.get_property(vec!["connection_id"])),
            ),
            (
                "sni",
                raw_property(&["connection", "requested_server_name"]),
            ),
            (
                "tls-version",
                text(self.get_property(vec!["connection", "tls_version"])),
            ),
            (
                "subject-local",
                raw_property(&["connection", "subject_local_certificate"]),
            ),
            (
                "uri-san-local",
                raw_property(&["connection", "uri_san_local_certificate"]),
            ),
            (
                "dns-san-local",
                raw_property(&["connection", "dns_san_local_certificate"]),
            ),
            (
                "whole-request",
                format!("{:?}", hostcalls::get_property(vec!["request"]).map(|_| ())),
            ),
            (
                "header-names",
                self.get_property(vec!["request", "headers"])
                    .and_then(|map| Some(u32::from_le_bytes(map.get(..4)?.try_into().ok()?)))
                    .map_or_else(|| "-".to_owned(), |count| count.to_string()),
            ),
        ];
        for (name, value) in props {
            self.add_http_request_header(&format!("x-prop-{name}"), &value);
        }
        // The plugin configuration is readable only while the root configures.
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => format!("{} bytes", bytes.len()),
            Ok(None) => "none".to_owned(),
            Err(status) => format!("{status:?}"),
        };
        self.add_http_request_header("x-plugin-config", &config);
        self.set_property(vec!["probe_state"], Some(b"kept"));
        self.set_property(vec!["probe", "state"], Some(b"unreachable"));
        // Metrics.
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe.requests") {
            let _ = hostcalls::increment_metric(id, 1);
            let value = hostcalls::get_metric(id).unwrap_or(0);
            self.add_http_request_header("x-metric", &value.to_string());
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe.recorded") {
            // Envoy adds what record_metric gives a counter, and refuses a zero increment.
            let before = hostcalls::get_metric(id).unwrap_or(0);
            let _ = hostcalls::record_metric(id, 2);
            let _ = hostcalls::record_metric(id, 2);
            let zero = hostcalls::increment_metric(id, 0);
            let added = hostcalls::get_metric(id).unwrap_or(0).wrapping_sub(before);
            self.add_http_request_header("x-recorded", &format!("{added}:{zero:?}"));
            // A name that is not UTF-8 is still a name (Envoy `context.cc` `defineMetric`).
            let name = [0xff, b'x'];
            let mut id = 0u32;
            // SAFETY: a valid name buffer and out-pointer.
            let status = unsafe { raw::proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
            self.add_http_request_header("x-metric-bytes", &status.to_string());
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, "probe.gauge") {
            let _ = hostcalls::record_metric(id, 42);
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Histogram, "probe.histogram") {
            let _ = hostcalls::record_metric(id, 7);
        }
        // Shared data with CAS.
        let _ = self.set_shared_data("probe_key", Some(b"one"), None);
        let (value, cas) = self.get_shared_data("probe_key");
        let stale = cas.map(|c| c.wrapping_add(1000));
        let mismatch = self
            .set_shared_data("probe_key", Some(b"two"), stale)
            .is_err();
        let ok = self
            .set_shared_data("probe_key", Some(b"three"), cas)
            .is_ok();
        self.add_http_request_header(
            "x-shared",
            &format!("{}:{mismatch}:{ok}", text(value.map(|v| v.to_vec()))),
        );
        let now = self.get_current_time();
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.add_http_request_header("x-time-ok", &(since > 1_600_000_000).to_string());
        log::info!("probe saw {path}");
        Action::Continue
    }

    fn bad_pointers(&mut self) -> Action {
        const BAD: usize = 0xFFFF_FF00;
        let mut results = Vec::new();
        let key = b"x-a";
        // SAFETY: the pointers are deliberately out of bounds: the host must check them and answer
        // InvalidMemoryAccess; the guest never dereferences them.
        unsafe {
            results.push(raw::proxy_log(2, BAD as *const u8, 0x1000));
            results.push(raw::proxy_log(2, key.as_ptr(), usize::MAX));
            let mut ptr: *mut u8 = std::ptr::null_mut();
            let mut len: usize = 0;
            results.push(raw::proxy_get_header_map_value(
                0,
                BAD as *const u8,
                3,
                &mut ptr,
                &mut len,
            ));
            results.push(raw::proxy_get_header_map_pairs(
                0,
                BAD as *mut *mut u8,
                BAD as *mut usize,
            ));
            results.push(raw::proxy_get_property(
                BAD as *const u8,
                16,
                &mut ptr,
                &mut len,
            ));
            let garbage = [0xffu8, 0xff, 0xff, 0x7f, 1, 2, 3];
            results.push(raw::proxy_set_header_map_pairs(
                0,
                garbage.as_ptr(),
                garbage.len(),
            ));
            // The VM configuration: always readable (the plugin's only while configuring).
            results.push(raw::proxy_get_buffer_bytes(
                6,
                0,
                100,
                BAD as *mut *mut u8,
                &mut len,
            ));
            // A log level past critical (5) is BadArgument before the message is read
            // (cpp-host `src/exports.cc` `log`); critical itself is logged.
            results.push(raw::proxy_log(6, BAD as *const u8, 0x1000));
            results.push(raw::proxy_log(5, key.as_ptr(), key.len()));
        }
        let list: Vec<String> = results.iter().map(u32::to_string).collect();
        self.add_http_request_header("x-bad", &list.join(","));
        Action::Continue
    }
}

/// The raw imports, declared again to call them with pointers the SDK would never pass.
#[allow(clashing_extern_declarations)]
mod raw {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_log(level: u32, ptr: *const u8, len: usize) -> u32;
        pub fn proxy_done() -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, len: usize, id: *mut u32) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_len: usize,
            ret_ptr: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map: u32,
            ret_ptr: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_set_header_map_pairs(map: u32, ptr: *const u8, len: usize) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_len: usize,
            body: *const u8,
            body_len: usize,
            headers: *const u8,
            headers_len: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_get_property(
            ptr: *const u8,
            len: usize,
            ret_ptr: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            ptr: *const u8,
            len: usize,
            value: *const u8,
            value_len: usize,
        ) -> u32;
        pub fn proxy_get_buffer_bytes(
            kind: u32,
            start: usize,
            max: usize,
            ret_ptr: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
    }
}

/// What reading the request headers answers: the status of `get_header_map_value(":path")`
/// and `status:pairs-bytes` of `get_header_map_pairs`.
fn closed_request_headers() -> (u32, String) {
    let key = b":path";
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid pointers to locals; what the host allocates is leaked (a test filter).
    let value =
        unsafe { raw::proxy_get_header_map_value(0, key.as_ptr(), key.len(), &mut ptr, &mut len) };
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as above.
    let pairs = unsafe { raw::proxy_get_header_map_pairs(0, &mut ptr, &mut len) };
    (value, format!("{pairs}:{len}"))
}

/// `status:value` of `get_property(path)` read with the raw import: the SDK gives `None` both
/// for NotFound and for an empty value, which this tells apart.
fn raw_property(path: &[&str]) -> String {
    let mut joined = Vec::new();
    for segment in path {
        joined.extend_from_slice(segment.as_bytes());
        joined.push(0);
    }
    let (mut ptr, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: valid pointers to locals; the value the host allocated is read for `len` bytes
    // when it gave one, and leaked (a test filter).
    let status =
        unsafe { raw::proxy_get_property(joined.as_ptr(), joined.len(), &mut ptr, &mut len) };
    let value = if ptr.is_null() || len == 0 {
        String::new()
    } else {
        // SAFETY: the host wrote `len` bytes at `ptr`.
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr, len) }).into_owned()
    };
    format!("{status}:{value}")
}

impl Probe {
    /// Dispatches `GET /<phase>?id=<x-id>` to the `store` upstream and does not wait for it.
    fn fire(&self, phase: &str) {
        let id = self.get_http_request_header("x-id").unwrap_or_default();
        let path = format!("/{phase}?id={id}");
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", "store"),
        ];
        if let Err(status) =
            self.dispatch_http_call("store", headers, None, vec![], Duration::from_secs(5))
        {
            log::warn!("probe: {phase} callout not sent: {status:?}");
        }
    }
}

impl Context for Probe {
    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        if self.mode == "grpc_late_cancel" {
            return self.grpc_late_answer(token);
        }
        self.grpc_answer(status_code, response_size);
    }

    fn on_grpc_stream_initial_metadata(&mut self, _token: u32, num_elements: u32) {
        let initial = self.get_grpc_stream_initial_metadata_value("x-initial");
        let initial = initial.map_or("-".into(), |v| String::from_utf8_lossy(&v).into_owned());
        self.stream_log.push(format!("i{num_elements}:{initial}"));
        grpc_callback();
    }

    fn on_grpc_stream_message(&mut self, _token: u32, message_size: usize) {
        let message = self
            .get_grpc_stream_message(0, message_size)
            .unwrap_or_default();
        self.stream_log
            .push(format!("m:{}", String::from_utf8_lossy(&message)));
        grpc_callback();
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token: u32, _num_elements: u32) {
        let trailer = self.get_grpc_stream_trailing_metadata_value("x-trailer");
        let trailer = trailer.map_or("-".into(), |v| String::from_utf8_lossy(&v).into_owned());
        self.stream_log.push(format!("t:{trailer}"));
        grpc_callback();
    }

    /// The close: `c:<status> <proxy_get_status code> <message>`; the log goes into the
    /// request (`x-grpc-stream`), which resumes.
    fn on_grpc_stream_close(&mut self, token: u32, status_code: u32) {
        let (code, message) = self.get_grpc_status();
        self.stream_log.push(format!(
            "c:{status_code} {code} {}",
            message.unwrap_or_default()
        ));
        grpc_callback();
        // Both sides closed: the stream is gone (Envoy `grpcClose`, `onGrpcCloseWrapper`).
        let after = hostcalls::close_grpc_stream(token);
        self.add_http_request_header("x-grpc-stream", &self.stream_log.join(","));
        self.add_http_request_header("x-grpc-after-close", &format!("{after:?}"));
        self.resume_http_request();
    }

    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        // The import itself, not the SDK (which panics on any status but Ok and NotFound): after
        // a reset there is no response map at all.
        let status = call_response_value(MapType::HttpCallResponseHeaders, ":status");
        let trailer = call_response_value(MapType::HttpCallResponseTrailers, "x-res-trailer");
        self.add_http_request_header("x-callout-trailers", &format!("{num_trailers} {trailer}"));
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        self.add_http_request_header("x-callout-status", &status);
        self.add_http_request_header("x-callout-headers", &num_headers.to_string());
        self.add_http_request_header("x-callout-body", &String::from_utf8_lossy(&body));
        let (code, message) = self.get_grpc_status();
        let call_status = format!("{code} {}", message.unwrap_or_default());
        self.add_http_request_header("x-callout-get-status", &call_status);
        if self.args.get(1).map(String::as_str) == Some("deny") && status != "200" {
            self.send_http_response(
                403,
                vec![
                    ("x-denied", "callout"),
                    ("x-callout-get-status", &call_status),
                    ("x-callout-status", &status),
                ],
                Some(b"denied\n"),
            );
            return;
        }
        self.resume_http_request();
    }
}

/// Counts a gRPC call or stream callback (gauge `probe.grpc.callbacks`).
fn grpc_callback() {
    thread_local! {
        static CALLBACKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let count = CALLBACKS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    gauge("probe.grpc.callbacks", count);
}

impl Probe {
    /// `grpc_stream`: first the statuses for a token that is no stream (`x-grpc-bad`: send,
    /// close, cancel), then a stream to `probe.Echo/Chat` with the request's `x-id`: `one`,
    /// `two`, the end of its side; or with `cancel`, `one` and a cancel (`x-grpc-cancel`: the
    /// cancel, then a send and a second cancel on the cancelled token), going on at once.
    fn grpc_stream(&mut self) -> Action {
        let bad = [
            hostcalls::send_grpc_stream_message(4242, Some(b"x"), false),
            hostcalls::close_grpc_stream(4242),
            hostcalls::cancel_grpc_stream(4242),
        ];
        self.add_http_request_header("x-grpc-bad", &format!("{bad:?}"));
        let Some(token) = self.open_chat() else {
            return Action::Pause;
        };
        self.send_grpc_stream_message(token, Some(b"one"), false);
        if self.args.get(1).map(String::as_str) == Some("cancel") {
            let cancelled = [
                hostcalls::cancel_grpc_stream(token),
                hostcalls::send_grpc_stream_message(token, Some(b"two"), false),
                hostcalls::cancel_grpc_stream(token),
            ];
            self.add_http_request_header("x-grpc-cancel", &format!("{cancelled:?}"));
            return Action::Continue;
        }
        self.send_grpc_stream_message(token, Some(b"two"), false);
        self.close_grpc_stream(token);
        Action::Pause
    }

    /// Opens a stream to `probe.Echo/Chat` on the upstream the first argument names, with the
    /// request's `x-id`; `None` when it could not, and the request is then answered 502 with
    /// the status.
    fn open_chat(&self) -> Option<u32> {
        let upstream = self.args.first().cloned().unwrap_or_default();
        let id = self.get_http_request_header("x-id").unwrap_or_default();
        match self.open_grpc_stream(
            &upstream,
            "probe.Echo",
            "Chat",
            vec![("x-id", id.as_bytes())],
        ) {
            Ok(token) => Some(token),
            Err(status) => {
                let body = format!("grpc stream failed: {status:?}\n");
                self.send_http_response(502, vec![], Some(body.as_bytes()));
                None
            }
        }
    }

    /// `grpc`: the call's answer, `0 <message>` or `<status> <grpc-message>`, then resume.
    fn grpc_answer(&mut self, status_code: u32, response_size: usize) {
        grpc_callback();
        let answer = if status_code == 0 {
            let message = self
                .get_grpc_call_response_body(0, response_size)
                .unwrap_or_default();
            format!("0 {}", String::from_utf8_lossy(&message))
        } else {
            let (code, message) = self.get_grpc_status();
            format!("{status_code} {code} {}", message.unwrap_or_default())
        };
        self.add_http_request_header("x-grpc-answer", &answer);
        self.resume_http_request();
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        match self.mode.as_str() {
            "tick_resume" | "tick_edit" | "tick_reply" => {
                PAUSED.with(|paused| paused.borrow_mut().push(self.id));
                Action::Pause
            }
            "headers" => self.headers(num_headers),
            "accounting" => {
                let values = self.accounting(&[
                    ("request", "headers_bytes"),
                    ("request", "total_size"),
                    ("request", "duration"),
                ]);
                for (name, value) in values {
                    self.add_http_request_header(&name, &value);
                }
                Action::Continue
            }
            "local_details" => {
                // The SDK passes no details: the raw import, with the body as details.
                let details = b"denied by\tprobe";
                let no_headers = [0u8; 4];
                // SAFETY: pointers to locals, read by the host during the call.
                unsafe {
                    raw::proxy_send_local_response(
                        403,
                        details.as_ptr(),
                        details.len(),
                        details.as_ptr(),
                        details.len(),
                        no_headers.as_ptr(),
                        no_headers.len(),
                        -1,
                    );
                }
                Action::Pause
            }
            "local" => {
                self.send_http_response(
                    403,
                    vec![("x-local", "yes")],
                    Some(b"forbidden by probe\n"),
                );
                Action::Pause
            }
            "callout" => {
                let upstream = self.args.first().cloned().unwrap_or_default();
                let id = self.get_http_request_header("x-id").unwrap_or_default();
                let path = format!("/lookup?id={id}");
                // `:Path` in another case: Envoy lowercases every name of an http call. It
                // accepts trailers (`te`) and sends one of its own.
                let headers = vec![
                    (":method", "GET"),
                    (":Path", path.as_str()),
                    (":authority", "store"),
                    ("te", "trailers"),
                ];
                match self.dispatch_http_call(
                    &upstream,
                    headers,
                    None,
                    vec![("x-req-trailer", "t")],
                    Duration::from_millis(500),
                ) {
                    Ok(_) => Action::Pause,
                    Err(status) => {
                        let body = format!("dispatch failed: {status:?}\n");
                        self.send_http_response(502, vec![], Some(body.as_bytes()));
                        Action::Pause
                    }
                }
            }
            // A unary gRPC call to `<upstream>` with the request's `x-id` as metadata; the
            // answer goes into the request (`x-grpc-answer`) and resumes it.
            "grpc" => {
                let upstream = self.args.first().cloned().unwrap_or_default();
                let id = self.get_http_request_header("x-id").unwrap_or_default();
                match self.dispatch_grpc_call(
                    &upstream,
                    "probe.Auth",
                    "Check",
                    vec![("x-id", id.as_bytes())],
                    Some(b"ping"),
                    Duration::from_secs(1),
                ) {
                    // `cancel`: cancelled at once (twice: `x-grpc-cancel`), and the request
                    // goes on.
                    Ok(token) if self.args.get(1).map(String::as_str) == Some("cancel") => {
                        let cancelled = [
                            hostcalls::cancel_grpc_call(token),
                            hostcalls::cancel_grpc_call(token),
                        ];
                        self.add_http_request_header("x-grpc-cancel", &format!("{cancelled:?}"));
                        Action::Continue
                    }
                    Ok(_) => Action::Pause,
                    Err(status) => {
                        let body = format!("grpc dispatch failed: {status:?}\n");
                        self.send_http_response(502, vec![], Some(body.as_bytes()));
                        Action::Pause
                    }
                }
            }
            "grpc_stream" => self.grpc_stream(),
            "grpc_tokens" => self.grpc_tokens(),
            "grpc_late_cancel" => self.grpc_late_cancel(),
            "grpc_flood" => self.grpc_flood(),
            // A gRPC local reply (the SDK's send_grpc_response: HTTP 200, the status, the text).
            "grpc_local" => {
                self.send_grpc_response(
                    GrpcStatusCode::Aborted,
                    Some("Aborted by probe"),
                    vec![("x-probe", b"1")],
                );
                Action::Pause
            }
            // A callout the stream does not wait for (fire and forget).
            "fire" => {
                self.fire("request");
                Action::Continue
            }
            "pause" => Action::Pause,
            "trap" => panic!("probe: trap on request headers"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "exit" => std::process::exit(3),
            "bad_pointers" => self.bad_pointers(),
            "wasi" => {
                let env = std::env::var("PROBE_ENV").unwrap_or_else(|_| "unset".to_owned());
                self.add_http_request_header("x-env", &env);
                println!("probe stdout line");
                eprintln!("probe stderr line");
                let mut map = std::collections::HashMap::new();
                map.insert(1, 2);
                let now = std::time::SystemTime::now();
                let ok = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .is_ok_and(|d| d.as_secs() > 1_600_000_000);
                self.add_http_request_header("x-clock", &ok.to_string());
                let started = std::time::Instant::now();
                self.add_http_request_header(
                    "x-monotonic",
                    &(started.elapsed().as_secs() < 5).to_string(),
                );
                Action::Continue
            }
            "signature" => {
                for (name, value) in foreign::signature() {
                    self.add_http_request_header(name, &value);
                }
                Action::Continue
            }
            "declare" => {
                let (root, _) = self.get_shared_data("probe_declare_root");
                self.add_http_request_header("x-declare-root", &text(root));
                for (name, value) in foreign::declare_on_stream() {
                    self.add_http_request_header(name, &value);
                }
                Action::Continue
            }
            "foreign" => {
                // Envoy builds without its CEL parser have no `expr_*` (foreign.cc `#if`).
                let foreign = hostcalls::call_foreign_function("expr_create", Some(b"1 + 1"));
                self.add_http_request_header("x-foreign", &format!("{foreign:?}"));
                // What real zlib wrote (Python's `zlib.compress(b"hello")`) decompresses; what
                // the host compresses comes back; what is not zlib does not.
                let hello = [
                    0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15,
                ];
                let unpacked = hostcalls::call_foreign_function("uncompress", Some(&hello));
                self.add_http_request_header("x-foreign-uncompress", &foreign_text(unpacked));
                let packed = hostcalls::call_foreign_function("compress", Some(b"probe probe"))
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let back = hostcalls::call_foreign_function("uncompress", Some(&packed));
                self.add_http_request_header("x-foreign-round-trip", &foreign_text(back));
                let bad = hostcalls::call_foreign_function("uncompress", Some(b"not zlib"));
                self.add_http_request_header("x-foreign-bad", &format!("{bad:?}"));
                let route = hostcalls::call_foreign_function("clear_route_cache", None);
                self.add_http_request_header("x-foreign-route", &format!("{route:?}"));
                let grpc = self.dispatch_grpc_call(
                    "grpc",
                    "svc",
                    "m",
                    vec![],
                    None,
                    Duration::from_secs(1),
                );
                self.add_http_request_header("x-grpc", &format!("{grpc:?}"));
                Action::Continue
            }
            "tick" => {
                let (value, _) = self.get_shared_data("probe_ticks");
                self.add_http_request_header("x-ticks", &text(value.map(|v| v.to_vec())));
                Action::Continue
            }
            "queue" => {
                let id = self.resolve_shared_queue("", "probe_queue");
                if let (Some(id), Some(items)) = (id, self.get_http_request_header("x-enqueue")) {
                    for item in items.split(',') {
                        let _ = self.enqueue_shared_queue(id, Some(item.as_bytes()));
                    }
                }
                let (value, _) = self.get_shared_data("probe_queue_got");
                self.add_http_request_header("x-queue-got", &text(value.map(|v| v.to_vec())));
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        let seen = self
            .get_http_request_trailer("grpc-status")
            .unwrap_or_default();
        self.add_http_request_trailer("x-trailers", &format!("{num_trailers}:{seen}"));
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        self.set_http_response_trailer("x-response-trailers", Some(&num_trailers.to_string()));
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.mode != "body_buffer" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let upper = body.to_ascii_uppercase();
        self.set_http_request_body(0, body_size, &upper);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        match self.mode.as_str() {
            "trap_response" => panic!("probe: trap on response headers"),
            "accounting" => {
                let values = self.accounting(&[
                    ("response", "headers_bytes"),
                    ("response", "total_size"),
                    ("response", "grpc_status"),
                    ("upstream", "request_attempt_count"),
                ]);
                for (name, value) in values {
                    self.add_http_response_header(&name, &value);
                }
                let details = text(self.get_property(vec!["response", "code_details"]));
                self.add_http_response_header("x-acct-response-code_details", &details);
                let local = text(self.get_property(vec!["upstream", "local_address"]));
                self.add_http_response_header("x-acct-upstream-local_address", &local);
                for name in [
                    "locality",
                    "transport_failure_reason",
                    "tls_version",
                    "subject_peer_certificate",
                ] {
                    let value = raw_property(&["upstream", name]);
                    self.add_http_response_header(&format!("x-acct-upstream-{name}"), &value);
                }
                for name in ["num_endpoints", "cx_pool_ready_duration"] {
                    let value = int(self.get_property(vec!["upstream", name]));
                    self.add_http_response_header(&format!("x-acct-upstream-{name}"), &value);
                }
            }
            "decorate" => {
                let code = int(self.get_property(vec!["response", "code"]));
                self.add_http_response_header("x-decorated", &code);
                self.set_http_response_header(":status", Some("418"));
            }
            "headers" => {
                let upstream = text(self.get_property(vec!["upstream", "address"]));
                self.add_http_response_header("x-upstream", &upstream);
                let state = text(self.get_property(vec!["probe_state"]));
                self.add_http_response_header("x-state", &state);
                // Envoy reads filter state by the path's first segment only (`context.cc`
                // `findValue`): a value set under two segments is never found.
                let nested = text(self.get_property(vec!["probe", "state"]));
                self.add_http_response_header("x-state-nested", &nested);
                let code = int(self.get_property(vec!["response", "code"]));
                self.add_http_response_header("x-code", &code);
                // The request headers are closed once their phase is over (Envoy answers
                // BadArgument, on which the SDK's getter panics): asked through the raw import.
                let (value, pairs) = closed_request_headers();
                self.add_http_response_header("x-request-path-status", &value.to_string());
                self.add_http_response_header("x-request-pairs", &pairs);
                self.set_http_response_header(":status", Some("201"));
                self.add_http_response_header("x-response-count", &num_headers.to_string());
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.mode != "body_buffer" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.set_http_response_body(body_size, 0, b"!");
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.mode == "log_callout" {
            self.fire("log");
        }
        if self.mode == "accounting" {
            // Gauges are process-wide (one per name): the plugin's name keeps tests that run at
            // the same time apart.
            let plugin = text(self.get_property(vec!["plugin_name"]));
            for (object, field) in [
                ("request", "duration"),
                ("request", "total_size"),
                ("response", "total_size"),
                ("response", "size"),
                ("response", "grpc_status"),
                ("response", "backend_latency"),
            ] {
                match self.get_property(vec![object, field]) {
                    Some(value) => {
                        if let Ok(raw) = <[u8; 8]>::try_from(value.as_slice()) {
                            gauge(
                                &format!("probe.log.{plugin}.{object}_{field}"),
                                u64::from_le_bytes(raw),
                            );
                        }
                    }
                    // Counted, so that a test tells "absent" from "not logged yet".
                    None => {
                        let name = format!("probe.log.{plugin}.{object}_{field}_absent");
                        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, &name) {
                            let _ = hostcalls::increment_metric(id, 1);
                        }
                    }
                }
            }
        }
        if self.mode == "headers" {
            // As in Envoy, on_log still reads both heads: counted when it sees what the
            // response-headers callback added and the request's path.
            let response = self.get_http_response_header("x-upstream").is_some();
            let request = self.get_http_request_header(":path").is_some();
            let code = int(self.get_property(vec!["response", "code"]));
            if response
                && request
                && code == "201"
                && let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe.logged_heads")
            {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }
}
