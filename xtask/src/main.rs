//! keel's task runner, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! * `cluster` runs keel's main job, a sticky, failing-over cluster on the embedded default
//!   configuration, with a tour that shows it working ([`cluster`]).
//! * `build-wasm` builds every proxy-wasm module of the workspace for `wasm32-wasip1` in the small
//!   `wasm` profile and writes them to `target/filters/<name>.wasm` ([`wasm`]).
//! * `test` is the project's one test command (the README's and CI's): fmt, clippy for the native
//!   and wasm32 targets, the wasm build, then every test in the workspace ([`test`]).
//! * `bench` runs keel side by side with HAProxy, nginx and Apache httpd under `wrk`, and with
//!   `--micro` the criterion benchmarks ([`bench`]).
//! * `pgo` builds keel with profile-guided optimisation, trained by the bench's load
//!   ([`bench::pgo`]).
//!
//! Which packages are wasm modules is declared by the packages themselves, in
//! `[package.metadata.keel]` of their `Cargo.toml` ([`workspace`]).

mod assemblyscript;
mod bench;
mod cluster;
mod cmd;
mod exports;
mod http10;
mod sdk_examples;
mod test;
mod wasm;
mod workspace;

use std::process::ExitCode;

use anyhow::{Result, bail};

fn main() -> ExitCode {
    match run_task() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the task named by the first argument, passing the rest on.
fn run_task() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("build-wasm") => wasm::build().map(|_| ()),
        Some("test") => test::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("pgo") => bench::pgo::run(&rest),
        Some("cluster") => cluster::run(&rest),
        Some("sdk-examples") => sdk_examples::run(&rest),
        _ => bail!(
            "usage: cargo xtask <task>\n\n\
             tasks:\n  cluster     two session-holding backends behind keel, a tour, then serve\n  \
             build-wasm  build the filters to target/filters/*.wasm\n  \
             test        fmt, clippy (native and wasm32), build-wasm, every test\n  \
             bench       keel side by side with HAProxy, nginx, httpd (--quick: CI subset;\n              --micro: the criterion benchmarks; --pgo: keel built by pgo)\n  \
             pgo         keel built with profile-guided optimisation, trained by the bench's load\n  \
             sdk-examples PATH  the proxy-wasm Rust SDK's examples from a checkout, run in keel"
        ),
    }
}
