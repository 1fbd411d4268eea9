//! [`Stream`]: one request through the chain. Each method installs the stream's data in the
//! filter's store, runs the callback, takes the data back and then applies what the filter asked
//! for after the callback returned (Envoy's deferred `continue_stream` / local responses). A
//! paused filter is waited for inside the method's future: the stream's own callouts are
//! delivered to the root context as they complete, until the filter continues, answers, or its
//! pause times out.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;

use crate::abi::action;
use crate::body::BodyBuf;
use crate::chain::ChainInner;
use crate::headers::MapRef;
use crate::instance::{Callback, Failure, Instance};
use crate::state::{Actions, HostState, StreamData, open};
use crate::types::{
    BodyVerdict, CodeDetails, FailurePolicy, HeadersVerdict, LocalResponse, StreamInfo,
    TrailersVerdict, UpstreamConnection, UpstreamInfo,
};
use pause::Pending;

mod pause;

#[derive(Default)]
struct FilterStream {
    context: u32,
    generation: u64,
    active: bool,
    /// Whether the instance still holds the context (on_log/on_done/on_delete are owed).
    open: bool,
    /// The header maps this filter may use now (`crate::state::open` bits).
    maps: u8,
    /// Whether its request headers callback ran (Envoy's `http_request_started_`: a filter
    /// the request never reached sees no response callback either).
    started: bool,
    request_body: BodyBuf,
    response_body: BodyBuf,
}

impl FilterStream {
    /// The body this filter buffers in `dir`.
    fn body(&mut self, dir: Dir) -> &mut BodyBuf {
        match dir {
            Dir::Request => &mut self.request_body,
            Dir::Response => &mut self.response_body,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

/// What one guest call came to.
enum Ran {
    Done {
        action: i32,
        actions: Actions,
    },
    /// The filter is out of this stream (fail open, or it was never there).
    Skip,
    Respond(LocalResponse),
}

/// One request's way through the filters (see [`crate::FilterChain::stream`]).
pub struct Stream {
    chain: Arc<ChainInner>,
    worker: usize,
    data: Option<Box<StreamData>>,
    filters: Vec<FilterStream>,
    pending: Vec<Pending>,
    /// A response decided outside a verdict (a failure at open, a callout delivered early).
    deferred: Option<LocalResponse>,
    body_dir: Option<Dir>,
    finished: bool,
    /// A local reply is on its way through the response callbacks.
    replying: bool,
    /// The filter whose instance holds `data` while that filter is paused (see
    /// [`crate::state::HostState::parked`]); `data` is `None` meanwhile.
    parked: Option<usize>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("worker", &self.worker)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// The answer to `proxy_close_stream`. Envoy resets the stream instead (`context.cc`
/// `closeStream`, details `wasm_close_stream`); keel answers, so that the client learns why
/// (README, Envoy section).
pub(crate) fn closed_by_filter() -> LocalResponse {
    LocalResponse::plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "closed by a filter\n",
        "wasm_close_stream",
    )
}

/// The fail-closed answer (Envoy `context.cc` `failStream`: 503, details `wasm_fail_stream`).
fn failed_response() -> LocalResponse {
    LocalResponse::plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "a filter failed\n",
        "wasm_fail_stream",
    )
}

fn empty_request() -> http::request::Parts {
    http::Request::new(()).into_parts().0
}

fn empty_response() -> http::response::Parts {
    http::Response::new(()).into_parts().0
}

/// A copy of the request head that stays readable for the rest of the stream.
fn request_snapshot(parts: &http::request::Parts) -> http::request::Parts {
    let mut copy = empty_request();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// The stream's data: `data`, or (taken and not given back, which only a dropped stream sees)
/// data for a stream with no facts.
fn data_in(data: &mut Option<Box<StreamData>>) -> &mut StreamData {
    data.get_or_insert_with(|| {
        Box::new(StreamData::new(StreamInfo {
            source: ([0, 0, 0, 0], 0).into(),
            destination: ([0, 0, 0, 0], 0).into(),
            tls: false,
            protocol: http::Version::HTTP_11,
            request_id: 0,
            connection_id: 0,
            route_name: "".into(),
            cluster_name: "".into(),
            endpoints: 0,
            downstream_tls: None,
        }))
    })
}

/// The header map a headers or trailers callback hands its filter.
fn map_bit(callback: Callback) -> u8 {
    match callback {
        Callback::RequestHeaders => open::REQUEST_HEADERS,
        Callback::RequestTrailers => open::REQUEST_TRAILERS,
        Callback::ResponseHeaders => open::RESPONSE_HEADERS,
        Callback::ResponseTrailers => open::RESPONSE_TRAILERS,
        Callback::RequestBody | Callback::ResponseBody => 0,
    }
}

/// The `num_headers` argument of a headers or trailers callback.
fn header_count(state: &mut HostState, callback: Callback) -> usize {
    let Some(stream) = state.stream.as_deref_mut() else {
        return 0;
    };
    let tls = stream.info.tls;
    match callback {
        Callback::RequestHeaders => stream
            .request
            .as_mut()
            .map_or(0, |p| MapRef::Request(p, tls).count()),
        Callback::ResponseHeaders => stream
            .response
            .as_mut()
            .map_or(0, |p| MapRef::Response(p).count()),
        Callback::RequestTrailers => stream
            .request_trailers
            .as_ref()
            .map_or(0, http::HeaderMap::len),
        Callback::ResponseTrailers => stream
            .response_trailers
            .as_ref()
            .map_or(0, http::HeaderMap::len),
        Callback::RequestBody | Callback::ResponseBody => 0,
    }
}

impl Stream {
    pub(crate) fn open(chain: Arc<ChainInner>, worker: usize, info: StreamInfo) -> Stream {
        let mut filters = Vec::with_capacity(chain.filters.len());
        let mut deferred = None;
        for filter in &chain.filters {
            let mut slot = filter.lock(worker);
            filter.revive(&mut slot);
            let generation = slot.generation;
            let created = match slot.instance.as_mut() {
                Some(instance) => instance.create_context().map_err(Some),
                None => Err(None),
            };
            let mut state = FilterStream {
                generation,
                ..FilterStream::default()
            };
            match created {
                Ok(context) => {
                    state.context = context;
                    state.active = true;
                    state.open = true;
                }
                Err(failure) => {
                    match failure {
                        Some(failure) => filter.fail(&mut slot, &failure),
                        None => crate::metrics::count_failure(&filter.plugin.name, "unavailable"),
                    }
                    if filter.policy == FailurePolicy::FailClosed && deferred.is_none() {
                        deferred = Some(failed_response());
                    }
                }
            }
            drop(slot);
            filters.push(state);
        }
        Stream {
            chain,
            worker,
            data: Some(Box::new(StreamData::new(info))),
            filters,
            pending: Vec::new(),
            deferred,
            body_dir: None,
            finished: false,
            replying: false,
            parked: None,
        }
    }

    fn data(&mut self) -> &mut StreamData {
        debug_assert!(self.parked.is_none(), "the stream's data is parked");
        data_in(&mut self.data)
    }

    fn index(&self, dir: Dir, k: usize) -> usize {
        match dir {
            Dir::Request => k,
            Dir::Response => self.filters.len() - 1 - k,
        }
    }

    /// Takes the filter out of this stream and says what its policy makes of that.
    fn policy(&mut self, index: usize) -> Ran {
        self.filters[index].active = false;
        match self.chain.filters[index].policy {
            FailurePolicy::FailClosed => Ran::Respond(failed_response()),
            FailurePolicy::FailOpen => Ran::Skip,
        }
    }

    /// Runs `op` on filter `index`'s instance with the stream's data installed. The chain is
    /// borrowed field by field, not cloned: its reference count is shared by every worker, and
    /// one atomic increment per callback on that cache line showed in profiles.
    ///
    /// `callback` is the stream callback `op` runs, if it is one: when the module does not
    /// export it, nothing is installed and nothing called; the filter continues, as with
    /// Envoy, after the same check that its instance is still the one the stream began with.
    fn run(
        &mut self,
        index: usize,
        on_root: bool,
        callback: Option<Callback>,
        op: impl FnOnce(&mut Instance, u32) -> Result<i32, Failure>,
    ) -> Ran {
        if !self.filters[index].active {
            return Ran::Skip;
        }
        let filter = &self.chain.filters[index];
        let mut slot = filter.lock(self.worker);
        let fs = &mut self.filters[index];
        let (context, generation) = (fs.context, fs.generation);
        if slot.generation != generation || slot.instance.is_none() {
            drop(slot);
            fs.open = false;
            return self.policy(index);
        }
        if callback.is_some_and(|callback| !filter.callbacks.has(callback)) {
            return Ran::Done {
                action: action::CONTINUE,
                actions: Actions::default(),
            };
        }
        let Some(instance) = slot.instance.as_mut() else {
            return Ran::Skip;
        };
        debug_assert!(self.parked.is_none(), "the stream's data is parked");
        let data = data_in(&mut self.data);
        if let Some(dir) = self.body_dir {
            let (kind, body) = match dir {
                Dir::Request => (
                    crate::abi::buffer::REQUEST_BODY,
                    std::mem::take(&mut fs.request_body),
                ),
                Dir::Response => (
                    crate::abi::buffer::RESPONSE_BODY,
                    std::mem::take(&mut fs.response_body),
                ),
            };
            data.body = Some((kind, body));
        }
        data.open = fs.maps;
        let root = instance.store.data().root_context;
        instance.install(
            self.data.take(),
            context,
            if on_root { root } else { context },
        );
        let result = op(instance, context);
        let (data, actions, callouts) = instance.uninstall();
        self.data = data;
        // The callback acted on another (paused) stream of this instance that it made effective.
        let notify = !instance.store.data().remote.is_empty();
        if let Some(dir) = self.body_dir {
            let body = self
                .data
                .as_deref_mut()
                .and_then(|data| data.body.take())
                .map(|(_, body)| body)
                .unwrap_or_default();
            match dir {
                Dir::Request => fs.request_body = body,
                Dir::Response => fs.response_body = body,
            }
        }
        // A filter that paused keeps the stream's data in its instance, where a callback that
        // makes the stream effective finds it; parked before the slot is let go, so that no
        // such callback (the ticker runs on its own thread) comes in between.
        if let Ok(action::PAUSE) = result
            && actions.local_response.is_none()
            && !actions.close
            && !actions.continue_request
            && !actions.continue_response
            && let Some(data) = self.data.take()
        {
            instance.store.data_mut().parked.push((context, data));
            self.parked = Some(index);
        }
        if notify {
            slot.wake.notify_waiters();
        }
        match result {
            Ok(action) => {
                drop(slot);
                self.spawn(index, callouts);
                Ran::Done { action, actions }
            }
            Err(failure) => {
                filter.fail(&mut slot, &failure);
                drop(slot);
                fs.open = false;
                self.policy(index)
            }
        }
    }

    /// Applies a callback's deferred actions: `Err` is a response, `Ok` says whether the
    /// filter continued the direction `dir` itself.
    fn apply(actions: Actions, dir: Dir) -> Result<bool, LocalResponse> {
        if let Some(response) = actions.local_response {
            return Err(response);
        }
        if actions.close {
            return Err(closed_by_filter());
        }
        Ok(match dir {
            Dir::Request => actions.continue_request,
            Dir::Response => actions.continue_response,
        })
    }

    /// After a callback: its deferred actions, then the wait if it paused.
    async fn step(&mut self, index: usize, dir: Dir, ran: Ran) -> Result<(), LocalResponse> {
        let paused = match ran {
            Ran::Skip => false,
            Ran::Respond(response) => return Err(response),
            Ran::Done { action, actions } => action == action::PAUSE && !Self::apply(actions, dir)?,
        };
        // Boxed: a pause is rare, and its future (callouts, timers) would otherwise make every
        // callback's future, and each move of it, that much larger.
        if paused && let Some(response) = Box::pin(self.wait(index, dir)).await {
            return Err(response);
        }
        Ok(())
    }

    async fn headers_phase(
        &mut self,
        dir: Dir,
        callback: Callback,
        end_of_stream: bool,
    ) -> HeadersVerdict {
        if let Some(response) = self.deferred.take() {
            return HeadersVerdict::Respond(response);
        }
        self.deliver_ready();
        if let Some(response) = self.deferred.take() {
            return HeadersVerdict::Respond(response);
        }
        self.body_dir = None;
        let bit = map_bit(callback);
        for k in 0..self.filters.len() {
            let index = self.index(dir, k);
            match dir {
                Dir::Request => self.filters[index].started = true,
                Dir::Response if !self.filters[index].started => continue,
                Dir::Response => {}
            }
            // The map is the filter's while its callback runs and while it pauses; once it
            // continued, Envoy clears its pointer to the map.
            self.filters[index].maps |= bit;
            let ran = self.run(index, false, Some(callback), |instance, context| {
                let count = header_count(instance.store.data_mut(), callback);
                instance.on_stream(callback, context, count, end_of_stream)
            });
            let stepped = self.step(index, dir, ran).await;
            self.filters[index].maps &= !bit;
            if let Err(response) = stepped {
                return HeadersVerdict::Respond(response);
            }
        }
        HeadersVerdict::Continue
    }

    async fn body_phase(&mut self, dir: Dir, mut chunk: Bytes, end_of_stream: bool) -> BodyVerdict {
        if let Some(response) = self.deferred.take() {
            return BodyVerdict::Respond(response);
        }
        self.deliver_ready();
        if let Some(response) = self.deferred.take() {
            return BodyVerdict::Respond(response);
        }
        if dir == Dir::Request {
            self.data().request_body_bytes += chunk.len() as u64;
        }
        self.body_dir = Some(dir);
        let verdict = 'filters: {
            for k in 0..self.filters.len() {
                let index = self.index(dir, k);
                match self.body_one(dir, index, chunk, end_of_stream).await {
                    BodyVerdict::Forward(next) => chunk = next,
                    other => break 'filters other,
                }
            }
            BodyVerdict::Forward(chunk)
        };
        self.body_dir = None;
        if let (Dir::Response, BodyVerdict::Forward(sent)) = (dir, &verdict) {
            self.data().response_sent_bytes += sent.len() as u64;
        }
        verdict
    }

    /// Filter `index`'s part of a body phase (`body_dir` set): `chunk` joins what it buffers;
    /// `Forward` is what it passes on, `Hold` when it keeps buffering.
    async fn body_one(
        &mut self,
        dir: Dir,
        index: usize,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> BodyVerdict {
        if !self.filters[index].active || !self.filters[index].started {
            return BodyVerdict::Forward(chunk);
        }
        let callback = match dir {
            Dir::Request => Callback::RequestBody,
            Dir::Response => Callback::ResponseBody,
        };
        if !self.chain.filters[index].callbacks.has(callback) {
            // No body callback: the chunk goes on as it came (after the instance check).
            return match self.run(index, false, Some(callback), |_, _| Ok(action::CONTINUE)) {
                Ran::Respond(response) => BodyVerdict::Respond(response),
                Ran::Done { .. } | Ran::Skip => BodyVerdict::Forward(chunk),
            };
        }
        let buffered = {
            let body = self.filters[index].body(dir);
            body.push(chunk);
            body.len()
        };
        let ran = self.run(index, false, Some(callback), |instance, context| {
            instance.on_stream(callback, context, buffered, end_of_stream)
        });
        let paused = matches!(ran, Ran::Done { action: action::PAUSE, ref actions } if !match dir {
            Dir::Request => actions.continue_request,
            Dir::Response => actions.continue_response,
        });
        if paused && !end_of_stream {
            // Buffering, not waiting: the data comes straight back.
            self.unpark();
            if let Ran::Done { actions, .. } = ran
                && let Err(response) = Self::apply(actions, dir)
            {
                return BodyVerdict::Respond(response);
            }
            let held = self.filters[index].body(dir).len();
            if held > self.chain.filters[index].limits.max_buffered_body {
                // Envoy's buffer limit replies (`ResponseCodeDetailValues`
                // `RequestPayloadTooLarge`, `ResponsePayloadTooLarge`).
                let (status, text, details) = match dir {
                    Dir::Request => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large for a filter\n",
                        "request_payload_too_large",
                    ),
                    Dir::Response => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "response body too large for a filter\n",
                        "response_payload_too_large",
                    ),
                };
                return BodyVerdict::Respond(LocalResponse::plain(status, text, details));
            }
            return BodyVerdict::Hold;
        }
        if let Err(response) = self.step(index, dir, ran).await {
            return BodyVerdict::Respond(response);
        }
        BodyVerdict::Forward(self.filters[index].body(dir).take())
    }

    /// Trailers through every filter in `dir`'s order. A body a filter still holds goes on once
    /// that filter's trailers callback has let them continue, through the later filters' body
    /// callbacks (not the end of the stream: the trailers follow), as Envoy passes it on; what
    /// comes out of the last filter is sent before the trailers.
    async fn trailers_phase(&mut self, dir: Dir, callback: Callback) -> TrailersVerdict {
        if let Some(response) = self.deferred.take() {
            return TrailersVerdict::Respond(response);
        }
        self.deliver_ready();
        if let Some(response) = self.deferred.take() {
            return TrailersVerdict::Respond(response);
        }
        let mut carry = Bytes::new();
        for k in 0..self.filters.len() {
            let index = self.index(dir, k);
            if !self.filters[index].started {
                continue;
            }
            if !carry.is_empty() {
                self.body_dir = Some(dir);
                let one = self.body_one(dir, index, carry, false).await;
                self.body_dir = None;
                carry = match one {
                    BodyVerdict::Forward(next) => next,
                    BodyVerdict::Hold => Bytes::new(),
                    BodyVerdict::Respond(response) => return TrailersVerdict::Respond(response),
                };
            }
            self.body_dir = None;
            let bit = map_bit(callback);
            self.filters[index].maps |= bit;
            let ran = self.run(index, false, Some(callback), |instance, context| {
                let count = header_count(instance.store.data_mut(), callback);
                instance.on_stream(callback, context, count, true)
            });
            let stepped = self.step(index, dir, ran).await;
            self.filters[index].maps &= !bit;
            if let Err(response) = stepped {
                return TrailersVerdict::Respond(response);
            }
            // The trailers went on: so does what this filter held (older than `carry`, which is
            // only non-empty here when the filter was out of the stream).
            let mut held = std::mem::take(self.filters[index].body(dir));
            if !held.is_empty() {
                held.push(carry);
                carry = held.take();
            }
        }
        TrailersVerdict::Continue(carry)
    }

    /// The request headers (and pseudo-headers) through every filter, in order.
    pub async fn request_headers(
        &mut self,
        request: &mut http::request::Parts,
        end_of_stream: bool,
    ) -> HeadersVerdict {
        let parts = std::mem::replace(request, empty_request());
        self.data().request = Some(parts);
        let verdict = self
            .headers_phase(Dir::Request, Callback::RequestHeaders, end_of_stream)
            .await;
        if let Some(parts) = self.data().request.take() {
            *request = parts;
        }
        let verdict = match verdict {
            HeadersVerdict::Respond(local) => {
                // The request head stays readable by on_log.
                self.data().request = Some(request_snapshot(request));
                return HeadersVerdict::Respond(self.replied(local).await);
            }
            continued => continued,
        };
        // The request head is readable again in on_log only (header maps are a filter's during
        // its own callback for them): copied when the chain has a filter that exports on_log
        // and some filter is still in the stream, else only whether it is gRPC is kept (for a
        // local reply).
        if self.chain.keep_heads && self.filters.iter().any(|fs| fs.open) {
            self.data().request = Some(request_snapshot(request));
        } else {
            self.data().grpc = crate::grpc::is_request(request);
        }
        verdict
    }

    /// A chunk of the request body.
    pub async fn request_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BodyVerdict {
        match self.body_phase(Dir::Request, chunk, end_of_stream).await {
            BodyVerdict::Respond(local) => BodyVerdict::Respond(self.replied(local).await),
            other => other,
        }
    }

    /// The request trailers (and, first, any request body the filters still held).
    pub async fn request_trailers(&mut self, trailers: &mut http::HeaderMap) -> TrailersVerdict {
        match self.trailers(Dir::Request, trailers).await {
            TrailersVerdict::Respond(local) => TrailersVerdict::Respond(self.replied(local).await),
            other => other,
        }
    }

    /// A local reply decided on the request path (a filter's `send_local_response`, the
    /// fail-closed 503, the 408 of a pause that timed out, the 413 of a body too large) goes
    /// through the response callbacks of the filters the request reached, in reverse order, as
    /// Envoy's `sendLocalReply` sends it through the encoder filter chain
    /// (`source/common/http/filter_manager.cc` `sendLocalReplyViaFilterChain`); they may change
    /// it, and `on_log` sees its status. As Envoy (`source/common/http/utility.cc`
    /// `sendLocalReply`), a reply with a body is `text/plain` unless it says otherwise, one
    /// without has no `content-type`; a reply to a gRPC request is a gRPC status instead
    /// (`crate::grpc::trailers_only`).
    /// [`Self::reply`], boxed: a local reply is rare, and its future (the response callbacks)
    /// would otherwise make every request callback's future that much larger.
    async fn replied(&mut self, local: LocalResponse) -> LocalResponse {
        Box::pin(self.reply(local)).await
    }

    async fn reply(&mut self, local: LocalResponse) -> LocalResponse {
        if self.replying {
            return local;
        }
        self.replying = true;
        let LocalResponse {
            status,
            headers,
            body,
            details,
        } = local;
        self.data().code_details = Some(details.clone());
        let mut parts = empty_response();
        parts.status = status;
        for (name, value) in headers {
            parts.headers.append(name, value);
        }
        if body.is_empty() {
            parts.headers.remove(http::header::CONTENT_TYPE);
        } else if !parts.headers.contains_key(http::header::CONTENT_TYPE) {
            parts.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
        }
        // To a gRPC request, the reply is a gRPC status (trailers-only), as Envoy sends it.
        let body = if self.data().is_grpc() {
            crate::grpc::trailers_only(&mut parts, &body);
            Bytes::new()
        } else {
            body
        };
        // An answer some filter still owed is superseded by this one.
        self.deferred = None;
        let eos = body.is_empty();
        let verdict = self.response_headers(&mut parts, None, eos).await;
        if let HeadersVerdict::Respond(other) = verdict {
            return other;
        }
        let body = if eos {
            body
        } else {
            match self.response_body(body, true).await {
                BodyVerdict::Forward(body) => body,
                BodyVerdict::Hold => Bytes::new(),
                BodyVerdict::Respond(other) => return other,
            }
        };
        LocalResponse {
            status: parts.status,
            headers: parts
                .headers
                .into_iter()
                .scan(None, |last, (name, value)| {
                    if let Some(name) = name {
                        *last = Some(name);
                    }
                    Some(last.clone().map(|name| (name, value)))
                })
                .flatten()
                .collect(),
            body,
            details,
        }
    }

    /// How many upstream attempts the request made, and, when a member answered, its
    /// connection and when the attempt that it answered began (properties
    /// `upstream.request_attempt_count`, `upstream.local_address`,
    /// `upstream.cx_pool_ready_duration`, and the start of `response.backend_latency`).
    pub fn upstream_attempts(
        &mut self,
        attempts: u32,
        connection: Option<UpstreamConnection>,
        sent_at: Option<Instant>,
    ) {
        let data = self.data();
        data.attempts = attempts;
        data.upstream_connection = connection;
        data.upstream_sent = sent_at;
    }

    /// The member's response was read to its end at `at` (the end of
    /// `response.backend_latency`).
    pub fn upstream_received(&mut self, at: Instant) {
        self.data().upstream_received = Some(at);
    }

    /// The response headers through every filter, in reverse order; `upstream` is the backend
    /// that served it (property `upstream.address`).
    pub async fn response_headers(
        &mut self,
        response: &mut http::response::Parts,
        upstream: Option<&UpstreamInfo>,
        end_of_stream: bool,
    ) -> HeadersVerdict {
        self.data().upstream = upstream.cloned();
        // A backend's response is `via_upstream` (Envoy's router); keel's own reply says why in
        // its head; a filter's reply (`reply`) has set its details already.
        if upstream.is_some() {
            self.data().code_details = Some(Cow::Borrowed("via_upstream"));
        } else if let Some(CodeDetails(details)) = response.extensions.get() {
            self.data().code_details = Some(Cow::Borrowed(details));
        }
        let parts = std::mem::replace(response, empty_response());
        self.data().response = Some(parts);
        let verdict = self
            .headers_phase(Dir::Response, Callback::ResponseHeaders, end_of_stream)
            .await;
        if let Some(parts) = self.data().response.take() {
            *response = parts;
        }
        // on_log may read the response headers again, as in Envoy (no other later callback:
        // a map is a filter's during its own callback for it): copied when the chain has a
        // filter that exports on_log and some filter is still in the stream; else only the
        // status is kept (properties read it).
        let mut snapshot = empty_response();
        snapshot.status = response.status;
        snapshot.version = response.version;
        if self.chain.keep_heads && self.filters.iter().any(|fs| fs.open) {
            snapshot.headers = response.headers.clone();
        }
        self.data().response = Some(snapshot);
        if let HeadersVerdict::Respond(local) = &verdict {
            self.answered(local);
        }
        verdict
    }

    /// A chunk of the response body.
    pub async fn response_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BodyVerdict {
        let verdict = self.body_phase(Dir::Response, chunk, end_of_stream).await;
        if let BodyVerdict::Respond(local) = &verdict {
            self.answered(local);
        }
        verdict
    }

    /// The response trailers (and, first, any response body the filters still held).
    pub async fn response_trailers(&mut self, trailers: &mut http::HeaderMap) -> TrailersVerdict {
        let verdict = self.trailers(Dir::Response, trailers).await;
        if let TrailersVerdict::Respond(local) = &verdict {
            self.answered(local);
        }
        verdict
    }

    /// A reply made on the response path replaces the response: `on_log` sees its details.
    fn answered(&mut self, local: &LocalResponse) {
        if self.parked.is_none() {
            self.data().code_details = Some(local.details.clone());
        }
    }

    /// Trailers in `dir`: installed for the filters, run, and handed back as they left them.
    async fn trailers(&mut self, dir: Dir, trailers: &mut http::HeaderMap) -> TrailersVerdict {
        let (slot, callback): (fn(&mut StreamData) -> &mut Option<http::HeaderMap>, _) = match dir {
            Dir::Request => (|d| &mut d.request_trailers, Callback::RequestTrailers),
            Dir::Response => (|d| &mut d.response_trailers, Callback::ResponseTrailers),
        };
        *slot(self.data()) = Some(std::mem::take(trailers));
        let verdict = self.trailers_phase(dir, callback).await;
        if let (Dir::Response, TrailersVerdict::Continue(sent)) = (dir, &verdict) {
            self.data().response_sent_bytes += sent.len() as u64;
        }
        if let Some(map) = slot(self.data()).as_ref() {
            trailers.clone_from(map);
        }
        verdict
    }

    /// Ends the stream: `on_log`, `on_done`, `on_delete` in every filter (also done on drop).
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.body_dir = None;
        // Dropped while a filter paused (the client went away): the data comes back for on_log.
        self.unpark();
        let mut late = Vec::new();
        for (index, filter) in self.chain.filters.iter().enumerate() {
            let fs = &mut self.filters[index];
            if !fs.open {
                continue;
            }
            fs.open = false;
            let (context, generation) = (fs.context, fs.generation);
            let mut slot = filter.lock(self.worker);
            if slot.generation != generation {
                continue;
            }
            let Some(instance) = slot.instance.as_mut() else {
                continue;
            };
            if let Some(data) = self.data.as_deref_mut() {
                data.open = open::LOG;
                data.log_phase = true;
            }
            instance.install(self.data.take(), context, context);
            let result = instance.close_context(context);
            let (data, _, callouts) = instance.uninstall();
            self.data = data;
            match result {
                Err(failure) => filter.fail(&mut slot, &failure),
                Ok(()) if callouts.is_empty() => {}
                // Off a runtime (a stream dropped outside one), the chain's ticker sends them.
                Ok(()) if tokio::runtime::Handle::try_current().is_err() => {
                    instance.store.data_mut().callouts.extend(callouts);
                }
                Ok(()) => late.extend(callouts.into_iter().map(|callout| (index, callout))),
            }
        }
        self.detach(late);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.close();
    }
}
