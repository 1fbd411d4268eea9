//! Running cargo, rustup and other programs from the workspace root, with errors that name them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of this crate's directory).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` as cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target"),
    }
}

/// Runs a program in the workspace root and fails, naming it, when it does not succeed.
pub fn run<S: AsRef<str>>(program: &str, args: &[S]) -> Result<()> {
    run_with_env(program, args, &[])
}

/// Like [`run`], with extra environment variables for the child.
pub fn run_with_env<S: AsRef<str>>(program: &str, args: &[S], env: &[(&str, &Path)]) -> Result<()> {
    run_in_with_env(&root(), program, args, env)
}

/// Like [`run`], in `dir` instead of the workspace root.
pub fn run_in<S: AsRef<str>>(dir: &Path, program: &str, args: &[S]) -> Result<()> {
    run_in_with_env(dir, program, args, &[])
}

fn run_in_with_env<S: AsRef<str>>(
    dir: &Path,
    program: &str,
    args: &[S],
    env: &[(&str, &Path)],
) -> Result<()> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let line = format!("{program} {}", args.join(" "));
    eprintln!("xtask: {line}");
    let status = Command::new(program)
        .args(&args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .with_context(|| format!("could not start {program}"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a program in the workspace root and returns what it printed on stdout.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .with_context(|| format!("could not start {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{program} printed non-UTF-8 output"))
}
