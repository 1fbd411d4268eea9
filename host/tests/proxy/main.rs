//! keel's integration tests: one binary, real processes. Each test starts its own backends
//! (`keel-test-backend`, killed with SIGKILL where a test needs a member to die) and its own
//! `keel serve` on 127.0.0.1 port 0, and waits by polling with deadlines, never by sleeping.

#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

mod harness;
#[path = "../support/uuid.rs"]
mod uuid;

mod access_log;
mod admin;
mod blame;
mod callout_trailers;
mod code_details;
mod config_errors;
mod failover;
mod filter_hook;
mod grpc_callouts;
mod lifecycle;
mod limits;
mod parking;
mod protocols;
mod request_id;
mod sticky;
mod upgrade;
mod upstream_properties;
mod wasm_filters;
