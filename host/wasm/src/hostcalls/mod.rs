//! The imports a proxy-wasm module gets: every host function of ABI 0.2.1 Envoy provides (and
//! the 0.1.0 names Envoy still registers), plus WASI preview1 as Envoy gives it.
//!
//! Each function checks every guest pointer and length (see `crate::memory`); a bad one answers
//! `InvalidMemoryAccess` (or `EFAULT` for WASI), never a host panic.

mod control;
mod io;
mod maps;
mod start_phase;
mod wasi;

use wasmtime::{FuncType, Linker, Val, ValType};

use crate::state::HostState;

/// Maps a `BadPointer` to the status the caller returns.
macro_rules! guest {
    ($expr:expr) => {
        match $expr {
            Ok(value) => value,
            Err(crate::memory::BadPointer) => return Ok(crate::abi::status::INVALID_MEMORY_ACCESS),
        }
    };
}
pub(crate) use guest;

/// Defines every import in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    control::add(linker)?;
    maps::add(linker)?;
    io::add(linker)?;
    wasi::add(linker)?;
    Ok(())
}

/// Defines `module.name` as a function that ignores its arguments and answers `answer`;
/// `params` spells the parameter types, `i` for i32 and `I` for i64; `at_start` says whether
/// it may be called while the module starts (see `start_phase`).
pub(crate) fn stub(
    linker: &mut Linker<HostState>,
    module: &str,
    name: &'static str,
    params: &str,
    answer: i32,
    at_start: bool,
) -> wasmtime::Result<()> {
    let params = params
        .chars()
        .map(|c| if c == 'I' { ValType::I64 } else { ValType::I32 });
    let ty = FuncType::new(linker.engine(), params, [ValType::I32]);
    linker.func_new(module, name, ty, move |caller, _params, results| {
        if !at_start {
            start_phase::check(caller.data(), name)?;
        }
        if let Some(result) = results.first_mut() {
            *result = Val::I32(answer);
        }
        Ok(())
    })?;
    Ok(())
}

/// Escapes control characters so a filter's message cannot forge log lines.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}
