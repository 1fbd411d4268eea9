//! The paused side of a stream: callouts started by its filters (spawned on the current tokio
//! runtime, bounded by their timeout), their delivery to the root context of the filter that
//! started them, and the wait of a paused filter until it continues (from a callout response
//! or a root-context callback such as `on_tick`), answers or times out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::{Dir, Ran, Stream};
use crate::state::{NewCallout, RemoteAction};
use crate::ticker::CalloutResult;
use crate::ticker::{Started, Target, deliver_to_root};
use crate::types::LocalResponse;

/// A callout in flight.
pub(super) struct Pending {
    pub(super) filter: usize,
    pub(super) token: u32,
    pub(super) result: Pin<Box<dyn Future<Output = CalloutResult> + Send>>,
}

/// What delivering a callout came to.
enum Delivered {
    Respond(LocalResponse),
    Continued {
        filter: usize,
        request: bool,
        response: bool,
    },
    Skipped(usize),
}

impl Stream {
    /// Starts the callouts filter `index` started: their answers are waited for by this stream
    /// (and delivered with its data at hand); a gRPC stream's events go to the root context as
    /// they come, as a root context's callouts do (`crate::ticker::launch`).
    pub(super) fn spawn(&mut self, index: usize, callouts: Vec<NewCallout>) {
        for callout in callouts {
            let token = callout.token;
            let (answer, lost) = match crate::ticker::start(callout) {
                Started::Once { answer, lost } => (answer, lost),
                Started::Stream(reader) => {
                    crate::ticker::launch_stream(
                        std::sync::Arc::downgrade(&self.chain),
                        self.target(index),
                        token,
                        reader,
                    );
                    continue;
                }
            };
            let result: Pin<Box<dyn Future<Output = CalloutResult> + Send>> =
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        let task = handle.spawn(answer);
                        Box::pin(async move { task.await.unwrap_or(lost) })
                    }
                    Err(_) => Box::pin(async move { lost }),
                };
            self.pending.push(Pending {
                filter: index,
                token,
                result,
            });
        }
    }

    /// The instance of filter `index` on this stream's worker.
    fn target(&self, index: usize) -> Target {
        Target {
            index,
            worker: self.worker,
            generation: self.filters[index].generation,
        }
    }

    /// Hands the stream's callouts still in flight, and those its filters started while it
    /// closed (`on_log`, `on_done`), to their filters' root contexts: they outlive the stream,
    /// as Envoy's do (the request belongs to the root context, cpp-host `src/exports.cc`
    /// `http_call`; it is cancelled only in `Context::~Context` of that root context).
    pub(super) fn detach(&mut self, late: Vec<(usize, NewCallout)>) {
        if self.pending.is_empty() && late.is_empty() {
            return;
        }
        let weak = std::sync::Arc::downgrade(&self.chain);
        for pending in std::mem::take(&mut self.pending) {
            let target = self.target(pending.filter);
            deliver_to_root(weak.clone(), target, pending.token, pending.result);
        }
        for (index, callout) in late {
            crate::ticker::launch(weak.clone(), self.target(index), callout);
        }
    }

    /// Delivers one completed callout; returns a response, or which filter continued what.
    fn deliver(&mut self, pending: Pending, result: CalloutResult) -> Delivered {
        let token = pending.token;
        let filter = pending.filter;
        match self.run(filter, true, None, |instance, _| {
            instance.on_callout(token, result).map(|()| 0)
        }) {
            Ran::Skip => Delivered::Skipped(filter),
            Ran::Respond(response) => Delivered::Respond(response),
            Ran::Done { actions, .. } => {
                let (request, response) = (actions.continue_request, actions.continue_response);
                match Self::apply(actions, Dir::Request) {
                    Err(local) => Delivered::Respond(local),
                    Ok(_) => Delivered::Continued {
                        filter,
                        request,
                        response,
                    },
                }
            }
        }
    }

    /// Delivers the callouts that have already completed, without waiting.
    pub(super) fn deliver_ready(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut index = 0;
        while index < self.pending.len() {
            match self.pending[index].result.as_mut().poll(&mut cx) {
                Poll::Ready(result) => {
                    let pending = self.pending.remove(index);
                    if let Delivered::Respond(response) = self.deliver(pending, result) {
                        self.deferred.get_or_insert(response);
                    }
                }
                Poll::Pending => index += 1,
            }
        }
    }

    /// Takes the stream's data back from the instance it is parked in, if it is.
    pub(super) fn unpark(&mut self) {
        let Some(index) = self.parked.take() else {
            return;
        };
        let (context, generation) = (self.filters[index].context, self.filters[index].generation);
        self.data = self.chain.filters[index]
            .lock(self.worker)
            .unpark(generation, context);
    }

    /// Parks the stream's data again in paused filter `index`'s instance (after a callout
    /// response was delivered with the data installed).
    fn park(&mut self, index: usize) {
        let (context, generation) = (self.filters[index].context, self.filters[index].generation);
        let mut slot = self.chain.filters[index].lock(self.worker);
        if slot.generation != generation {
            return;
        }
        if let (Some(instance), Some(data)) = (slot.instance.as_mut(), self.data.take()) {
            instance.store.data_mut().parked.push((context, data));
            self.parked = Some(index);
        }
    }

    /// What ends filter `index`'s pause in `dir` without one of this stream's callouts: an
    /// action a callback took on this stream after making it effective (`on_tick`, a root
    /// callout's response, another stream's callout response), or the instance's failure.
    /// `Some(None)` continues, `Some(Some(_))` answers.
    fn take_remote(&mut self, index: usize, dir: Dir) -> Option<Option<LocalResponse>> {
        let (context, generation) = (self.filters[index].context, self.filters[index].generation);
        let mut slot = self.chain.filters[index].lock(self.worker);
        let current = slot.generation == generation;
        let Some(instance) = slot.instance.as_mut().filter(|_| current) else {
            drop(slot);
            self.unpark();
            self.filters[index].open = false;
            return Some(match self.policy(index) {
                Ran::Respond(response) => Some(response),
                _ => None,
            });
        };
        let remote = &mut instance.store.data_mut().remote;
        let found = remote.iter().position(|entry| {
            entry.context == context
                && match entry.action {
                    RemoteAction::Reply(_) => true,
                    RemoteAction::Continue { request, response } => match dir {
                        Dir::Request => request,
                        Dir::Response => response,
                    },
                }
        })?;
        let taken = match remote.remove(found).action {
            RemoteAction::Reply(response) => Some(response),
            RemoteAction::Continue { .. } => None,
        };
        drop(slot);
        self.unpark();
        Some(taken)
    }

    /// Waits while filter `index` is paused in direction `dir` (its data parked in the
    /// filter's instance): `Some` is a response. The filter continues or answers through one of
    /// its stream's callout responses, or from a callback that made the stream effective
    /// (`on_tick`, a root callout's response, another stream's callout response).
    pub(super) async fn wait(&mut self, index: usize, dir: Dir) -> Option<LocalResponse> {
        let limits = self.chain.filters[index].limits;
        let deadline = tokio::time::Instant::now() + limits.pause_timeout;
        let wake = self.chain.filters[index].lock(self.worker).wake.clone();
        loop {
            let woken = wake.notified();
            tokio::pin!(woken);
            // Registered before the check, so that a wake in between is not missed.
            woken.as_mut().enable();
            if let Some(outcome) = self.take_remote(index, dir) {
                return outcome;
            }
            let next = if self.pending.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => None,
                    () = &mut woken => continue,
                }
            } else {
                let pending = &mut self.pending;
                let any = std::future::poll_fn(|cx| {
                    for (at, entry) in pending.iter_mut().enumerate() {
                        if let Poll::Ready(result) = entry.result.as_mut().poll(cx) {
                            return Poll::Ready((at, result));
                        }
                    }
                    Poll::Pending
                });
                tokio::select! {
                    next = tokio::time::timeout_at(deadline, any) => next.ok(),
                    () = &mut woken => continue,
                }
            };
            self.unpark();
            let Some((at, result)) = next else {
                let name = &self.chain.filters[index].plugin.name;
                log::warn!(target: "keel_wasm", "filter {name}: paused longer than {:?}; the stream is answered 408", limits.pause_timeout);
                crate::metrics::count_failure(name, "pause_timeout");
                // Envoy bounds a paused stream by the connection manager's stream idle timeout,
                // which answers 408 "stream timeout" (`source/common/http/conn_manager_impl.cc`
                // `onIdleTimeout`) whatever the filter's failure policy: a request never goes
                // on without the decision of the filter that held it.
                return Some(LocalResponse::plain(
                    http::StatusCode::REQUEST_TIMEOUT,
                    "stream timeout",
                    "stream_idle_timeout",
                ));
            };
            let pending = self.pending.remove(at);
            match self.deliver(pending, result) {
                Delivered::Respond(response) => return Some(response),
                Delivered::Continued {
                    filter,
                    request,
                    response,
                } if filter == index
                    && ((dir == Dir::Request && request) || (dir == Dir::Response && response)) =>
                {
                    return None;
                }
                Delivered::Skipped(filter) if filter == index => return None,
                _ => {}
            }
            if !self.filters[index].active {
                return None;
            }
            self.park(index);
        }
    }
}
