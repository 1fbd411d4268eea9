//! The chain's background thread: `on_tick` for instances that set a tick period,
//! `on_queue_ready` for queues that got items, and callouts started from root contexts (in
//! `on_configure` or `on_tick`), whose responses it delivers to the root context.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::chain::ChainInner;

/// How often the thread looks for due ticks and ready queues.
const RESOLUTION: Duration = Duration::from_millis(10);

/// The running ticker; the thread ends when the chain is dropped.
#[derive(Debug)]
pub(crate) struct Ticker {
    _thread: std::thread::JoinHandle<()>,
}

impl Ticker {
    pub fn start(chain: Weak<ChainInner>) -> Option<Ticker> {
        let thread = std::thread::Builder::new()
            .name("keel-wasm-ticker".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    log::error!(target: "keel_wasm", "the ticker runtime did not start: no on_tick, no root callouts");
                    return;
                };
                runtime.block_on(run(chain));
            });
        match thread {
            Ok(thread) => Some(Ticker { _thread: thread }),
            Err(error) => {
                log::error!(target: "keel_wasm", "the ticker thread did not start: {error}");
                None
            }
        }
    }
}

async fn run(weak: Weak<ChainInner>) {
    let mut due: HashMap<(usize, usize), Instant> = HashMap::new();
    loop {
        tokio::time::sleep(RESOLUTION).await;
        let Some(chain) = weak.upgrade() else {
            return;
        };
        pass(&chain, &weak, &mut due);
    }
}

fn pass(
    chain: &Arc<ChainInner>,
    weak: &Weak<ChainInner>,
    due: &mut HashMap<(usize, usize), Instant>,
) {
    let now = Instant::now();
    for (index, filter) in chain.filters.iter().enumerate() {
        for worker in 0..filter.slots.len() {
            let mut slot = filter.lock(worker);
            let generation = slot.generation;
            let Some(instance) = slot.instance.as_mut() else {
                continue;
            };
            let mut result = Ok(());
            if let Some(period) = instance.store.data().tick_period {
                let next = due.entry((index, worker)).or_insert(now + period);
                if now >= *next {
                    *next = now + period;
                    result = instance.on_tick();
                }
            }
            if result.is_ok() {
                let queues = instance.store.data().queues.clone();
                for queue in queues {
                    if crate::shared::take_ready(queue) {
                        result = instance.on_queue_ready(queue);
                        if result.is_err() {
                            break;
                        }
                    }
                }
            }
            if let Err(failure) = result {
                filter.fail(&mut slot, &failure);
                continue;
            }
            let resumed = !instance.store.data().resumed.is_empty();
            let callouts = std::mem::take(&mut instance.store.data_mut().callouts);
            if resumed {
                slot.wake.notify_waiters();
            }
            drop(slot);
            for callout in callouts {
                let weak = weak.clone();
                tokio::spawn(async move {
                    let response = match tokio::time::timeout(callout.timeout, callout.future).await
                    {
                        Ok(Ok(response)) => Some(response),
                        _ => None,
                    };
                    let Some(chain) = weak.upgrade() else {
                        return;
                    };
                    let filter = &chain.filters[index];
                    let mut slot = filter.lock(worker);
                    if slot.generation != generation {
                        return;
                    }
                    if let Some(instance) = slot.instance.as_mut() {
                        match instance.on_http_call_response(callout.token, response) {
                            Err(failure) => filter.fail(&mut slot, &failure),
                            Ok(()) if !instance.store.data().resumed.is_empty() => {
                                slot.wake.notify_waiters();
                            }
                            Ok(()) => {}
                        }
                    }
                });
            }
        }
    }
}
