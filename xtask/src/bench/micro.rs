//! `cargo xtask bench --micro`: the criterion benchmarks, against modules built just before.
//!
//! Figures are reported as ratios against a reference measured in the same run (see each
//! benchmark's docs), since the machines they run on are shared and noisy.

use anyhow::Result;

use crate::wasm;

/// Builds the modules, then runs every benchmark of the workspace; extra arguments go to
/// criterion (for instance a benchmark name filter).
pub fn run(extra: &[String]) -> Result<()> {
    wasm::build()?;
    wasm::cargo_with_modules(&["bench", "--workspace", "--benches"], extra)
}
