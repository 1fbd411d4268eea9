//! Removing the stream callbacks a filter does not implement from its module's exports.
//!
//! The proxy-wasm Rust SDK exports every callback of the ABI, whether the filter overrides its
//! default or not, so a host calls each of them on every request: keel's sticky filter, which
//! only reads request headers, got seven calls per request, four of them the SDK's defaults
//! (`proxy_on_response_headers`, `proxy_on_response_body`, `proxy_on_log`, `proxy_on_done`).
//! Both keel and Envoy (proxy-wasm-cpp-host `src/context.cc`: `onResponseBody`, `onLog`,
//! `onDone`, …) skip a callback the module does not export and carry on exactly as the SDK's
//! default would (continue; done). A filter package lists the callbacks it leaves to the SDK:
//!
//! ```toml
//! [package.metadata.keel]
//! wasm-module = "sticky"
//! unused-callbacks = ["proxy_on_response_headers", "proxy_on_log"]
//! ```
//!
//! and `cargo xtask build-wasm` drops those exports from the module it writes. Only the stream
//! callbacks whose absence means "the SDK's default" may be listed ([`REMOVABLE`]); a name the
//! module does not export is an error (a typo, or an SDK that changed), and so is one whose SDK
//! method the package's source defines ([`check_sources`]: a callback implemented later and
//! left on the list would otherwise never run).

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result, bail};
use wasm_encoder::{Encode, RawSection};
use wasmparser::{Parser, Payload};

/// The callbacks a module may leave out, each with the SDK method (`HttpContext`, `Context`)
/// that implements it: each one's absence is, to keel and to Envoy, the same as the SDK's
/// default (continue, nothing logged, done).
const REMOVABLE: &[(&str, &str)] = &[
    ("proxy_on_request_headers", "on_http_request_headers"),
    ("proxy_on_request_body", "on_http_request_body"),
    ("proxy_on_request_trailers", "on_http_request_trailers"),
    ("proxy_on_response_headers", "on_http_response_headers"),
    ("proxy_on_response_body", "on_http_response_body"),
    ("proxy_on_response_trailers", "on_http_response_trailers"),
    ("proxy_on_log", "on_log"),
    ("proxy_on_done", "on_done"),
];

/// The SDK method of a removable callback.
fn method(callback: &str) -> Option<&'static str> {
    REMOVABLE
        .iter()
        .find(|(name, _)| *name == callback)
        .map(|(_, method)| *method)
}

/// Fails when a Rust file of the package in `dir` (or one it includes with `#[path]`) defines
/// the SDK method of a callback in `remove`.
pub fn check_sources(dir: &Path, remove: &[String]) -> Result<()> {
    if remove.is_empty() {
        return Ok(());
    }
    let mut files = Vec::new();
    collect_rust_files(&dir.join("src"), &mut files)?;
    let mut seen = 0;
    while seen < files.len() {
        let file = files[seen].clone();
        seen += 1;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("could not read {}", file.display()))?;
        for callback in remove {
            if let Some(method) = method(callback)
                && text.contains(&format!("fn {method}("))
            {
                bail!(
                    "unused-callbacks lists {callback}, but {} defines {method}: take it off \
                     the list, or the callback will never run",
                    file.display()
                );
            }
        }
        // Files compiled in with `#[path = "…"]`, relative to this one's folder.
        for included in text.split("#[path = \"").skip(1) {
            let Some((path, _)) = included.split_once('"') else {
                continue;
            };
            let path = file.parent().unwrap_or(dir).join(path);
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(())
}

fn collect_rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_rust_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The export section's id in the binary format.
const EXPORT_SECTION: u8 = 7;

/// `module` without the exports named in `remove`: every other section's contents as they were
/// (only the sections' length fields are written again, in their shortest form).
pub fn remove(module: &[u8], remove: &[String]) -> Result<Vec<u8>> {
    if let Some(name) = remove.iter().find(|n| method(n).is_none()) {
        let names: Vec<&str> = REMOVABLE.iter().map(|(name, _)| *name).collect();
        bail!(
            "unused-callbacks lists {name}, which is not a stream callback a module may leave \
             out (one of {})",
            names.join(", ")
        );
    }
    let mut out = wasm_encoder::Module::new();
    let mut found = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.context("the module does not parse")?;
        let section = payload.as_section();
        match payload {
            Payload::Version { .. } | Payload::End(_) => {}
            Payload::ExportSection(reader) => {
                let end = reader.range().end;
                let mut entries: Vec<(Range<usize>, bool)> = Vec::new();
                for item in reader.into_iter_with_offsets() {
                    let (start, export) = item.context("an export does not parse")?;
                    if let Some((last, _)) = entries.last_mut() {
                        last.end = start;
                    }
                    let drop = remove.iter().any(|n| n == export.name);
                    if drop {
                        found.push(export.name.to_owned());
                    }
                    entries.push((start..end, !drop));
                }
                let kept: Vec<&Range<usize>> = entries
                    .iter()
                    .filter_map(|(range, keep)| keep.then_some(range))
                    .collect();
                let mut data = Vec::new();
                u32::try_from(kept.len())
                    .context("too many exports")?
                    .encode(&mut data);
                for range in kept {
                    data.extend_from_slice(&module[range.clone()]);
                }
                out.section(&RawSection {
                    id: EXPORT_SECTION,
                    data: &data,
                });
            }
            // Function bodies are copied whole with the code section.
            Payload::CodeSectionEntry(_) => {}
            _ => {
                let (id, range) = section.context("a section the rewrite does not know")?;
                out.section(&RawSection {
                    id,
                    data: &module[range],
                });
            }
        }
    }
    if let Some(name) = remove.iter().find(|n| !found.contains(n)) {
        bail!("unused-callbacks lists {name}, which the module does not export");
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::{check_sources, remove};

    /// A module exporting a memory and three functions, two of them proxy-wasm callbacks.
    fn module() -> Vec<u8> {
        use wasm_encoder::{
            CodeSection, ExportKind, ExportSection, Function, FunctionSection, MemorySection,
            MemoryType, Module, TypeSection, ValType,
        };
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32], []);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        for _ in 0..3 {
            functions.function(0);
            let mut body = Function::new([]);
            body.instructions().end();
            code.function(&body);
        }
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        exports.export("proxy_on_log", ExportKind::Func, 0);
        exports.export("proxy_on_request_headers", ExportKind::Func, 1);
        exports.export("proxy_on_done", ExportKind::Func, 2);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&memories)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    fn exports(module: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(module) {
            if let Ok(wasmparser::Payload::ExportSection(reader)) = payload {
                for export in reader {
                    names.push(export.expect("an export").name.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn listed_callbacks_go_and_everything_else_stays() {
        let original = module();
        let names = ["proxy_on_log".to_owned(), "proxy_on_done".to_owned()];
        let stripped = remove(&original, &names).expect("rewritten");
        assert_eq!(exports(&stripped), ["memory", "proxy_on_request_headers"]);
        // Only the two entries went (each: name length, name, kind, index; one byte each but
        // the name): the rest is byte for byte the same.
        let entry = |name: &str| 1 + name.len() + 1 + 1;
        assert_eq!(
            stripped.len(),
            original.len() - entry("proxy_on_log") - entry("proxy_on_done")
        );
        let unchanged = remove(&original, &[]).expect("rewritten");
        assert_eq!(unchanged, original);
    }

    #[test]
    fn a_listed_callback_the_source_implements_is_refused() {
        let dir = std::env::temp_dir().join(format!("keel-exports-{}", std::process::id()));
        let shared = dir.join("shared");
        let src = dir.join("crate/src");
        std::fs::create_dir_all(&shared).expect("mkdir");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(
            src.join("lib.rs"),
            "#[path = \"../../shared/glue.rs\"]\nmod glue;\n\
             fn on_http_request_headers(&mut self) {}\n",
        )
        .expect("write");
        std::fs::write(shared.join("glue.rs"), "fn on_log(&mut self) {}\n").expect("write");
        let crate_dir = dir.join("crate");
        let check = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            check_sources(&crate_dir, &names)
        };
        let own = check(&["proxy_on_request_headers"]).expect_err("refused");
        assert!(own.to_string().contains("lib.rs defines"), "{own}");
        let included = check(&["proxy_on_log"]).expect_err("refused");
        assert!(
            included.to_string().contains("glue.rs defines"),
            "{included}"
        );
        check(&["proxy_on_response_body", "proxy_on_done"]).expect("nothing defines those");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_name_that_is_no_callback_or_not_exported_is_refused() {
        let original = module();
        let memory = remove(&original, &["memory".to_owned()]).expect_err("refused");
        assert!(
            memory.to_string().contains("not a stream callback"),
            "{memory}"
        );
        let missing =
            remove(&original, &["proxy_on_response_body".to_owned()]).expect_err("refused");
        assert!(missing.to_string().contains("does not export"), "{missing}");
    }
}
