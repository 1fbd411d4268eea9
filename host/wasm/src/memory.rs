//! Checked access to guest memory: every pointer and length the guest passes goes through here,
//! so a bad one becomes `InvalidMemoryAccess` (or a trap), never a host panic.

use wasmtime::Caller;

use crate::state::HostState;

/// A guest address range that does not lie inside the guest's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BadPointer;

/// The guest's exported memory, or `BadPointer` when it has none.
fn data<'a>(caller: &'a Caller<'_, HostState>) -> Result<&'a [u8], BadPointer> {
    let memory = caller.data().memory.ok_or(BadPointer)?;
    Ok(memory.data(caller))
}

fn range(ptr: i32, len: i32) -> Result<std::ops::Range<usize>, BadPointer> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let end = start.checked_add(len).ok_or(BadPointer)?;
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of the guest.
pub(crate) fn read(
    caller: &Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, BadPointer> {
    let memory = data(caller)?;
    memory
        .get(range(ptr, len)?)
        .map(<[u8]>::to_vec)
        .ok_or(BadPointer)
}

/// Writes `bytes` at `ptr`.
pub(crate) fn write(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    bytes: &[u8],
) -> Result<(), BadPointer> {
    let memory = caller.data().memory.ok_or(BadPointer)?;
    let len = i32::try_from(bytes.len()).map_err(|_| BadPointer)?;
    let target = memory
        .data_mut(caller)
        .get_mut(range(ptr, len)?)
        .ok_or(BadPointer)?;
    target.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 at `ptr`.
pub(crate) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u32,
) -> Result<(), BadPointer> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64 at `ptr`.
pub(crate) fn write_u64(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u64,
) -> Result<(), BadPointer> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Reads a little-endian u32 at `ptr`.
pub(crate) fn read_u32(caller: &Caller<'_, HostState>, ptr: i32) -> Result<u32, BadPointer> {
    let memory = data(caller)?;
    let bytes = memory.get(range(ptr, 4)?).ok_or(BadPointer)?;
    let raw: [u8; 4] = bytes.try_into().map_err(|_| BadPointer)?;
    Ok(u32::from_le_bytes(raw))
}

/// Lends the `len` bytes at `ptr` to `f`, together with the store's data (no copy).
pub(crate) fn with_guest<T>(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    f: impl FnOnce(&[u8], &mut HostState) -> T,
) -> Result<T, BadPointer> {
    let memory = caller.data().memory.ok_or(BadPointer)?;
    let (bytes, state) = memory.data_and_store_mut(caller);
    let slice = bytes.get(range(ptr, len)?).ok_or(BadPointer)?;
    Ok(f(slice, state))
}

/// Lends two guest ranges to `f` at once, together with the store's data (no copy).
pub(crate) fn with_guest2<T>(
    caller: &mut Caller<'_, HostState>,
    (ptr1, len1): (i32, i32),
    (ptr2, len2): (i32, i32),
    f: impl FnOnce(&[u8], &[u8], &mut HostState) -> T,
) -> Result<T, BadPointer> {
    let memory = caller.data().memory.ok_or(BadPointer)?;
    let (bytes, state) = memory.data_and_store_mut(caller);
    let bytes: &[u8] = bytes;
    let first = bytes.get(range(ptr1, len1)?).ok_or(BadPointer)?;
    let second = bytes.get(range(ptr2, len2)?).ok_or(BadPointer)?;
    Ok(f(first, second, state))
}

/// Hands `bytes` to the guest as cpp-host's `copyToPointerSize` does: allocates with the guest's
/// allocator (nothing for an empty value, pointer 0), copies, writes pointer and length to the
/// out-parameters. A trap in the allocator propagates (the callback fails).
pub(crate) fn copy_out(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> wasmtime::Result<Result<(), BadPointer>> {
    copy_out_with(caller, bytes.len(), ret_ptr, ret_len, |target, _| {
        target.copy_from_slice(bytes);
        true
    })
}

/// [`copy_out`] of `len` bytes that `fill` writes straight into the guest's allocation (it is
/// given the store's data too, so nothing is copied twice). When `fill` answers false (it could
/// not fill exactly `len` bytes) the out-parameters are left alone and the result is
/// `BadPointer`.
pub(crate) fn copy_out_with(
    caller: &mut Caller<'_, HostState>,
    len: usize,
    ret_ptr: i32,
    ret_len: i32,
    fill: impl FnOnce(&mut [u8], &mut HostState) -> bool,
) -> wasmtime::Result<Result<(), BadPointer>> {
    let len = match u32::try_from(len) {
        Ok(len) if len <= i32::MAX as u32 => len,
        _ => return Ok(Err(BadPointer)),
    };
    let mut pointer = 0u32;
    if len > 0 {
        // Taken out for the call (a TypedFunc clone costs an atomic increment), put back after.
        let Some(alloc) = caller.data_mut().alloc.take() else {
            return Ok(Err(BadPointer));
        };
        let called = alloc.call(&mut *caller, len as i32);
        caller.data_mut().alloc = Some(alloc);
        let ptr = called?;
        if ptr == 0 {
            return Ok(Err(BadPointer));
        }
        let Some(memory) = caller.data().memory else {
            return Ok(Err(BadPointer));
        };
        let (bytes, state) = memory.data_and_store_mut(&mut *caller);
        let Ok(at) = range(ptr, len as i32) else {
            return Ok(Err(BadPointer));
        };
        let Some(target) = bytes.get_mut(at) else {
            return Ok(Err(BadPointer));
        };
        if !fill(target, state) {
            return Ok(Err(BadPointer));
        }
        pointer = ptr as u32;
    }
    if write_u32(caller, ret_ptr, pointer).is_err() || write_u32(caller, ret_len, len).is_err() {
        return Ok(Err(BadPointer));
    }
    Ok(Ok(()))
}
