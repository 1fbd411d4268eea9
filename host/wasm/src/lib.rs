//! keel's proxy-wasm host: ABI 0.2.1 on wasmtime, run the way Envoy (proxy-wasm-cpp-host) runs it.
//!
//! * [`FilterChain::new`] compiles each filter module once (one process-wide [`wasmtime::Engine`]
//!   and [`wasmtime::Linker`]), makes an `InstancePre` per module, and instantiates every filter
//!   once per worker: `_initialize`, the root context, `on_vm_start`, `on_configure`.
//! * [`FilterChain::stream`] opens a [`Stream`] (one stream context per filter) whose async
//!   methods run the headers, body and trailers callbacks in both directions; pauses, callouts and
//!   local responses are resolved inside those futures.
//! * Every callback runs under a memory limit and an epoch deadline. A trap, a timeout or
//!   `proc_exit` applies the filter's [`FailurePolicy`], replaces the instance by a freshly
//!   configured one, logs a line and counts `keel_wasm_failures_total{filter,kind}`.
//!
//! Where the files are: `engine` (engine, linker, epoch ticker), `instance` (one instance and its
//! callbacks), `chain` (per-worker slots, failure handling), `callbacks` (which callbacks a module
//! exports, which bodies a chain reads), `stream` (the per-request driver),
//! `state` (the data a store carries), `body` (a filter's body buffer), `hostcalls/*` (the imports), `serial` (wire formats), `grpc` (unary gRPC callouts), `grpc_frames` (gRPC's message framing), `grpc_stream` (gRPC streams), `grpc_send` (what a filter sends on one), `tokens` (callout tokens),
//! `shared` (shared data and queues), `metrics`, `ticker` (timers and root-context callouts),
//! `drain` (a let-go instance whose root waits to call `proxy_done`).

mod abi;
mod body;
mod callbacks;
mod chain;
pub mod der;
mod drain;
mod engine;
mod error;
mod filter_state;
mod foreign;
mod grpc;
mod grpc_frames;
mod grpc_send;
mod grpc_stream;
mod header_names;
mod headers;
mod hostcalls;
mod instance;
mod memory;
mod metrics;
mod properties;
pub mod serial;
mod shared;
mod state;
mod stream;
mod ticker;
mod tokens;
mod types;

pub use callbacks::Bodies;
pub use chain::{FilterChain, set_worker_index};
pub use engine::provided_imports;
pub use error::{CalloutError, ChainError};
pub use grpc_send::GrpcOutgoing;
pub use stream::Stream;
pub use types::{
    BodyVerdict, CallTrailers, CalloutFuture, CalloutHandler, CodeDetails, DownstreamTls,
    FailurePolicy, FilterSpec, GrpcFuture, GrpcStreamBody, GrpcStreamFuture, HeadersVerdict,
    Limits, LocalCertificate, LocalResponse, NoCallouts, StreamInfo, TrailersVerdict,
    UpstreamConnection, UpstreamInfo,
};
