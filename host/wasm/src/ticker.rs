//! The chain's background thread: `on_tick` for instances that set a tick period,
//! `on_queue_ready` for queues that got items, and callouts started from root contexts (in
//! `on_configure` or `on_tick`), whose responses it delivers to the root context. Also how any
//! callout starts ([`start`]) and how its answer, or each event of a gRPC stream, reaches the
//! root context of its instance under the instance's slot lock ([`launch`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::chain::ChainInner;
use crate::grpc_stream::{Reader, StreamEvent};
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
            let target = Target {
                index,
                worker,
                generation,
            };
            for callout in callouts {
                launch(weak.clone(), target, callout);
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
    /// One event of a gRPC stream (it has several).
    GrpcStream(StreamEvent),
}

/// A callout on its way: one answer to wait for (with what the filter gets if its task is
/// lost: a reset), or a gRPC stream whose events are read one by one.
pub(crate) enum Started {
    Once {
        answer: Pin<Box<dyn Future<Output = CalloutResult> + Send>>,
        lost: CalloutResult,
    },
    Stream(Reader),
}

/// Starts a callout's request. As Envoy's async client, which goes through the router
/// (`source/common/http/async_client_impl.cc`), an http callout's timeout is a 504 and an
/// upstream that cannot be reached a 503, each with the router's text; only a reset after the
/// connection was up is a failure (`onFailure`: a response with no headers). A gRPC call's end
/// is reduced to its message or status (`crate::grpc::outcome`); a stream has no timeout.
pub(crate) fn start(callout: NewCallout) -> Started {
    use crate::error::CalloutError;
    let timeout = callout.timeout;
    match callout.call {
        Call::GrpcStream(reader) => Started::Stream(reader),
        Call::Grpc(future) => Started::Once {
            answer: Box::pin(async move {
                let result = tokio::time::timeout(timeout, future)
                    .await
                    .unwrap_or(Err(CalloutError::Timeout));
                CalloutResult::Grpc(crate::grpc::outcome(result))
            }),
            lost: CalloutResult::Grpc(crate::grpc::GrpcOutcome::Closed(
                crate::grpc::code::INTERNAL,
                "the callout was lost".into(),
            )),
        },
        Call::Http(future) => Started::Once {
            answer: Box::pin(async move {
                CalloutResult::Http(match tokio::time::timeout(timeout, future).await {
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
            }),
            lost: CalloutResult::Http(None),
        },
    }
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

/// Starts a callout of the target's instance on the current tokio runtime and delivers what
/// it comes to to the root context, whether or not the stream that started it still exists: in
/// Envoy a callout or a gRPC stream belongs to the root context (cpp-host `src/exports.cc`
/// `http_call`, `grpc_stream`: `contextOrEffectiveContext()->root_context()`) and is cancelled
/// only when that context goes (Envoy `context.cc` `Context::~Context`). Without a runtime the
/// request still runs, unanswered.
pub(crate) fn launch(weak: Weak<ChainInner>, target: Target, callout: NewCallout) {
    let token = callout.token;
    match start(callout) {
        Started::Once { answer, .. } => deliver_to_root(weak, target, token, answer),
        Started::Stream(reader) => launch_stream(weak, target, token, reader),
    }
}

/// Waits for `result` on the current tokio runtime and delivers it to the root context of the
/// target's instance (see [`launch`]).
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
        deliver(&weak, target, token, response);
    });
}

/// Reads gRPC stream `token` on the current tokio runtime (a task, no thread) and delivers
/// each event to the root context of the target's instance as it comes, under the instance's
/// slot lock like any callout answer. It stops, and the stream is reset (its response dropped),
/// at the close, when the filter cancelled the stream, or when the instance is gone (Envoy
/// `Context::~Context`: `resetStream`).
pub(crate) fn launch_stream(
    weak: Weak<ChainInner>,
    target: Target,
    token: u32,
    mut reader: Reader,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        while let Some(event) = reader.next().await {
            let last = matches!(event, StreamEvent::Close(..));
            if !deliver(&weak, target, token, CalloutResult::GrpcStream(event)) || last {
                return;
            }
        }
    });
}

/// Delivers one answer to the root context of the target's instance; whether that instance is
/// still there with gRPC stream `token` open (for a stream's next event).
fn deliver(weak: &Weak<ChainInner>, target: Target, token: u32, result: CalloutResult) -> bool {
    let Some(chain) = weak.upgrade() else {
        return false;
    };
    let filter = &chain.filters[target.index];
    let mut slot = filter.lock(target.worker);
    if slot.generation != target.generation {
        return false;
    }
    let Some(instance) = slot.instance.as_mut() else {
        return false;
    };
    match instance.on_callout(token, result) {
        Err(failure) => {
            filter.fail(&mut slot, &failure);
            false
        }
        Ok(()) => {
            let open = instance.has_grpc_stream(token);
            if !instance.store.data().remote.is_empty() {
                slot.wake.notify_waiters();
            }
            open
        }
    }
}
