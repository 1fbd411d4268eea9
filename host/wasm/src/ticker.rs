//! The chain's background thread: `on_tick` for instances that set a tick period,
//! `on_queue_ready` for queues that got items, and callouts started from root contexts (in
//! `on_configure` or `on_tick`), whose responses it delivers to the root context.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::chain::ChainInner;
use crate::state::{Call, NewCallout};

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
                let me = instance.store.data().instance_id;
                'queues: for queue in queues {
                    // One call per enqueue (cpp-host `src/shared_queue.cc`), not one per pass.
                    for _ in 0..crate::shared::take_ready(queue, me) {
                        result = instance.on_queue_ready(queue);
                        if result.is_err() {
                            break 'queues;
                        }
                    }
                }
            }
            if let Err(failure) = result {
                filter.fail(&mut slot, &failure);
                continue;
            }
            let resumed = !instance.store.data().remote.is_empty();
            let callouts = instance.take_callouts();
            if resumed {
                slot.wake.notify_waiters();
            }
            drop(slot);
            for callout in callouts {
                let token = callout.token;
                deliver_to_root(
                    weak.clone(),
                    Target {
                        index,
                        worker,
                        generation,
                    },
                    token,
                    send(callout),
                );
            }
        }
    }
}

/// What a callout comes to.
pub(crate) enum CalloutResult {
    /// An http callout: its response, or `None` (reset once connected).
    Http(Option<http::Response<bytes::Bytes>>),
    /// A unary gRPC callout: its message, or its status.
    Grpc(crate::grpc::GrpcOutcome),
}

impl NewCallout {
    /// What the filter gets for a callout that never ran (no runtime, or its task was lost):
    /// a reset.
    pub(crate) fn lost(&self) -> CalloutResult {
        match self.call {
            Call::Http(_) => CalloutResult::Http(None),
            Call::Grpc(_) => CalloutResult::Grpc(crate::grpc::GrpcOutcome::Closed(
                crate::grpc::code::INTERNAL,
                "the callout was lost".into(),
            )),
        }
    }
}

/// Starts a callout's request under its timeout. As Envoy's async client, which goes through
/// the router (`source/common/http/async_client_impl.cc`), a timeout is a 504 and an upstream
/// that cannot be reached a 503, each with the router's text; only a reset after the connection
/// was up is a failure (`onFailure`: a response with no headers). A gRPC call's end is reduced
/// to its message or status (`crate::grpc::outcome`).
pub(crate) async fn send(callout: NewCallout) -> CalloutResult {
    use crate::error::CalloutError;
    let future = match callout.call {
        Call::Grpc(future) => {
            let result = tokio::time::timeout(callout.timeout, future)
                .await
                .unwrap_or(Err(CalloutError::Timeout));
            return CalloutResult::Grpc(crate::grpc::outcome(result));
        }
        Call::Http(future) => future,
    };
    CalloutResult::Http(match tokio::time::timeout(callout.timeout, future).await {
        Ok(Ok(response)) => Some(response),
        Err(_) | Ok(Err(CalloutError::Timeout)) => {
            Some(router_reply(504, "upstream request timeout"))
        }
        Ok(Err(CalloutError::Connect(_))) => Some(router_reply(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        )),
        Ok(Err(CalloutError::Failed(_) | CalloutError::UnknownUpstream(_))) => None,
    })
}

/// A reply as Envoy's router makes it for a callout (`text/plain`, with its length).
fn router_reply(status: u16, text: &'static str) -> http::Response<bytes::Bytes> {
    let mut response = http::Response::new(bytes::Bytes::from_static(text.as_bytes()));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(text.len()),
    );
    response
}

/// The instance a callout belongs to: filter `index` of the chain, on `worker`, while the slot
/// still holds the instance of `generation`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub index: usize,
    pub worker: usize,
    pub generation: u64,
}

/// Waits for `result` on the current tokio runtime and delivers it to the root context of the
/// target's instance, whether or not the stream that started the callout still exists: in Envoy
/// a callout belongs to the root context (cpp-host `src/exports.cc` `http_call`:
/// `contextOrEffectiveContext()->root_context()`) and is cancelled only when that context goes
/// (Envoy `context.cc` `Context::~Context`). Without a runtime the request still runs, unanswered.
pub(crate) fn deliver_to_root(
    weak: Weak<ChainInner>,
    target: Target,
    token: u32,
    result: impl Future<Output = CalloutResult> + Send + 'static,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let response = result.await;
        let Some(chain) = weak.upgrade() else {
            return;
        };
        let filter = &chain.filters[target.index];
        let mut slot = filter.lock(target.worker);
        if slot.generation != target.generation {
            return;
        }
        if let Some(instance) = slot.instance.as_mut() {
            match instance.on_callout(token, response) {
                Err(failure) => filter.fail(&mut slot, &failure),
                Ok(()) if !instance.store.data().remote.is_empty() => {
                    slot.wake.notify_waiters();
                }
                Ok(()) => {}
            }
        }
    });
}
