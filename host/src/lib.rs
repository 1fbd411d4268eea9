//! keel's host: the HTTP front end, the balancer, the upstreams (HTTP, and AJP/1.3 through
//! crate `keel-ajp`), configuration, the admin listener, the hook where the proxy-wasm
//! filter chain (crate `keel-wasm`) plugs in, and the session store (crate `keel-store`)
//! served in process to the filters' callouts and over HTTP by `keel bridge`.

pub mod access_log;
pub mod admin;
pub mod balancer;
pub mod bridge;
pub mod callout;
pub mod config;
pub mod memory;
pub mod metrics;
pub mod proxy;
pub mod recycled;
pub mod runtime;
pub mod server;
pub mod upstream;
pub mod worker;
pub mod write_hook;
