//! keel's `route-suffix` proxy-wasm filter (adapter around `keel-filter-logic`).

use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;

// The module's entry point (`_initialize`), as the SDK's macro writes it.
#[allow(missing_docs)]
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}
}

struct Root;

impl Context for Root {}

impl RootContext for Root {}
