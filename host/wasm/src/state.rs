//! The data each wasmtime store carries ([`HostState`]) and the per-stream data
//! ([`StreamData`]) that is moved into the store for the length of one callback.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use wasmtime::{Memory, ResourceLimiter, TypedFunc};

use crate::metrics::CustomMetric;
use crate::types::{CalloutHandler, LocalResponse, StreamInfo, UpstreamInfo};

/// What a callback asked of a paused stream other than the one it was called for (a root
/// callback, or another stream's callout response, that made it effective): the paused stream
/// takes it when the slot's wake fires.
pub(crate) struct Remote {
    pub context: u32,
    pub action: RemoteAction,
}

/// See [`Remote`].
pub(crate) enum RemoteAction {
    /// `proxy_continue_stream`: the request and/or the response goes on.
    Continue { request: bool, response: bool },
    /// `proxy_send_local_response` or `proxy_close_stream`: the stream is answered.
    Reply(LocalResponse),
}

/// What every instance of one filter shares: its spec, as the host functions need it.
#[derive(Debug)]
pub(crate) struct PluginInfo {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub plugin_config: Bytes,
    pub vm_config: Bytes,
    pub env: Vec<(String, String)>,
}

/// The request and response of one stream, as the filters see them.
pub(crate) struct StreamData {
    pub info: StreamInfo,
    /// When the stream began, on the monotonic clock: the one clock read a stream costs.
    pub started: Instant,
    /// The same moment on the wall clock (`request.time`), worked out when a filter first asks.
    pub started_at: Option<SystemTime>,
    /// `request.duration`, fixed when a filter first asks once the request is complete (from
    /// `on_log` on: Envoy sets `requestComplete()` just before `Context::log`).
    pub duration: Option<Duration>,
    /// `response.code_details`: `via_upstream` for a backend's response, else the local
    /// reply's details.
    pub code_details: Option<Cow<'static, str>>,
    /// The request head: live during the request headers callbacks, a snapshot afterwards.
    pub request: Option<http::request::Parts>,
    pub request_trailers: Option<http::HeaderMap>,
    pub response: Option<http::response::Parts>,
    pub response_trailers: Option<http::HeaderMap>,
    pub upstream: Option<UpstreamInfo>,
    /// Upstream attempts made for the request (`upstream.request_attempt_count`).
    pub attempts: u32,
    /// The upstream connection that answered (`upstream.local_address`,
    /// `upstream.cx_pool_ready_duration`).
    pub upstream_connection: Option<crate::types::UpstreamConnection>,
    /// When the attempt the member answered began, and when its response was read to the end:
    /// `response.backend_latency` is the time between (Envoy's `firstUpstreamTxByteSent` and
    /// `lastUpstreamRxByteReceived`).
    pub upstream_sent: Option<Instant>,
    pub upstream_received: Option<Instant>,
    /// The body buffer of the filter being called, with its buffer type (0 request, 1 response).
    pub body: Option<(i32, crate::body::BodyBuf)>,
    /// Filter state written by `proxy_set_property` (shared by the filters of the chain).
    pub filter_state: crate::filter_state::FilterState,
    /// Request body bytes that reached the chain (`request.size` without a Content-Length).
    pub request_body_bytes: u64,
    /// Response body bytes the chain passed on toward the client (`response.size`: Envoy's
    /// `bytesSent()`).
    pub response_sent_bytes: u64,
    /// The header maps the filter being called may use ([`open`] bits): Envoy clears a
    /// filter's pointer to a map as soon as that filter's callback for it continued
    /// (`source/extensions/common/wasm/context.cc` `decodeHeaders`, `encodeHeaders`,
    /// `decodeTrailers`, `encodeTrailers`, `continueStream`) and gives the heads back to
    /// `on_log` only (`Context::log`, access-log phase).
    pub open: u8,
    /// Whether `on_log`/`on_done`/`on_delete` run (Envoy's access-log phase: a map it lacks is
    /// `NotFound` there, `BadArgument` elsewhere).
    pub log_phase: bool,
    /// The request as the headers callbacks left it was a gRPC request: kept for a local reply
    /// when its head is not ([`Self::is_grpc`]).
    pub grpc: bool,
}

/// The bits of [`StreamData::open`].
pub(crate) mod open {
    pub const REQUEST_HEADERS: u8 = 1;
    pub const REQUEST_TRAILERS: u8 = 2;
    pub const RESPONSE_HEADERS: u8 = 4;
    pub const RESPONSE_TRAILERS: u8 = 8;
    /// What the access-log phase sees (Envoy `Context::log`: no request trailers).
    pub const LOG: u8 = REQUEST_HEADERS | RESPONSE_HEADERS | RESPONSE_TRAILERS;
}

impl StreamData {
    /// Whether the request is a gRPC request (its head, while the stream has it; else as the
    /// headers callbacks left it): a local reply to it is a gRPC status.
    pub fn is_grpc(&self) -> bool {
        self.request
            .as_ref()
            .map_or(self.grpc, crate::grpc::is_request)
    }

    pub fn new(info: StreamInfo) -> Self {
        StreamData {
            info,
            started: Instant::now(),
            started_at: None,
            duration: None,
            code_details: None,
            request: None,
            request_trailers: None,
            response: None,
            response_trailers: None,
            upstream: None,
            attempts: 0,
            upstream_connection: None,
            upstream_sent: None,
            upstream_received: None,
            body: None,
            filter_state: crate::filter_state::FilterState::new(),
            request_body_bytes: 0,
            response_sent_bytes: 0,
            open: 0,
            log_phase: false,
            grpc: false,
        }
    }
}

/// What the guest asked of the stream during one callback (applied after it returns).
#[derive(Default)]
pub(crate) struct Actions {
    pub continue_request: bool,
    pub continue_response: bool,
    pub close: bool,
    pub local_response: Option<LocalResponse>,
}

/// A `proxy_http_call`, `proxy_grpc_call` or `proxy_grpc_stream` started during a callback;
/// the caller of the callback spawns it.
pub(crate) struct NewCallout {
    pub token: u32,
    pub call: Call,
    pub timeout: Duration,
}

/// The request of a [`NewCallout`], on its way.
pub(crate) enum Call {
    Http(crate::types::CalloutFuture),
    Grpc(crate::types::GrpcFuture),
    /// A gRPC stream (`proxy_grpc_stream`): its events are delivered one by one.
    GrpcStream(crate::grpc_stream::Reader),
}

/// The http-call response being delivered by `proxy_on_http_call_response`, with its trailers
/// when the upstream sent any (an HTTP/2 callout upstream; Envoy's call response has no
/// trailers map otherwise: `context.cc` `getConstMap`, `(*response)->trailers()` is null).
#[derive(Default)]
pub(crate) struct CallResponse {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Bytes,
    pub trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Numbers the instances (the owners of shared queues).
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The store data of one instance.
pub(crate) struct HostState {
    pub plugin: Arc<PluginInfo>,
    /// This instance's number, unique in the process.
    pub instance_id: u64,
    /// Whether the module speaks ABI 0.1.0 (a missing header is then an empty value).
    pub abi_0_1: bool,
    pub memory: Option<Memory>,
    /// The guest's allocator (taken out of the state while it runs).
    pub alloc: Option<TypedFunc<i32, i32>>,
    /// A reusable buffer for values built host-side before they are copied to the guest.
    pub scratch: Vec<u8>,
    pub memory_limit: usize,
    pub memory_exceeded: bool,
    pub exit_code: Option<i32>,
    pub root_context: u32,
    /// The context proxy calls act on (`proxy_set_effective_context` changes it).
    pub effective_context: u32,
    /// The stream context whose data is installed, 0 when none.
    pub stream_context: u32,
    pub stream: Option<Box<StreamData>>,
    pub actions: Actions,
    pub callouts: Vec<NewCallout>,
    pub call_response: Option<CallResponse>,
    /// The tokens of the callouts it started, by kind (`crate::tokens`).
    pub tokens: crate::tokens::Tokens,
    pub live_contexts: Vec<u32>,
    /// What callbacks asked of paused streams they made effective (`on_tick`,
    /// `on_queue_ready`, a callout's response, after `proxy_set_effective_context`).
    pub remote: Vec<Remote>,
    /// The data of this instance's paused streams, by context: a callback that makes one of
    /// them effective reads and changes its headers and properties there, as cpp-host's
    /// hostcalls act on the effective context (`src/exports.cc` `contextOrEffectiveContext`).
    pub parked: Vec<(u32, Box<StreamData>)>,
    pub tick_period: Option<Duration>,
    pub callout_handler: Arc<dyn CalloutHandler>,
    pub registry: prometheus::Registry,
    pub metrics: HashMap<u32, CustomMetric>,
    pub queues: Vec<u32>,
    /// The last line the filter logged (named in `on_configure` failures).
    pub last_log: Option<String>,
    /// In the root's `on_context_create` or `on_configure`: the only time the plugin
    /// configuration is readable (Envoy serves it only while `temp_plugin_` is set,
    /// `source/extensions/common/wasm/context.cc` `getBuffer`).
    pub configuring: bool,
    /// What `proxy_get_status` answers: set while a failed http callout's response is
    /// delivered (Envoy `context.cc` `onHttpCallFailure`: BrokenConnection, "reset") and while
    /// a gRPC call's `on_grpc_close` runs (its status and message), else (0, "").
    pub call_status: Option<(i32, String)>,
    /// The gRPC response message being delivered by `proxy_on_grpc_receive` (buffer 5).
    pub grpc_message: Option<Bytes>,
    /// The gRPC stream metadata being delivered, with its map type (initial or trailing).
    pub grpc_metadata: Option<(i32, crate::grpc_stream::Metadata)>,
    /// The unary gRPC calls in flight, by token: `proxy_grpc_cancel` or `proxy_grpc_close`
    /// drops one's handle, which resets its request (so does dropping the instance).
    pub grpc_calls: HashMap<u32, crate::grpc::CallHandle>,
    /// The open gRPC streams, by token (the root context's, as in cpp-host: `src/exports.cc`
    /// `grpc_stream` opens them on `root_context()`).
    pub grpc_streams: HashMap<u32, crate::grpc_send::OpenStream>,
    /// What those streams may queue for upstreams that do not take it (`crate::grpc_send`).
    pub grpc_send_budget: crate::grpc_send::SendBudget,
    /// The root's `on_done` answered "not yet": until the filter calls `proxy_done` (then
    /// `Ok`, once; otherwise `NotFound`, cpp-host `src/wasm.cc` `WasmBase::done`), keel keeps
    /// the instance and delivers its callouts (see `crate::ticker::drain`).
    pub done_pending: bool,
    /// While `_initialize`, `main`/`__main_void` or `_start` runs: most hostcalls trap then
    /// (`crate::hostcalls::start_phase`).
    pub starting: bool,
    /// The properties the root context declared (`declare_property`), by name: read-only or
    /// not (`crate::filter_state`).
    pub declared: HashMap<Vec<u8>, bool>,
    /// Names stream contexts declared, by context (no effect; kept until the context closes).
    pub stream_declared: Vec<(u32, Vec<u8>)>,
}

impl HostState {
    pub fn new(
        plugin: Arc<PluginInfo>,
        memory_limit: usize,
        callout_handler: Arc<dyn CalloutHandler>,
        registry: prometheus::Registry,
    ) -> Self {
        HostState {
            plugin,
            instance_id: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            abi_0_1: false,
            memory: None,
            alloc: None,
            scratch: Vec::new(),
            memory_limit,
            memory_exceeded: false,
            exit_code: None,
            root_context: 0,
            effective_context: 0,
            stream_context: 0,
            stream: None,
            actions: Actions::default(),
            callouts: Vec::new(),
            call_response: None,
            tokens: crate::tokens::Tokens::default(),
            live_contexts: Vec::new(),
            remote: Vec::new(),
            parked: Vec::new(),
            tick_period: None,
            callout_handler,
            registry,
            metrics: HashMap::new(),
            queues: Vec::new(),
            last_log: None,
            configuring: false,
            call_status: None,
            grpc_message: None,
            grpc_metadata: None,
            grpc_calls: HashMap::new(),
            grpc_streams: HashMap::new(),
            grpc_send_budget: crate::grpc_send::SendBudget::new(memory_limit),
            done_pending: false,
            starting: false,
            declared: HashMap::new(),
            stream_declared: Vec::new(),
        }
    }

    /// The stream of the effective context: the installed one, or a paused one a callback made
    /// effective.
    pub fn current_stream(&mut self) -> Option<&mut StreamData> {
        let effective = self.effective_context;
        if self.stream_context != 0 && effective == self.stream_context {
            return self.stream.as_deref_mut();
        }
        self.parked_stream(effective)
    }

    /// The data of paused stream `context`, when it is parked here.
    pub fn parked_stream(&mut self, context: u32) -> Option<&mut StreamData> {
        self.parked
            .iter_mut()
            .find(|(parked, _)| *parked == context)
            .map(|(_, data)| &mut **data)
    }

    /// Takes paused stream `context`'s data back.
    pub fn unpark(&mut self, context: u32) -> Option<Box<StreamData>> {
        let at = self
            .parked
            .iter()
            .position(|(parked, _)| *parked == context)?;
        Some(self.parked.swap_remove(at).1)
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
