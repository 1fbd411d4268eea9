//! A proxy-wasm test filter written against the Rust SDK 0.1.x (proxy-wasm ABI 0.1.0), the way
//! that SDK's examples are: the root context is set in `_start`, which only a host that runs the
//! WASI command entry point calls (cpp-host `src/wasm.cc` `startVm`: `_start` when the module
//! has no `_initialize`). It adds `x-legacy: <plugin configuration>` to the request and
//! `x-legacy-response: <request path>` to the response, and pauses on a request carrying
//! `x-legacy-pause` until a callout to `store` answers. Its `_start` logs, reads the clock and
//! its environment (hostcalls Envoy allows while a module starts) and, when the environment
//! says `LEGACY_START_HOSTCALL=define_metric`, defines a metric (one it does not allow).
#![allow(unsafe_code)]

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, LogLevel, MetricType};

/// The SDK 0.1.x entry point (its examples' `_start`): without it, every context creation
/// panics with "invalid root_context_id and missing constructors". Exported on wasm only: a
/// native build (the workspace's `--all-targets` test build) links the C runtime's `_start`.
#[cfg_attr(target_arch = "wasm32", unsafe(no_mangle))]
pub fn _start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    let now = std::time::SystemTime::now();
    let _ = proxy_wasm::hostcalls::log(LogLevel::Info, &format!("legacy: _start at {now:?}"));
    if std::env::var("LEGACY_START_HOSTCALL").as_deref() == Ok("define_metric") {
        let _ = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "legacy.started");
    }
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(LegacyRoot {
            config: String::new(),
        })
    });
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(Legacy {
            config: CONFIG.with(|c| c.borrow().clone()),
            path: String::new(),
        })
    });
}

thread_local! {
    static CONFIG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

struct LegacyRoot {
    config: String,
}

impl Context for LegacyRoot {}

impl RootContext for LegacyRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_configuration().unwrap_or_default();
        self.config = String::from_utf8_lossy(&bytes).into_owned();
        CONFIG.with(|c| c.borrow_mut().clone_from(&self.config));
        true
    }
}

struct Legacy {
    config: String,
    path: String,
}

impl Context for Legacy {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "none".to_owned());
        self.set_http_request_header("x-legacy-callout", Some(&status));
        self.resume_http_request();
    }
}

impl HttpContext for Legacy {
    fn on_http_request_headers(&mut self, _num_headers: usize) -> Action {
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        self.set_http_request_header("x-legacy", Some(&self.config));
        if self.get_http_request_header("x-legacy-pause").is_some() {
            let sent = self.dispatch_http_call(
                "store",
                vec![
                    (":method", "GET"),
                    (":path", "/auth?id=legacy"),
                    (":authority", "store"),
                ],
                None,
                vec![],
                Duration::from_secs(1),
            );
            if sent.is_ok() {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize) -> Action {
        self.set_http_response_header("x-legacy-response", Some(&self.path));
        Action::Continue
    }
}
