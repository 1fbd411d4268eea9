//! Which stream callbacks a module exports, read once from the compiled module. A callback the
//! module does not export is not called: the stream carries on as the SDK's default would
//! (continue; nothing logged; done), as Envoy does (proxy-wasm-cpp-host `src/context.cc`:
//! `onRequestBody`, `onResponseHeaders`, `onLog`, `onDone`, … return at once when the export is
//! missing). keel then also skips the work around the call (installing the stream's data in the
//! instance), and a chain none of whose modules reads a body leaves that body alone
//! ([`Bodies`]). keel's own filters export only the callbacks they implement (`cargo xtask
//! build-wasm`, `unused-callbacks` in their `Cargo.toml`).

use wasmtime::Module;

use crate::instance::Callback;

/// The stream callbacks one module exports.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Callbacks {
    request_headers: bool,
    request_body: bool,
    request_trailers: bool,
    response_headers: bool,
    response_body: bool,
    response_trailers: bool,
    log: bool,
    done: bool,
}

impl Callbacks {
    /// Read from `module`'s exports.
    pub fn of(module: &Module) -> Callbacks {
        let has = |name: &str| module.get_export(name).is_some();
        Callbacks {
            request_headers: has("proxy_on_request_headers"),
            request_body: has("proxy_on_request_body"),
            request_trailers: has("proxy_on_request_trailers"),
            response_headers: has("proxy_on_response_headers"),
            response_body: has("proxy_on_response_body"),
            response_trailers: has("proxy_on_response_trailers"),
            log: has("proxy_on_log"),
            done: has("proxy_on_done"),
        }
    }

    /// Whether the module exports `callback`.
    pub fn has(&self, callback: Callback) -> bool {
        match callback {
            Callback::RequestHeaders => self.request_headers,
            Callback::RequestBody => self.request_body,
            Callback::RequestTrailers => self.request_trailers,
            Callback::ResponseHeaders => self.response_headers,
            Callback::ResponseBody => self.response_body,
            Callback::ResponseTrailers => self.response_trailers,
        }
    }

    /// Whether `on_log` runs: the only callback after the request headers that may read the
    /// request head again (the stream then keeps a copy of it).
    pub fn log(&self) -> bool {
        self.log
    }

    /// Which bodies this module takes part in: a body whose callbacks it has, and a body whose
    /// size (`request.size`, `response.size`, `response.backend_latency`, …) a later callback
    /// of it may read. The request body's size is readable from the response callbacks on.
    pub fn bodies(&self) -> Bodies {
        // `on_log` and `on_done` run after the stream and may read its sizes.
        let response = self.response_body || self.response_trailers || self.log || self.done;
        Bodies {
            request: self.request_body
                || self.request_trailers
                || self.response_headers
                || response,
            response,
        }
    }
}

/// Which bodies a chain takes part in ([`crate::FilterChain::bodies`]). A body the chain takes
/// no part in goes from one side to the other untouched: no callback, no copy, and its
/// Content-Length as the headers callbacks left it. The one thing a filter then cannot see is
/// that body's size from `on_delete` (it reads 0), the only callback a module must export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bodies {
    /// The request body goes through the chain.
    pub request: bool,
    /// The response body goes through the chain.
    pub response: bool,
}

impl Bodies {
    /// Either body of either chain.
    pub fn or(self, other: Bodies) -> Bodies {
        Bodies {
            request: self.request || other.request,
            response: self.response || other.response,
        }
    }
}
