//! The built filters import only what stock Envoy provides.
//!
//! Reads `target/filters/sticky.wasm`, `route_suffix.wasm` and `session.wasm` (from `KEEL_FILTERS_DIR` when set,
//! which `cargo xtask test` does; else `<workspace>/target/filters`), lists their imports with
//! `wasmparser`, and fails naming every import that `wasm-tests/envoy-abi-imports.txt` (Envoy's
//! proxy-wasm 0.2.1 `env` functions and `wasi_snapshot_preview1`, sources named in its header) does
//! not hold. A missing `.wasm` is a failure, never a skip: run `cargo xtask build-wasm` first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use wasmparser::{Parser, Payload, TypeRef};

/// The filters `cargo xtask build-wasm` writes.
const FILTERS: &[&str] = &["sticky", "route_suffix", "session"];

/// What a proxy-wasm module must export for Envoy to run it (cpp-host `src/wasm.cc`).
const REQUIRED_EXPORTS: &[&str] = &[
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
];

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn filters_dir() -> PathBuf {
    match std::env::var_os("KEEL_FILTERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target").join("filters"),
    }
}

/// The allowed `(module, name)` pairs of `envoy-abi-imports.txt`.
fn allowed_imports() -> BTreeSet<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy-abi-imports.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let mut allowed = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(module), Some(name), None) = (words.next(), words.next(), words.next()) else {
            panic!(
                "{}:{}: expected `module name`, got `{line}`",
                path.display(),
                n + 1
            );
        };
        assert!(
            allowed.insert((module.to_owned(), name.to_owned())),
            "{}:{}: `{module} {name}` is listed twice",
            path.display(),
            n + 1
        );
    }
    allowed
}

/// `(module, name, is a function)` for each import of a module.
type ImportList = Vec<(String, String, bool)>;

/// The module's imports as `(module, name, is a function)`, and its export names.
fn imports_and_exports(bytes: &[u8]) -> Result<(ImportList, Vec<String>), String> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    let is_func = matches!(import.ty, TypeRef::Func(_));
                    imports.push((import.module.to_owned(), import.name.to_owned(), is_func));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    exports.push(export.map_err(|e| e.to_string())?.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// Every import of `bytes` that stock Envoy does not provide, described.
fn unknown_imports(
    bytes: &[u8],
    allowed: &BTreeSet<(String, String)>,
) -> Result<Vec<String>, String> {
    let (imports, _) = imports_and_exports(bytes)?;
    Ok(imports
        .into_iter()
        .filter(|(module, name, is_func)| {
            !is_func || !allowed.contains(&(module.clone(), name.clone()))
        })
        .map(|(module, name, is_func)| {
            if is_func {
                format!("{module}.{name}")
            } else {
                format!("{module}.{name} (not a function)")
            }
        })
        .collect())
}

fn check_filter(name: &str) {
    let path = filters_dir().join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {} ({err}): build the filters first with `cargo xtask build-wasm` \
             (or set KEEL_FILTERS_DIR to the directory that holds them)",
            path.display()
        )
    });
    let allowed = allowed_imports();
    let unknown = unknown_imports(&bytes, &allowed)
        .unwrap_or_else(|err| panic!("{} is not a valid wasm module: {err}", path.display()));
    assert!(
        unknown.is_empty(),
        "{} imports what stock Envoy does not provide (see wasm-tests/envoy-abi-imports.txt):\n  {}",
        path.display(),
        unknown.join("\n  ")
    );
    let (imports, exports) = imports_and_exports(&bytes).unwrap_or_else(|err| panic!("{err}"));
    assert!(
        !imports.is_empty(),
        "{} imports nothing: not a proxy-wasm filter",
        path.display()
    );
    for required in REQUIRED_EXPORTS {
        assert!(
            exports.iter().any(|e| e == required),
            "{} does not export `{required}` (exports: {})",
            path.display(),
            exports.join(", ")
        );
    }
}

#[test]
fn sticky_imports_only_what_envoy_provides() {
    check_filter(FILTERS[0]);
}

#[test]
fn route_suffix_imports_only_what_envoy_provides() {
    check_filter(FILTERS[1]);
}

#[test]
fn session_imports_only_what_envoy_provides() {
    check_filter(FILTERS[2]);
}

#[test]
fn the_list_holds_the_abi_of_envoy_1_40() {
    let allowed = allowed_imports();
    for (module, name) in [
        ("env", "proxy_log"),
        ("env", "proxy_get_header_map_pairs"),
        ("env", "proxy_define_metric"),
        ("env", "proxy_get_log_level"),
        ("wasi_snapshot_preview1", "random_get"),
        ("wasi_snapshot_preview1", "fd_write"),
    ] {
        assert!(
            allowed.contains(&(module.to_owned(), name.to_owned())),
            "{module} {name}"
        );
    }
    assert!(
        !allowed.contains(&("env".to_owned(), "proxy_get_configuration".to_owned())),
        "ABI 0.1.0 only"
    );
    assert_eq!(allowed.iter().filter(|(m, _)| m == "env").count(), 41);
    // Envoy 1.40.0-dev (cpp-host f2db56a, `include/proxy-wasm/exports.h`
    // FOR_ALL_WASI_FUNCTIONS: 45 functions; `src/wasm.cc` registers each under both names).
    for wasi in ["wasi_snapshot_preview1", "wasi_unstable"] {
        assert_eq!(allowed.iter().filter(|(m, _)| m == wasi).count(), 45);
    }
    for (module, name) in [
        ("wasi_snapshot_preview1", "poll_oneoff"),
        ("wasi_snapshot_preview1", "sched_yield"),
        ("wasi_snapshot_preview1", "fd_fdstat_set_flags"),
        ("wasi_unstable", "fd_write"),
    ] {
        assert!(
            allowed.contains(&(module.to_owned(), name.to_owned())),
            "{module} {name} (Go SDK modules import it)"
        );
    }
}

#[test]
fn an_import_envoy_lacks_is_reported() {
    // A hand-made module: one function type `() -> ()`, imports `env.proxy_bogus` and
    // `env.proxy_log` as functions, and `env.memory` as a memory.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    let mut imports = vec![0x03];
    for (name, kind) in [
        (&b"proxy_bogus"[..], &[0x00, 0x00][..]),
        (b"proxy_log", &[0x00, 0x00]),
        (b"memory", &[0x02, 0x00, 0x01]),
    ] {
        imports.push(3);
        imports.extend_from_slice(b"env");
        imports.push(u8::try_from(name.len()).expect("short name"));
        imports.extend_from_slice(name);
        imports.extend_from_slice(kind);
    }
    module.push(0x02);
    module.push(u8::try_from(imports.len()).expect("short section"));
    module.extend_from_slice(&imports);
    let unknown = unknown_imports(&module, &allowed_imports()).expect("valid module");
    assert_eq!(
        unknown,
        vec![
            "env.proxy_bogus".to_owned(),
            "env.memory (not a function)".to_owned()
        ]
    );
}
