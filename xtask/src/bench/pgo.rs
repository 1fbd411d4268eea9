//! `cargo xtask pgo`: keel built with profile-guided optimisation, in `target/pgo/` (its own
//! target directory, so that a plain release build is not rebuilt after it). Three steps: keel
//! built to count where it runs (`-Cprofile-generate`), run under the bench's load
//! ([`super::train`]), then built again with those counts (`-Cprofile-use`), which lets LLVM lay
//! out, inline and order keel's hot path from measured behaviour. keel's hot path is spread
//! flat over hyper, tokio, wasmtime and keel's own code, the shape this helps most: in
//! interleaved runs against the same code without it, user CPU per request fell by about a
//! fifth (#14). Needs `wrk`, `nginx` and `memcached` (as the bench), and `llvm-profdata` (the
//! toolchain's `llvm-tools` component, added with rustup when missing). It takes two release
//! builds of keel with their dependencies: about 15 minutes on two cores.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::contenders::Env;
use super::{cargo, cargo_build, train};
use crate::{cmd, wasm};

/// `cargo xtask pgo`: builds keel with profile-guided optimisation and prints where it is.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(other) = args.first() {
        bail!("usage: cargo xtask pgo (unknown argument {other})");
    }
    let keel = build()?;
    println!("{}", keel.display());
    Ok(())
}

/// The profile-guided keel: where [`build`] puts it.
pub fn binary() -> Result<PathBuf> {
    Ok(dir().join(host()?).join("release").join("keel"))
}

fn dir() -> PathBuf {
    cmd::target_dir().join("pgo")
}

/// The host's target triple. The builds name it, so that the flags reach keel's code and not
/// build scripts (cargo gives `RUSTFLAGS` to build scripts too when no target is named).
fn host() -> Result<String> {
    let info = cmd::output("rustc", &["-vV"])?;
    info.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` names no host")
}

/// `llvm-profdata` of the toolchain's llvm-tools component, which is added with rustup when
/// the toolchain does not have it yet (as `cargo xtask build-wasm` adds the wasm target).
fn profdata(host: &str) -> Result<PathBuf> {
    let sysroot = cmd::output("rustc", &["--print", "sysroot"])?;
    let path = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-profdata");
    if !path.exists() {
        cmd::run("rustup", &["component", "add", "llvm-tools"])
            .context("llvm-profdata is missing and rustup could not add llvm-tools")?;
    }
    if !path.exists() {
        bail!(
            "{} is missing after `rustup component add llvm-tools`",
            path.display()
        );
    }
    Ok(path)
}

/// Builds keel instrumented, trains it, and builds it again with the profile; its path.
pub fn build() -> Result<PathBuf> {
    let host = host()?;
    // Checked first: a missing tool fails now, not after a build.
    let profdata = profdata(&host)?;
    let profiles = dir().join("profiles");
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles).with_context(|| format!("create {}", profiles.display()))?;
    let keel_build = |rustflags: String| {
        cargo(
            true,
            &["--package", "keel", "--bin", "keel", "--target", &host],
            &[
                ("CARGO_TARGET_DIR", dir().into_os_string()),
                ("RUSTFLAGS", OsString::from(rustflags)),
            ],
        )
    };
    keel_build(format!("-Cprofile-generate={}", profiles.display()))?;
    // The training's other parts: the AJP members and the filters, as the bench builds them.
    cargo_build(
        true,
        &["--package", "keel-ajp", "--example", "ajp_bench_server"],
    )?;
    wasm::build()?;
    let mut env = Env::new(&cmd::target_dir().join("release"))?;
    env.keel = binary()?;
    train::run(&env)?;
    let merged = dir().join("keel.profdata");
    let (merged_arg, profiles_arg) = (merged.display().to_string(), profiles.display().to_string());
    cmd::run(
        &profdata.display().to_string(),
        &["merge", "-o", &merged_arg, &profiles_arg],
    )?;
    // Functions the load never ran are built as without a profile (LLVM warns about each).
    keel_build(format!(
        "-Cprofile-use={} -Cllvm-args=-pgo-warn-missing-function=false",
        merged.display()
    ))?;
    binary()
}
