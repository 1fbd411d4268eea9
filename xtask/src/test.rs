//! `cargo xtask test`, the README's and CI's one test command: every check, in the order that
//! fails fastest, and every test of the workspace against freshly built modules.

use anyhow::Result;

use crate::{cmd, wasm};

/// Runs fmt, clippy (native and wasm32), the wasm build, then every test; extra arguments go to
/// `cargo test` (for instance a test name filter).
pub fn run(extra: &[String]) -> Result<()> {
    cmd::run("cargo", &["fmt", "--all", "--check"])?;
    cmd::run(
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
    wasm::ensure_target()?;
    let mut wasm_clippy = vec![
        "clippy".to_string(),
        "--target".into(),
        wasm::TARGET.into(),
        "--all-targets".into(),
    ];
    for package in wasm::lint_packages()? {
        wasm_clippy.extend(["--package".into(), package]);
    }
    wasm_clippy.extend(["--".into(), "-D".into(), "warnings".into()]);
    cmd::run("cargo", &wasm_clippy)?;
    wasm::build()?;
    wasm::cargo_with_modules(&["test", "--workspace", "--all-targets"], extra)
}
