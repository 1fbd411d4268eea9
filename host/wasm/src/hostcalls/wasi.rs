//! WASI preview1 as current Envoy gives it (proxy-wasm-cpp-host `f2db56a`, the commit Envoy
//! 1.37–1.40 pins; `include/proxy-wasm/exports.h` `FOR_ALL_WASI_FUNCTIONS`, 45 functions, and
//! `src/exports.cc`): every function under both `wasi_snapshot_preview1` and `wasi_unstable`
//! (`src/wasm.cc`, `_REGISTER_WASI_UNSTABLE` / `_REGISTER_WASI_SNAPSHOT`). `fd_write` and
//! `fd_pwrite` go to keel's log (stdout at info, stderr at error), `environ_*` from the filter's
//! configuration, no arguments, the realtime and monotonic clocks, `random_get` (at most 64 KiB),
//! `proc_exit` (the instance is marked failed), `fd_fdstat_get` for stdout and stderr,
//! `poll_oneoff` (no events, success: the Go runtime needs it) and `sched_yield`; the rest are
//! cpp-host's stubs, with its answers (`fd_seek`/`fd_close` succeed, files and sockets are
//! `NOTSUP`, `NOENT`, `BADF` or `NOSYS` as there). A module importing any other preview1
//! function fails to load, as in Envoy.

use std::io::Read;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::abi::{MAX_RANDOM_BYTES, errno};
use crate::memory;
use crate::state::HostState;

/// The module names cpp-host registers every WASI function under.
const MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

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

/// The stubs of cpp-host that answer without touching memory (name, parameter types as `i`/`I`
/// for i32/i64, errno), each as `src/exports.cc` at `f2db56a` answers.
const STUBS: &[(&str, &str, i32)] = &[
    ("fd_read", "iiii", errno::NOSYS),
    ("fd_seek", "iIii", errno::SUCCESS),
    ("fd_close", "i", errno::SUCCESS),
    ("path_open", "iiiiiIIii", errno::NOENT),
    ("fd_prestat_get", "ii", errno::BADF),
    ("fd_prestat_dir_name", "iii", errno::NOSYS),
    ("fd_filestat_get", "ii", errno::BADF),
    ("path_filestat_get", "iiiii", errno::NOTSUP),
    ("fd_fdstat_set_flags", "ii", errno::NOSYS),
    ("fd_advise", "iIIi", errno::SUCCESS),
    ("fd_pread", "iiiIi", errno::NOSYS),
    ("path_create_directory", "iii", errno::NOTSUP),
    ("path_filestat_set_times", "iiiiIIi", errno::NOTSUP),
    ("path_link", "iiiiiii", errno::NOTSUP),
    ("path_remove_directory", "iii", errno::NOTSUP),
    ("path_rename", "iiiiii", errno::NOTSUP),
    ("path_symlink", "iiiii", errno::NOTSUP),
    ("path_unlink_file", "iii", errno::NOTSUP),
    ("sock_shutdown", "ii", errno::NOTSUP),
];

/// cpp-host's stubs that answer `SUCCESS` for stdout and stderr and `BADF` for any other fd
/// (name, parameter types after the fd).
const STDIO_ONLY: &[(&str, &str)] = &[
    ("fd_allocate", "II"),
    ("fd_datasync", ""),
    ("fd_fdstat_set_rights", "II"),
    ("fd_filestat_set_size", "I"),
    ("fd_filestat_set_times", "IIi"),
    ("fd_sync", ""),
];

fn environ(state: &HostState) -> Vec<Vec<u8>> {
    state
        .plugin
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}\0").into_bytes())
        .collect()
}

/// cpp-host `writevImpl`: stdout and stderr go to the log; any other fd is `BADF` before an
/// iovec is read.
fn write_out(caller: &mut Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, ret_written: i32) -> R {
    let level = match fd {
        1 => log::Level::Info,
        2 => log::Level::Error,
        _ => return Ok(errno::BADF),
    };
    let mut text = Vec::new();
    for index in 0..iovs_len.max(0) {
        let at = iovs.wrapping_add(index.wrapping_mul(8));
        let ptr = wasi_guest!(memory::read_u32(caller, at));
        let len = wasi_guest!(memory::read_u32(caller, at.wrapping_add(4)));
        let chunk = wasi_guest!(memory::read(caller, ptr as i32, len as i32));
        text.extend_from_slice(&chunk);
    }
    let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let trimmed = text.strip_suffix(b"\n").unwrap_or(&text);
    if !text.is_empty() {
        super::control::log_message(caller.data_mut(), level, trimmed);
    }
    wasi_guest!(memory::write_u32(caller, ret_written, written));
    Ok(errno::SUCCESS)
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // Registered by cpp-host for Emscripten-built modules.
    linker.func_wrap(
        "env",
        "pthread_equal",
        |caller: Ctx<'_>, left: i32, right: i32| -> R {
            super::start_phase::check(caller.data(), "pthread_equal")?;
            Ok(i32::from(left == right))
        },
    )?;
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_caller: Ctx<'_>, _index: i32| {},
    )?;
    for module in MODULES {
        add_module(linker, module)?;
    }
    Ok(())
}

fn add_module(linker: &mut Linker<HostState>, wasi: &str) -> wasmtime::Result<()> {
    linker.func_wrap(
        wasi,
        "fd_write",
        |mut caller: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, ret_written: i32| -> R {
            write_out(&mut caller, fd, iovs, iovs_len, ret_written)
        },
    )?;
    linker.func_wrap(
        wasi,
        "fd_pwrite",
        |mut caller: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, _offset: i64, ret: i32| -> R {
            write_out(&mut caller, fd, iovs, iovs_len, ret)
        },
    )?;
    linker.func_wrap(
        wasi,
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
        wasi,
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
        wasi,
        "args_sizes_get",
        |mut caller: Ctx<'_>, ret_count: i32, ret_size: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret_count, 0));
            wasi_guest!(memory::write_u32(&mut caller, ret_size, 0));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        wasi,
        "args_get",
        |_caller: Ctx<'_>, _argv: i32, _buf: i32| -> R { Ok(errno::SUCCESS) },
    )?;
    linker.func_wrap(
        wasi,
        "clock_time_get",
        |mut caller: Ctx<'_>, clock: i32, _precision: i64, ret: i32| -> R {
            let nanos = match clock {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
                1 => MONOTONIC_BASE.elapsed().as_nanos(),
                _ => return Ok(errno::NOTSUP),
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
        wasi,
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
        wasi,
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
    linker.func_wrap(
        wasi,
        "proc_exit",
        |mut caller: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            super::start_phase::check(caller.data(), "proc_exit")?;
            caller.data_mut().exit_code = Some(code);
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(
        wasi,
        "clock_res_get",
        |mut caller: Ctx<'_>, clock: i32, ret: i32| -> R {
            if clock != 0 && clock != 1 {
                return Ok(errno::NOTSUP);
            }
            wasi_guest!(memory::write_u64(&mut caller, ret, 1));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(wasi, "sched_yield", |caller: Ctx<'_>| -> R {
        super::start_phase::check(caller.data(), "sched_yield")?;
        Ok(errno::SUCCESS)
    })?;
    linker.func_wrap(
        wasi,
        "poll_oneoff",
        |mut caller: Ctx<'_>, _in: i32, _out: i32, _count: i32, ret_events: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret_events, 0));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        wasi,
        "fd_readdir",
        |mut caller: Ctx<'_>, _fd: i32, _buf: i32, _len: i32, _cookie: i64, ret: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret, 0));
            Ok(errno::NOTDIR)
        },
    )?;
    linker.func_wrap(
        wasi,
        "fd_renumber",
        |_caller: Ctx<'_>, fd: i32, to: i32| -> R {
            let stdio = |fd: i32| fd == 1 || fd == 2;
            Ok(if stdio(fd) && stdio(to) {
                errno::NOTSUP
            } else {
                errno::BADF
            })
        },
    )?;
    linker.func_wrap(
        wasi,
        "fd_tell",
        |mut caller: Ctx<'_>, fd: i32, ret: i32| -> R {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            wasi_guest!(memory::write_u64(&mut caller, ret, 0));
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        wasi,
        "path_readlink",
        |mut caller: Ctx<'_>, _fd: i32, _p: i32, _pl: i32, _b: i32, _bl: i32, ret: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret, 0));
            Ok(errno::NOTSUP)
        },
    )?;
    // cpp-host writes the 8 bytes of an `unsigned long` zero there; keel writes the 4 of the fd.
    linker.func_wrap(
        wasi,
        "sock_accept",
        |mut caller: Ctx<'_>, _fd: i32, _flags: i32, ret: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret, 0));
            Ok(errno::NOTSUP)
        },
    )?;
    linker.func_wrap(
        wasi,
        "sock_recv",
        |mut caller: Ctx<'_>,
         _fd: i32,
         _d: i32,
         _dl: i32,
         _f: i32,
         ret: i32,
         ret_flags: i32|
         -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret, 0));
            wasi_guest!(memory::write(&mut caller, ret_flags, &[0, 0]));
            Ok(errno::NOTSUP)
        },
    )?;
    linker.func_wrap(
        wasi,
        "sock_send",
        |mut caller: Ctx<'_>, _fd: i32, _d: i32, _dl: i32, _f: i32, ret: i32| -> R {
            wasi_guest!(memory::write_u32(&mut caller, ret, 0));
            Ok(errno::NOTSUP)
        },
    )?;
    for (name, params, answer) in STUBS {
        let at_start = !super::start_phase::NOT_AT_START_WASI.contains(name);
        super::stub(linker, wasi, name, params, *answer, at_start)?;
    }
    for (name, rest) in STDIO_ONLY {
        let params = wasmtime::ValType::I32;
        let rest = rest.chars().map(|c| {
            if c == 'I' {
                wasmtime::ValType::I64
            } else {
                wasmtime::ValType::I32
            }
        });
        let ty = wasmtime::FuncType::new(
            linker.engine(),
            std::iter::once(params).chain(rest),
            [wasmtime::ValType::I32],
        );
        linker.func_new(wasi, name, ty, |_caller, args, results| {
            let fd = args.first().and_then(wasmtime::Val::i32).unwrap_or(0);
            if let Some(result) = results.first_mut() {
                *result = wasmtime::Val::I32(if fd == 1 || fd == 2 {
                    errno::SUCCESS
                } else {
                    errno::BADF
                });
            }
            Ok(())
        })?;
    }
    Ok(())
}
