//! WASI preview1 as Envoy gives it (cpp-host `exports.cc`): `fd_write` to keel's log (stdout at
//! info, stderr at error), `environ_*` from the filter's configuration, no arguments, the
//! realtime and monotonic clocks, `random_get` (at most 64 KiB), `proc_exit` (the instance is
//! marked failed), `fd_fdstat_get` for stdout and stderr, and cpp-host's stubs (`path_open` →
//! NOENT, `fd_prestat_get` → BADF, `fd_read`, `fd_seek`, `fd_close`, `fd_prestat_dir_name` →
//! NOSYS). These 15 are all the preview1 functions cpp-host registers (`exports.h`,
//! `FOR_ALL_WASI_FUNCTIONS`), so a module that imports another fails to load, as in Envoy.

use std::io::Read;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::abi::{MAX_RANDOM_BYTES, errno};
use crate::memory;
use crate::state::HostState;

const WASI: &str = "wasi_snapshot_preview1";

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// Maps a bad guest pointer to `EFAULT`.
macro_rules! wasi_guest {
    ($expr:expr) => {
        match $expr {
            Ok(value) => value,
            Err(crate::memory::BadPointer) => return Ok(errno::FAULT),
        }
    };
}

/// The trap `proc_exit` raises after marking the instance.
#[derive(Debug, thiserror::Error)]
#[error("the filter called proc_exit({0})")]
pub(crate) struct ProcExit(pub i32);

static MONOTONIC_BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
static URANDOM: LazyLock<Mutex<Option<std::fs::File>>> =
    LazyLock::new(|| Mutex::new(std::fs::File::open("/dev/urandom").ok()));

fn fill_random(buf: &mut [u8]) -> bool {
    let mut file = URANDOM.lock().unwrap_or_else(PoisonError::into_inner);
    match file.as_mut() {
        Some(file) => file.read_exact(buf).is_ok(),
        None => false,
    }
}

/// The stubs of cpp-host (name, parameter types as `i`/`I` for i32/i64, errno). Envoy registers
/// no other preview1 function: a module importing one does not load, in Envoy or in keel.
const STUBS: &[(&str, &str, i32)] = &[
    ("fd_read", "iiii", errno::NOSYS),
    ("fd_seek", "iIii", errno::NOSYS),
    ("fd_close", "i", errno::NOSYS),
    ("path_open", "iiiiiIIii", errno::NOENT),
    ("fd_prestat_get", "ii", errno::BADF),
    ("fd_prestat_dir_name", "iii", errno::NOSYS),
];

fn environ(state: &HostState) -> Vec<Vec<u8>> {
    state
        .plugin
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}\0").into_bytes())
        .collect()
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, ret_written: i32| -> R {
            let mut text = Vec::new();
            for index in 0..iovs_len.max(0) {
                let at = iovs.wrapping_add(index.wrapping_mul(8));
                let ptr = wasi_guest!(memory::read_u32(&caller, at));
                let len = wasi_guest!(memory::read_u32(&caller, at.wrapping_add(4)));
                let chunk = wasi_guest!(memory::read(&caller, ptr as i32, len as i32));
                text.extend_from_slice(&chunk);
            }
            let level = match fd {
                1 => log::Level::Info,
                2 => log::Level::Error,
                _ => return Ok(errno::BADF),
            };
            let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
            let trimmed = text.strip_suffix(b"\n").unwrap_or(&text);
            super::control::log_message(caller.data_mut(), level, trimmed);
            wasi_guest!(memory::write_u32(&mut caller, ret_written, written));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut caller: Ctx<'_>, ret_count: i32, ret_size: i32| -> R {
            let env = environ(caller.data());
            let size: usize = env.iter().map(Vec::len).sum();
            wasi_guest!(memory::write_u32(&mut caller, ret_count, env.len() as u32));
            wasi_guest!(memory::write_u32(&mut caller, ret_size, size as u32));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut caller: Ctx<'_>, ptrs: i32, buf: i32| -> R {
            let env = environ(caller.data());
            let mut offset = buf;
            for (index, entry) in env.iter().enumerate() {
                let slot = ptrs.wrapping_add((index as i32).wrapping_mul(4));
                wasi_guest!(memory::write_u32(&mut caller, slot, offset as u32));
                wasi_guest!(memory::write(&mut caller, offset, entry));
                offset = offset.wrapping_add(entry.len() as i32);
            }
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "args_sizes_get",
        |mut caller: Ctx<'_>, ret_count: i32, ret_size: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret_count, 0));
            wasi_guest!(memory::write_u32(&mut caller, ret_size, 0));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "args_get",
        |_caller: Ctx<'_>, _argv: i32, _buf: i32| -> R { Ok(errno::SUCCESS) },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Ctx<'_>, clock: i32, _precision: i64, ret: i32| -> R {
            let nanos = match clock {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
                1 => MONOTONIC_BASE.elapsed().as_nanos(),
                _ => return Ok(errno::INVAL),
            };
            wasi_guest!(memory::write_u64(
                &mut caller,
                ret,
                u64::try_from(nanos).unwrap_or(u64::MAX)
            ));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Ctx<'_>, buf: i32, len: i32| -> R {
            let len = len as u32 as usize;
            if len > MAX_RANDOM_BYTES {
                return Ok(errno::INVAL);
            }
            let mut bytes = vec![0u8; len];
            if !fill_random(&mut bytes) {
                return Ok(errno::NOSYS);
            }
            wasi_guest!(memory::write(&mut caller, buf, &bytes));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_get",
        |mut caller: Ctx<'_>, fd: i32, ret: i32| -> R {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            // filetype 0, flags 0, rights_base FD_WRITE (64), rights_inheriting 0 — as cpp-host.
            let mut stat = [0u8; 24];
            stat[8] = 64;
            wasi_guest!(memory::write(&mut caller, ret, &stat));
            Ok(errno::SUCCESS)
        },
    )?;
    // Registered by cpp-host for Emscripten-built modules.
    linker.func_wrap(
        "env",
        "pthread_equal",
        |_caller: Ctx<'_>, left: i32, right: i32| -> R { Ok(i32::from(left == right)) },
    )?;
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_caller: Ctx<'_>, _index: i32| {},
    )?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |mut caller: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            caller.data_mut().exit_code = Some(code);
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    for (name, params, answer) in STUBS {
        super::stub(linker, WASI, name, params, *answer)?;
    }
    Ok(())
}
