//! The hostcalls a module may not make while it starts (`_initialize`, then `main` or
//! `__main_void`, or `_start`). Envoy's V8 runtime traps them then (proxy-wasm-cpp-host
//! `src/wasm.cc` `WasmBase::startVm`: `setRestrictedCallback(true, {...})`; `src/v8/v8.cc`:
//! `isHostFunctionAllowed` fails, `trap("restricted_callback")`), so such a module does not
//! start; keel fails its start the same way, naming the hostcall.
//!
//! cpp-host's list of what is allowed: `env.proxy_log`, `env.emscripten_notify_memory_growth`,
//! and every WASI function but [`NOT_AT_START_WASI`] (output, arguments, environment, clocks,
//! randomness, what the Go runtime calls while it initialises, the file and socket stubs). So
//! every other `env` function checks [`check`] first, and so do those WASI ones.

use crate::state::HostState;

/// The WASI functions cpp-host's start list leaves out (under both module names).
pub(crate) const NOT_AT_START_WASI: [&str; 6] = [
    "fd_close",
    "fd_read",
    "fd_seek",
    "path_open",
    "proc_exit",
    "sched_yield",
];

/// The trap of a hostcall made while the module starts that cpp-host does not allow then.
#[derive(Debug, thiserror::Error)]
#[error(
    "hostcall {0} is not allowed while the module starts (_initialize, main, _start): \
     Envoy's V8 runtime traps it (proxy-wasm-cpp-host restricted_callback)"
)]
pub(crate) struct NotAllowedAtStart(pub &'static str);

/// `Err` (a trap naming hostcall `name`) while the module starts.
pub(crate) fn check(state: &HostState, name: &'static str) -> wasmtime::Result<()> {
    if state.starting {
        return Err(NotAllowedAtStart(name).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of the list is one of keel's WASI imports (a typo would restrict nothing).
    #[test]
    fn every_name_is_a_wasi_import_keel_provides() {
        let provided = crate::engine::provided_imports();
        for name in NOT_AT_START_WASI {
            for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
                assert!(
                    provided
                        .iter()
                        .any(|(m, import)| m == module && import == name),
                    "{module}.{name} is not one of keel's imports"
                );
            }
        }
    }
}
