//! keel's task runner, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! * `build-wasm` builds every filter for `wasm32-wasip1` in the small `wasm` profile and writes
//!   them to `target/filters/<name>.wasm`.
//! * `test` is the project's one test command (the README's and CI's): fmt, clippy for the native
//!   and wasm32 targets, the wasm build, then every test in the workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// The wasm target the filters are built for (Envoy's and keel's proxy-wasm target).
const WASM_TARGET: &str = "wasm32-wasip1";

/// The proxy-wasm filters: (cargo package, file name under `target/filters/` without `.wasm`).
const FILTERS: &[(&str, &str)] = &[
    ("keel-sticky", "sticky"),
    ("keel-route-suffix", "route_suffix"),
];

/// The crates that are compiled for the wasm target, and so linted for it too.
const WASM_CRATES: &[&str] = &["keel-filter-logic", "keel-sticky", "keel-route-suffix"];

fn main() -> ExitCode {
    match run_task() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the task named by the first argument.
fn run_task() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("build-wasm") => build_wasm().map(|_| ()),
        Some("test") => test(),
        _ => bail!(
            "usage: cargo xtask <task>\n\n\
             tasks:\n  build-wasm  build the filters to target/filters/*.wasm\n  \
             test        fmt, clippy (native and wasm32), build-wasm, every test"
        ),
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` as cargo does.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target"),
    }
}

/// Runs a command in the workspace root and fails, naming it, when it does not succeed.
fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Adds the wasm target with rustup when the toolchain does not have it yet.
fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output()
        .context("could not run rustup to check for the wasm32-wasip1 target")?;
    let installed = String::from_utf8_lossy(&out.stdout);
    if !installed.lines().any(|line| line.trim() == WASM_TARGET) {
        run("rustup", &["target", "add", WASM_TARGET])?;
    }
    Ok(())
}

/// Builds every filter and copies it to `target/filters/<name>.wasm`; returns the paths.
fn build_wasm() -> Result<Vec<PathBuf>> {
    ensure_wasm_target()?;
    let mut args = vec!["build", "--profile", "wasm", "--target", WASM_TARGET];
    for (package, _) in FILTERS {
        args.extend(["--package", package]);
    }
    run("cargo", &args)?;
    let built = target_dir().join(WASM_TARGET).join("wasm");
    let out_dir = target_dir().join("filters");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (_, name) in FILTERS {
        let from = built.join(format!("{name}.wasm"));
        let to = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .with_context(|| format!("could not copy {} to {}", from.display(), to.display()))?;
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

/// The README's test command: every check CI makes, in the order that fails fastest.
fn test() -> Result<()> {
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let mut wasm_clippy = vec!["clippy", "--target", WASM_TARGET, "--all-targets"];
    for package in WASM_CRATES {
        wasm_clippy.extend(["--package", package]);
    }
    wasm_clippy.extend(["--", "-D", "warnings"]);
    ensure_wasm_target()?;
    run("cargo", &wasm_clippy)?;
    let filters = build_wasm()?;
    let filters_dir = filters
        .first()
        .and_then(|path| path.parent())
        .context("no filter was built")?;
    eprintln!(
        "xtask: tests load the filters from {}",
        filters_dir.display()
    );
    run("cargo", &["test", "--workspace", "--all-targets"])
}
