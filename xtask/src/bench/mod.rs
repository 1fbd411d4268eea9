//! `cargo xtask bench`: keel side by side with HAProxy, nginx and Apache httpd, every contender
//! in front of the same backends, driven by the same `wrk` load in interleaved rounds
//! (A B C … A B C …), medians; a report in `target/bench/report.md` and `report.svg`.
//!
//! * `--quick`: direct, HAProxy and keel sticky + route_suffix (not the floor under keel: the
//!   test build has no plain `hyper_floor` binary to run), small GET at 32 connections, 2
//!   rounds of 2 s, the failover and flood checks, then httpd AJP and keel AJP in front of
//!   Tomcat (CI runs it, so that the harness keeps working: a contender that does not start,
//!   or errors under the load, fails the run). It runs keel's dev build (the one the tests
//!   use): its figures say nothing about keel's speed.
//! * `--micro [criterion args]`: the criterion benchmarks instead ([`micro`]).
//! * `--rounds N`, `--seconds N`: override the rounds and the length of a run.
//! * `--only ID,ID`: only these contenders (ids: direct, haproxy, nginx, httpd, keel-none,
//!   hyper-floor, keel-sticky, keel-sticky-w1, keel-all, httpd-ajp, keel-ajp; in front of Tomcat:
//!   tomcat-direct, tomcat-haproxy, tomcat-httpd-ajp, tomcat-keel-ajp, tomcat-keel);
//!   `--no-build`: use what is built.
//! * `--pgo`: keel's rows run keel built with profile-guided optimisation ([`pgo`], `cargo
//!   xtask pgo`; built first, unless `--no-build`).
//!
//! The realistic rows, in front of two real Tomcat nodes, come last ([`tomcat`]).
//!
//! Figures are compared as ratios to HAProxy and to the backend reached directly, measured in
//! the same run: the machines are shared and noisy, absolute figures mean little.

mod contenders;
mod micro;
pub mod pgo;
pub(crate) mod procs;
mod report;
mod scenarios;
mod tomcat;
mod train;
mod wrk;

use anyhow::{Context, Result, bail};

use crate::{cmd, wasm};

/// What a run does.
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub seconds: u32,
    /// Contender ids to keep (all when empty).
    pub only: Vec<String>,
    /// keel's rows run the profile-guided build ([`pgo`]).
    pub pgo: bool,
}

/// Parses the arguments and runs the side-by-side benchmark (or the criterion ones).
pub fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("--micro") {
        return micro::run(&args[1..]);
    }
    let mut options = Options {
        quick: false,
        rounds: 3,
        seconds: 5,
        only: Vec::new(),
        pgo: false,
    };
    let mut build = true;
    let mut rounds = None;
    let mut seconds = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> Result<u64> {
            it.next()
                .with_context(|| format!("{what} needs a number"))?
                .parse()
                .with_context(|| format!("{what} needs a number"))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-build" => build = false,
            "--pgo" => options.pgo = true,
            "--only" => {
                let list = it.next().context("--only needs a list of contender ids")?;
                options.only = list.split(',').map(str::to_string).collect();
            }
            "--rounds" => rounds = Some(number("--rounds")? as usize),
            "--seconds" => seconds = Some(number("--seconds")? as u32),
            other => bail!(
                "usage: cargo xtask bench [--quick] [--rounds N] [--seconds N] [--only IDS] [--no-build] [--pgo]\n       \
                 cargo xtask bench --micro [criterion arguments]\n(unknown argument {other})"
            ),
        }
    }
    if options.quick {
        options.rounds = 2;
        options.seconds = 2;
    }
    options.rounds = rounds.unwrap_or(options.rounds).max(1);
    options.seconds = seconds.unwrap_or(options.seconds).max(1);
    for tool in ["wrk", "nginx", "haproxy", "memcached", "/usr/sbin/apache2"] {
        if cmd::output("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            bail!(
                "{tool} is missing: apt-get install wrk nginx haproxy memcached apache2 (see .ci/run)"
            );
        }
    }
    if !build {
        return scenarios::run(&options);
    }
    // `--quick` checks the harness, not the figures: it takes the dev build the tests use, so
    // that CI never compiles wasmtime a second time (in release).
    let release = !options.quick;
    cargo_build(release, &["--package", "keel", "--bins"])?;
    // Built alone: an example brings keel's dev-dependencies' features into the build, which
    // would change the keel binary measured (and rebuild it on every switch).
    cargo_build(release, &["--package", "keel", "--example", "hyper_floor"])?;
    cargo_build(
        release,
        &["--package", "keel-ajp", "--example", "ajp_bench_server"],
    )?;
    wasm::build()?;
    if options.pgo {
        pgo::build()?;
    }
    scenarios::run(&options)
}

/// The folder of the binaries a run uses: the dev build for `--quick`, else the release build.
pub fn binaries(options: &Options) -> std::path::PathBuf {
    cmd::target_dir().join(if options.quick { "debug" } else { "release" })
}

/// `cargo build [--release] <args>` without the package variables that `cargo run` (the xtask
/// alias) hands this process: ring's build script reruns when `CARGO_PKG_NAME` and its kin
/// differ from the last build's, which would rebuild keel on every switch between
/// `cargo xtask bench` and a plain `cargo build`.
fn cargo_build(release: bool, args: &[&str]) -> Result<()> {
    cargo(release, args, &[])
}

/// [`cargo_build`], with `env` set for cargo (the profile-guided build's flags and target
/// directory).
fn cargo(release: bool, args: &[&str], env: &[(&str, std::ffi::OsString)]) -> Result<()> {
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    let args = [&["build"], profile, args].concat();
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = std::process::Command::new("cargo");
    command.args(&args).current_dir(cmd::root());
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    let status = command.status().context("could not start cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
