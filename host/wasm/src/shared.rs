//! Shared data (with compare-and-swap) and shared queues: process-wide, keyed by VM id, as
//! cpp-host's `shared_data.cc` and `shared_queue.cc`.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex, PoisonError};

/// key → (value, cas) of one VM id.
type VmData = HashMap<Vec<u8>, (Vec<u8>, u32)>;

#[derive(Default)]
struct Data {
    /// vm id → key → (value, cas).
    maps: HashMap<String, VmData>,
    next_cas: u32,
}

static DATA: LazyLock<Mutex<Data>> = LazyLock::new(Mutex::default);

/// The outcome of a shared-data write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SetResult {
    Ok,
    CasMismatch,
}

/// Reads a key: its value and CAS.
pub(crate) fn get(vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
    let data = DATA.lock().unwrap_or_else(PoisonError::into_inner);
    data.maps.get(vm_id)?.get(key).cloned()
}

/// Writes a key; a non-zero `cas` must match the current one (a missing key takes any CAS).
pub(crate) fn set(vm_id: &str, key: &[u8], value: Vec<u8>, cas: u32) -> SetResult {
    let mut data = DATA.lock().unwrap_or_else(PoisonError::into_inner);
    data.next_cas = data.next_cas.wrapping_add(1).max(1);
    let next = data.next_cas;
    let map = data.maps.entry(vm_id.to_owned()).or_default();
    match map.get_mut(key) {
        Some(entry) => {
            if cas != 0 && cas != entry.1 {
                return SetResult::CasMismatch;
            }
            *entry = (value, next);
        }
        None => {
            map.insert(key.to_vec(), (value, next));
        }
    }
    SetResult::Ok
}

struct Queue {
    items: VecDeque<Vec<u8>>,
    /// The `on_queue_ready` calls owed to the owner: one per enqueue, as Envoy posts one per
    /// enqueue (cpp-host `src/shared_queue.cc` `enqueue`).
    ready: u32,
    /// The instance that registered the queue last (cpp-host `registerQueue` overwrites the
    /// context and thread that get the notifications).
    owner: u64,
}

#[derive(Default)]
struct Queues {
    by_name: HashMap<(String, Vec<u8>), u32>,
    queues: HashMap<u32, Queue>,
    next_id: u32,
}

static QUEUES: LazyLock<Mutex<Queues>> = LazyLock::new(Mutex::default);

fn queues() -> std::sync::MutexGuard<'static, Queues> {
    QUEUES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers (or finds) the queue `name` of `vm_id`; `owner` (an instance) gets its
/// notifications from now on.
pub(crate) fn register_queue(vm_id: &str, name: &[u8], owner: u64) -> u32 {
    let mut queues = queues();
    if let Some(&id) = queues.by_name.get(&(vm_id.to_owned(), name.to_vec())) {
        if let Some(queue) = queues.queues.get_mut(&id) {
            queue.owner = owner;
        }
        return id;
    }
    queues.next_id += 1;
    let id = queues.next_id;
    queues.by_name.insert((vm_id.to_owned(), name.to_vec()), id);
    queues.queues.insert(
        id,
        Queue {
            items: VecDeque::new(),
            ready: 0,
            owner,
        },
    );
    id
}

/// Finds the queue `name` of `vm_id`.
pub(crate) fn resolve_queue(vm_id: &str, name: &[u8]) -> Option<u32> {
    queues()
        .by_name
        .get(&(vm_id.to_owned(), name.to_vec()))
        .copied()
}

/// Appends to a queue; false when there is no such queue.
pub(crate) fn enqueue(id: u32, value: Vec<u8>) -> bool {
    let mut queues = queues();
    let Some(queue) = queues.queues.get_mut(&id) else {
        return false;
    };
    queue.items.push_back(value);
    queue.ready = queue.ready.saturating_add(1);
    true
}

/// Takes the oldest item: `Err(())` when there is no such queue, `Ok(None)` when it is empty.
pub(crate) fn dequeue(id: u32) -> Result<Option<Vec<u8>>, ()> {
    let mut queues = queues();
    let queue = queues.queues.get_mut(&id).ok_or(())?;
    Ok(queue.items.pop_front())
}

/// The notifications owed to `owner` for the queue since the last call (taken).
pub(crate) fn take_ready(id: u32, owner: u64) -> u32 {
    let mut queues = queues();
    match queues.queues.get_mut(&id) {
        Some(queue) if queue.owner == owner => std::mem::take(&mut queue.ready),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_guards_writes() {
        assert_eq!(set("vm-cas-test", b"k", b"1".to_vec(), 77), SetResult::Ok);
        let (value, cas) = get("vm-cas-test", b"k").unwrap();
        assert_eq!(value, b"1");
        assert_eq!(
            set("vm-cas-test", b"k", b"2".to_vec(), cas.wrapping_add(1)),
            SetResult::CasMismatch
        );
        assert_eq!(set("vm-cas-test", b"k", b"2".to_vec(), cas), SetResult::Ok);
        assert_eq!(
            set("vm-cas-test", b"k", b"3".to_vec(), cas),
            SetResult::CasMismatch
        );
        assert_eq!(set("vm-cas-test", b"k", b"3".to_vec(), 0), SetResult::Ok);
        assert!(get("other-vm", b"k").is_none());
    }

    #[test]
    fn queues_are_fifo_per_vm() {
        let id = register_queue("vm-q-test", b"q", 1);
        assert_eq!(register_queue("vm-q-test", b"q", 2), id);
        assert_eq!(resolve_queue("vm-q-test", b"q"), Some(id));
        assert_eq!(resolve_queue("vm-q-other", b"q"), None);
        assert!(enqueue(id, b"a".to_vec()));
        assert!(enqueue(id, b"b".to_vec()));
        // One notification per enqueue, to the last registrant (cpp-host
        // `src/shared_queue.cc` `enqueue` and `registerQueue`).
        assert_eq!(take_ready(id, 1), 0);
        assert_eq!(take_ready(id, 2), 2);
        assert_eq!(take_ready(id, 2), 0);
        assert_eq!(dequeue(id), Ok(Some(b"a".to_vec())));
        assert_eq!(dequeue(id), Ok(Some(b"b".to_vec())));
        assert_eq!(dequeue(id), Ok(None));
        assert_eq!(dequeue(999_999), Err(()));
        assert!(!enqueue(999_999, Vec::new()));
    }
}
