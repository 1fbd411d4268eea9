//! The AssemblyScript test filters: each folder holds a `package.json` with pinned versions and a
//! committed `package-lock.json`; `npm ci` installs exactly those, `npm run asbuild` compiles
//! `build/<module>.wasm` with `asc`, which is copied to `target/filters/<module>.wasm` beside the
//! Rust modules. Run by `cargo xtask build-wasm` (so by `cargo xtask test` and CI).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Each AssemblyScript filter: its folder (from the workspace root) and its module name.
const FILTERS: &[(&str, &str)] = &[("wasm-tests/filters/assemblyscript", "test_assemblyscript")];

/// Builds every AssemblyScript filter into `out_dir`; returns the paths written.
pub fn build(out_dir: &Path) -> Result<Vec<PathBuf>> {
    check_toolchain()?;
    let mut written = Vec::new();
    for (folder, module) in FILTERS {
        let dir = cmd::root().join(folder);
        cmd::run_in(&dir, "npm", &["ci", "--no-audit", "--no-fund"])
            .with_context(|| format!("could not install the npm packages of {folder}"))?;
        cmd::run_in(&dir, "npm", &["run", "asbuild"])
            .with_context(|| format!("could not compile {folder} with asc"))?;
        let from = dir.join("build").join(format!("{module}.wasm"));
        let to = out_dir.join(format!("{module}.wasm"));
        std::fs::copy(&from, &to)
            .with_context(|| format!("could not copy {} to {}", from.display(), to.display()))?;
        written.push(to);
    }
    Ok(written)
}

/// Fails, saying what to install, when Node.js or npm is missing: the AssemblyScript filters are
/// part of the test suite, and a test must not pass because its filter could not be built.
fn check_toolchain() -> Result<()> {
    for tool in ["node", "npm"] {
        if cmd::output(tool, &["--version"]).is_err() {
            bail!(
                "`{tool}` is missing: the AssemblyScript test filters ({}) need Node.js and npm \
                 (Debian: `apt-get install nodejs npm`)",
                FILTERS
                    .iter()
                    .map(|(folder, _)| *folder)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}
