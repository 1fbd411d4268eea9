//! `cargo xtask build-wasm`: every proxy-wasm module of the workspace, built in the `wasm`
//! profile for `wasm32-wasip1` and written to `target/filters/<name>.wasm` without the callbacks
//! its package leaves to the SDK ([`crate::exports`]), then the AssemblyScript test filters
//! ([`crate::assemblyscript`]).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cmd;
use crate::workspace::{self, WasmPackage};

/// The wasm target the filters are built for (Envoy's and keel's proxy-wasm target).
pub const TARGET: &str = "wasm32-wasip1";

/// The folder the modules are written to; the tests read them from here.
pub fn out_dir() -> PathBuf {
    cmd::target_dir().join("filters")
}

/// Adds the wasm target with rustup when the toolchain does not have it yet.
pub fn ensure_target() -> Result<()> {
    let installed = cmd::output("rustup", &["target", "list", "--installed"])
        .context("could not ask rustup for the installed targets")?;
    if !installed.lines().any(|line| line.trim() == TARGET) {
        cmd::run("rustup", &["target", "add", TARGET])?;
    }
    Ok(())
}

/// Builds every module and copies it to [`out_dir`]; returns the paths written.
pub fn build() -> Result<Vec<PathBuf>> {
    ensure_target()?;
    let packages = workspace::wasm_packages()?;
    let modules: Vec<(&str, &str, &[String])> = packages
        .iter()
        .filter_map(|p: &WasmPackage| {
            let module = p.module.as_deref()?;
            Some((p.package.as_str(), module, p.unused_callbacks.as_slice()))
        })
        .collect();
    for package in &packages {
        crate::exports::check_sources(&package.dir, &package.unused_callbacks)
            .with_context(|| format!("{}: package.metadata.keel", package.package))?;
    }
    let mut args = vec!["build", "--profile", "wasm", "--target", TARGET];
    for (package, _, _) in &modules {
        args.extend(["--package", package]);
    }
    cmd::run("cargo", &args)?;
    let built = cmd::target_dir().join(TARGET).join("wasm");
    let out_dir = out_dir();
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let mut written = crate::assemblyscript::build(&out_dir)?;
    for (package, module, unused) in modules {
        let from = built.join(format!("{module}.wasm"));
        let to = out_dir.join(format!("{module}.wasm"));
        let bytes =
            std::fs::read(&from).with_context(|| format!("could not read {}", from.display()))?;
        let bytes = crate::exports::remove(&bytes, unused)
            .with_context(|| format!("{package}: {}", from.display()))?;
        std::fs::write(&to, bytes).with_context(|| format!("could not write {}", to.display()))?;
        let size = std::fs::metadata(&to)
            .with_context(|| format!("could not read {}", to.display()))?
            .len();
        eprintln!(
            "{}  {} bytes ({:.1} KiB)",
            to.display(),
            size,
            size as f64 / 1024.0
        );
        written.push(to);
    }
    Ok(written)
}

/// The packages to lint for wasm32: the modules and the libraries compiled into them.
pub fn lint_packages() -> Result<Vec<String>> {
    Ok(workspace::wasm_packages()?
        .into_iter()
        .map(|p| p.package)
        .collect())
}

/// Runs `cargo <args> [-- <extra>]` with `KEEL_FILTERS_DIR` naming the freshly built modules
/// (what `test` and `bench` hand the tests and benchmarks).
pub fn cargo_with_modules(args: &[&str], extra: &[String]) -> Result<()> {
    let filters = out_dir();
    eprintln!("xtask: modules from {}", filters.display());
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if !extra.is_empty() {
        all.push("--".into());
        all.extend(extra.iter().cloned());
    }
    cmd::run_with_env("cargo", &all, &[("KEEL_FILTERS_DIR", &filters)])
}
