//! Workers: keel serves on one single-threaded tokio runtime per worker (by default one per
//! core). Each worker owns its listening sockets (`SO_REUSEPORT`: the kernel spreads the
//! connections), its filter instances and its upstream connections, so that a request is
//! accepted, filtered, forwarded and answered on one thread — no work stealing, no wake-up of
//! another thread, no contended lock on the request path. The control thread (signals, the
//! admin listener, health checks, reloads) runs a runtime of its own.
//!
//! [`PerWorker`] holds one value per worker, plus one for every other thread (the control
//! thread, and the runtimes of tests that run the proxy in process).

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the current thread as worker `index` (its filter instances and connection pools).
pub fn enter(index: usize) {
    INDEX.with(|i| i.set(Some(index)));
    keel_wasm::set_worker_index(index);
}

/// The current thread's worker index, if it is a worker.
fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// The number of workers for the `workers` setting: as configured, or (0) one per core.
pub fn count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// One `T` per worker and one shared by every other thread. A tokio socket belongs to the
/// runtime that registered it: a pool per worker keeps each connection on its thread.
pub struct PerWorker<T> {
    slots: Box<[T]>,
}

impl<T> PerWorker<T> {
    /// `workers` values and the one for other threads, each made by `make`.
    pub fn new(workers: usize, mut make: impl FnMut() -> T) -> Self {
        let made = Self::try_new(workers, || Ok::<T, std::convert::Infallible>(make()));
        match made {
            Ok(values) => values,
            Err(never) => match never {},
        }
    }

    /// As [`new`](Self::new), with a `make` that can fail (the first error is returned).
    pub fn try_new<E>(workers: usize, make: impl FnMut() -> Result<T, E>) -> Result<Self, E> {
        Ok(Self {
            slots: std::iter::repeat_with(make)
                .take(workers + 1)
                .collect::<Result<_, E>>()?,
        })
    }

    /// The current thread's value.
    pub fn get(&self) -> &T {
        let others = self.slots.len() - 1;
        match current() {
            Some(i) if i < others => &self.slots[i],
            _ => &self.slots[others],
        }
    }

    /// Every value (for counters summed over the workers).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{PerWorker, enter};

    #[test]
    fn each_worker_has_its_own_value_and_other_threads_share_one() {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let values = PerWorker::new(2, || {
            next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        });
        assert_eq!(values.iter().count(), 3);
        std::thread::scope(|s| {
            let got: Vec<usize> = (0..2)
                .map(|w| {
                    let values = &values;
                    s.spawn(move || {
                        enter(w);
                        *values.get()
                    })
                })
                .map(|h| h.join().unwrap_or(usize::MAX))
                .collect();
            assert_eq!(got, vec![0, 1]);
            let other = s.spawn(|| *values.get()).join().unwrap_or(usize::MAX);
            assert_eq!(other, 2, "a thread that is no worker gets the shared value");
            let beyond = s
                .spawn(|| {
                    enter(7);
                    *values.get()
                })
                .join()
                .unwrap_or(usize::MAX);
            assert_eq!(
                beyond, 2,
                "a worker index beyond the count gets the shared value"
            );
        });
    }
}
