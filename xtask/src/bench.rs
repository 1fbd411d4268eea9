//! `cargo xtask bench`: the criterion benchmarks, against modules built just before.
//!
//! Figures are reported as ratios against a reference measured in the same run (see each
//! benchmark's docs), since the machines they run on are shared and noisy.

use anyhow::Result;

use crate::{cmd, wasm};

/// Builds the modules, then runs every benchmark of the workspace; extra arguments go to
/// criterion (for instance a benchmark name filter).
pub fn run(extra: &[String]) -> Result<()> {
    wasm::build()?;
    let filters = wasm::out_dir();
    let mut args: Vec<String> = ["bench", "--workspace", "--benches"]
        .map(String::from)
        .to_vec();
    if !extra.is_empty() {
        args.push("--".into());
        args.extend(extra.iter().cloned());
    }
    cmd::run_with_env("cargo", &args, &[("KEEL_FILTERS_DIR", &filters)])
}
