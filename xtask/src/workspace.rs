//! What the workspace declares about itself: which packages are proxy-wasm modules.
//!
//! A package that is built to a `.wasm` module says so in its `Cargo.toml`:
//!
//! ```toml
//! [package.metadata.keel]
//! wasm-module = "sticky"   # written to target/filters/sticky.wasm
//! # Callbacks left to the SDK's defaults, not exported (see `crate::exports`).
//! unused-callbacks = ["proxy_on_response_body", "proxy_on_log"]
//! ```
//!
//! A library that is compiled into modules (and so must lint clean for `wasm32-wasip1`) says
//! `wasm-lint = true`. Modules are linted for wasm32 anyway.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

/// One workspace package as far as the wasm build is concerned.
pub struct WasmPackage {
    /// The cargo package name (`keel-sticky`).
    pub package: String,
    /// The module's file name under `target/filters/`, without `.wasm`; `None` for a library.
    pub module: Option<String>,
    /// The callbacks the module's exports lose (`crate::exports`).
    pub unused_callbacks: Vec<String>,
    /// The folder of its `Cargo.toml`.
    pub dir: PathBuf,
}

/// Every package that is a wasm module or is linted for wasm32, in the workspace's order.
pub fn wasm_packages() -> Result<Vec<WasmPackage>> {
    let json = cmd::output(
        "cargo",
        &[
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ],
    )
    .or_else(|_| cmd::output("cargo", &["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: Value = serde_json::from_str(&json).context("cargo metadata printed bad JSON")?;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no `packages` list")?;
    let mut found = Vec::new();
    for package in packages {
        let name = package["name"]
            .as_str()
            .context("a package in cargo metadata has no name")?;
        let keel = &package["metadata"]["keel"];
        let module = match &keel["wasm-module"] {
            Value::Null => None,
            Value::String(module) if is_file_stem(module) => Some(module.clone()),
            other => bail!(
                "{name}: package.metadata.keel.wasm-module must be a plain file name, not {other}"
            ),
        };
        let lint = match &keel["wasm-lint"] {
            Value::Null => false,
            Value::Bool(lint) => *lint,
            other => {
                bail!("{name}: package.metadata.keel.wasm-lint must be a boolean, not {other}")
            }
        };
        let unused_callbacks = match &keel["unused-callbacks"] {
            Value::Null => Vec::new(),
            Value::Array(names) if module.is_some() => names
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .with_context(|| {
                    format!("{name}: package.metadata.keel.unused-callbacks must list names")
                })?,
            other => bail!(
                "{name}: package.metadata.keel.unused-callbacks must be a list of names, and \
                 only beside wasm-module, not {other}"
            ),
        };
        let dir = package["manifest_path"]
            .as_str()
            .map(PathBuf::from)
            .and_then(|manifest| manifest.parent().map(PathBuf::from))
            .with_context(|| format!("{name}: cargo metadata has no manifest_path"))?;
        if module.is_some() || lint {
            found.push(WasmPackage {
                package: name.to_string(),
                module,
                unused_callbacks,
                dir,
            });
        }
    }
    if !found.iter().any(|p| p.module.is_some()) {
        bail!("no package declares package.metadata.keel.wasm-module");
    }
    Ok(found)
}

/// A module name is used as a file name: letters, digits and `_` only.
fn is_file_stem(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
