//! One filter instance: its store, the callbacks it exports, the call wrapper that applies the
//! epoch deadline and turns an error into a [`Failure`], and the start sequence Envoy uses
//! (`_initialize`, root context, `on_vm_start`, `on_configure`).

use std::sync::Arc;

use wasmtime::{InstancePre, Store, Trap, TypedFunc};

use crate::abi::{action, map};
use crate::grpc::GrpcOutcome;
use crate::grpc_stream::StreamEvent;
use crate::hostcalls::escape_controls;
use crate::state::{Actions, CallResponse, HostState, NewCallout, PluginInfo, StreamData};
use crate::ticker::CalloutResult;
use crate::types::{CallTrailers, CalloutHandler, Limits};

/// Why a callback failed; the kind is the `kind` label of the failure metric.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Trap(String),
    Deadline,
    Memory,
    ProcExit(i32),
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Trap(_) => "trap",
            Failure::Deadline => "deadline",
            Failure::Memory => "memory",
            Failure::ProcExit(_) => "proc_exit",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Trap(message) => write!(f, "trap: {message}"),
            Failure::Deadline => f.write_str("the callback ran past its deadline"),
            Failure::Memory => f.write_str("the instance reached its memory limit"),
            Failure::ProcExit(code) => write!(f, "proc_exit({code})"),
        }
    }
}

/// The stream callbacks that return an action.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Callback {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

type F2 = TypedFunc<(i32, i32), ()>;
type A3 = TypedFunc<(i32, i32, i32), i32>;
type A2 = TypedFunc<(i32, i32), i32>;
type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;
type F3 = TypedFunc<(i32, i32, i32), ()>;

/// A headers callback: ABI 0.2.x passes `end_of_stream`, ABI 0.1.0 does not (cpp-host
/// `src/wasm.cc` `getFunctions`, `on_request_headers_abi_01_` / `_abi_02_`; Rust SDK 0.1.x
/// modules are ABI 0.1.0).
enum Headers {
    V2(A3),
    V1(A2),
}

/// A headers callback of either ABI version (`None` when the module exports none).
fn headers_export(
    instance: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<Headers>, StartError> {
    let Some(func) = instance.get_func(&mut *store, name) else {
        return Ok(None);
    };
    if let Ok(f) = func.typed::<(i32, i32, i32), i32>(&*store) {
        return Ok(Some(Headers::V2(f)));
    }
    func.typed::<(i32, i32), i32>(&*store)
        .map(|f| Some(Headers::V1(f)))
        .map_err(|e| StartError::Module(format!("export {name} has the wrong type: {e}")))
}

/// The entry point run after `_initialize` (or instead of it, for a WASI command).
enum Entry {
    Main(TypedFunc<(i32, i32), i32>),
    MainVoid(TypedFunc<(), i32>),
    Start(TypedFunc<(), ()>),
    None,
}

struct Exports {
    context_create: Option<F2>,
    vm_start: Option<A2>,
    configure: Option<A2>,
    request_headers: Option<Headers>,
    request_body: Option<A3>,
    request_trailers: Option<A2>,
    response_headers: Option<Headers>,
    response_body: Option<A3>,
    response_trailers: Option<A2>,
    http_call_response: Option<F5>,
    grpc_receive: Option<F3>,
    grpc_close: Option<F3>,
    grpc_initial_metadata: Option<F3>,
    grpc_trailing_metadata: Option<F3>,
    log: Option<TypedFunc<i32, ()>>,
    done: Option<TypedFunc<i32, i32>>,
    delete: Option<TypedFunc<i32, ()>>,
    tick: Option<TypedFunc<i32, ()>>,
    queue_ready: Option<F2>,
}

/// Why an instance could not be made or started.
#[derive(Debug)]
pub(crate) enum StartError {
    /// Instantiation or an export of the wrong type.
    Module(String),
    /// `_initialize`, the root context or `on_vm_start` failed.
    Start(String),
    /// `on_configure` returned false or failed; the message is the filter's last log line.
    Configure(String),
}

/// Runs one guest call on `store` under the deadline; an error becomes a [`Failure`].
fn guarded<R>(
    store: &mut Store<HostState>,
    deadline: u64,
    f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
) -> Result<R, Failure> {
    store.set_epoch_deadline(deadline);
    match f(store) {
        Ok(value) => Ok(value),
        Err(error) => {
            let state = store.data();
            Err(if let Some(code) = state.exit_code {
                Failure::ProcExit(code)
            } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                Failure::Deadline
            } else if state.memory_exceeded {
                Failure::Memory
            } else {
                let mut text = escape_controls(&format!("{error:#}"));
                // At most 400 bytes, cut on a character boundary (the text is the guest's).
                let mut cut = text.len().min(400);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                Failure::Trap(text)
            })
        }
    }
}

/// A live instance of a filter.
pub(crate) struct Instance {
    pub store: Store<HostState>,
    exports: Exports,
    deadline: u64,
    next_context: u32,
}

fn typed<P, R>(
    instance: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, StartError>
where
    P: wasmtime::WasmParams,
    R: wasmtime::WasmResults,
{
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(func) => func
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| StartError::Module(format!("export {name} has the wrong type: {e}"))),
    }
}

impl Instance {
    /// Instantiates and starts an instance (root context 1), ready for streams.
    pub fn start(
        pre: &InstancePre<HostState>,
        plugin: Arc<PluginInfo>,
        limits: &Limits,
        handler: Arc<dyn CalloutHandler>,
        registry: prometheus::Registry,
    ) -> Result<Instance, StartError> {
        let memory_limit = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let state = HostState::new(plugin, memory_limit, handler, registry);
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|state| state as &mut dyn wasmtime::ResourceLimiter);
        let deadline = crate::engine::deadline_ticks(limits.callback_deadline);
        let start_deadline = crate::engine::deadline_ticks(limits.start_deadline);
        store.set_epoch_deadline(deadline);
        store.epoch_deadline_trap();
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| StartError::Module(format!("{e:#}")))?;
        let memory = instance.get_memory(&mut store, "memory");
        // `malloc` first, as cpp-host looks it up (`src/wasm.cc` `getFunctions`: `malloc`, else
        // `proxy_on_memory_allocate`); the two differ in TinyGo builds of the Go SDK.
        let alloc = match typed::<i32, i32>(&instance, &mut store, "malloc")? {
            Some(alloc) => Some(alloc),
            None => typed::<i32, i32>(&instance, &mut store, "proxy_on_memory_allocate")?,
        };
        if memory.is_none() || alloc.is_none() {
            return Err(StartError::Module(
                "the module exports no memory or no allocator (proxy_on_memory_allocate or malloc)"
                    .into(),
            ));
        }
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc;
        store.data_mut().abi_0_1 = instance
            .get_func(&mut store, "proxy_abi_version_0_1_0")
            .is_some();
        let exports = Exports {
            context_create: typed(&instance, &mut store, "proxy_on_context_create")?,
            vm_start: typed(&instance, &mut store, "proxy_on_vm_start")?,
            configure: typed(&instance, &mut store, "proxy_on_configure")?,
            request_headers: headers_export(&instance, &mut store, "proxy_on_request_headers")?,
            request_body: typed(&instance, &mut store, "proxy_on_request_body")?,
            request_trailers: typed(&instance, &mut store, "proxy_on_request_trailers")?,
            response_headers: headers_export(&instance, &mut store, "proxy_on_response_headers")?,
            response_body: typed(&instance, &mut store, "proxy_on_response_body")?,
            response_trailers: typed(&instance, &mut store, "proxy_on_response_trailers")?,
            http_call_response: typed(&instance, &mut store, "proxy_on_http_call_response")?,
            grpc_receive: typed(&instance, &mut store, "proxy_on_grpc_receive")?,
            grpc_close: typed(&instance, &mut store, "proxy_on_grpc_close")?,
            grpc_initial_metadata: typed(
                &instance,
                &mut store,
                "proxy_on_grpc_receive_initial_metadata",
            )?,
            grpc_trailing_metadata: typed(
                &instance,
                &mut store,
                "proxy_on_grpc_receive_trailing_metadata",
            )?,
            log: typed(&instance, &mut store, "proxy_on_log")?,
            done: typed(&instance, &mut store, "proxy_on_done")?,
            delete: typed(&instance, &mut store, "proxy_on_delete")?,
            tick: typed(&instance, &mut store, "proxy_on_tick")?,
            queue_ready: typed(&instance, &mut store, "proxy_on_queue_ready")?,
        };
        // cpp-host `src/wasm.cc` `getFunctions` and `startVm`: a reactor (`_initialize`) runs
        // `_initialize`, then `main(0, 0)` or else `__main_void()`; a command (no `_initialize`)
        // runs `_start`. (Rust SDK 0.1.x filters set their root context in `_start`; so do
        // TinyGo builds of the Go SDK in `main`, reached through `_start`.)
        let initialize = typed::<(), ()>(&instance, &mut store, "_initialize")?;
        let entry = if initialize.is_some() {
            match typed::<(i32, i32), i32>(&instance, &mut store, "main")? {
                Some(main) => Entry::Main(main),
                None => typed::<(), i32>(&instance, &mut store, "__main_void")?
                    .map_or(Entry::None, Entry::MainVoid),
            }
        } else {
            typed::<(), ()>(&instance, &mut store, "_start")?.map_or(Entry::None, Entry::Start)
        };
        let mut me = Instance {
            store,
            exports,
            deadline,
            next_context: 2,
        };
        // cpp-host `startVm` restricts the hostcalls while the entry points run.
        me.store.data_mut().starting = true;
        let entered = (|| {
            if let Some(init) = initialize {
                guarded(&mut me.store, start_deadline, |store| init.call(store, ()))?;
            }
            match entry {
                Entry::Main(main) => {
                    guarded(&mut me.store, start_deadline, |store| {
                        main.call(store, (0, 0))
                    })?;
                }
                Entry::MainVoid(main) => {
                    guarded(&mut me.store, start_deadline, |store| main.call(store, ()))?;
                }
                Entry::Start(start) => {
                    guarded(&mut me.store, start_deadline, |store| start.call(store, ()))?;
                }
                Entry::None => {}
            }
            Ok::<_, Failure>(())
        })();
        me.store.data_mut().starting = false;
        let started = entered.and_then(|()| {
            me.store.data_mut().root_context = 1;
            me.store.data_mut().effective_context = 1;
            if let Some(create) = me.exports.context_create.as_ref() {
                me.store.data_mut().configuring = true;
                let created = guarded(&mut me.store, start_deadline, |store| {
                    create.call(store, (1, 0))
                });
                me.store.data_mut().configuring = false;
                created?;
            }
            Ok::<_, Failure>(())
        });
        started.map_err(|failure| StartError::Start(failure.to_string()))?;
        let vm_config = me.store.data().plugin.vm_config.len() as i32;
        if let Some(vm_start) = me.exports.vm_start.as_ref() {
            match guarded(&mut me.store, start_deadline, |store| {
                vm_start.call(store, (1, vm_config))
            }) {
                Ok(0) => return Err(StartError::Start(me.last_log("on_vm_start returned false"))),
                Ok(_) => {}
                Err(failure) => return Err(StartError::Start(failure.to_string())),
            }
        }
        let plugin_config = me.store.data().plugin.plugin_config.len() as i32;
        if let Some(configure) = me.exports.configure.as_ref() {
            me.store.data_mut().configuring = true;
            let configured = guarded(&mut me.store, start_deadline, |store| {
                configure.call(store, (1, plugin_config))
            });
            me.store.data_mut().configuring = false;
            match configured {
                Ok(0) => {
                    return Err(StartError::Configure(
                        me.last_log("on_configure returned false"),
                    ));
                }
                Ok(_) => {}
                Err(failure) => return Err(StartError::Configure(failure.to_string())),
            }
        }
        Ok(me)
    }

    fn last_log(&self, fallback: &str) -> String {
        self.store
            .data()
            .last_log
            .clone()
            .unwrap_or_else(|| fallback.to_owned())
    }

    /// Puts a stream's data in the store for a call on context `context`; `effective` is the
    /// context the call starts on (the stream's, or the root's for a callout response).
    pub fn install(&mut self, data: Option<Box<StreamData>>, context: u32, effective: u32) {
        let state = self.store.data_mut();
        state.stream = data;
        state.stream_context = context;
        state.effective_context = effective;
        state.actions = Actions::default();
    }

    /// Takes the stream's data, the actions and the callouts started back out of the store.
    pub fn uninstall(&mut self) -> (Option<Box<StreamData>>, Actions, Vec<NewCallout>) {
        let state = self.store.data_mut();
        state.stream_context = 0;
        state.effective_context = state.root_context;
        state.call_response = None;
        (
            state.stream.take(),
            std::mem::take(&mut state.actions),
            std::mem::take(&mut state.callouts),
        )
    }

    /// Creates a stream context.
    pub fn create_context(&mut self) -> Result<u32, Failure> {
        let context = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(2);
        self.store.data_mut().live_contexts.push(context);
        if let Some(create) = self.exports.context_create.as_ref() {
            guarded(&mut self.store, self.deadline, |store| {
                create.call(store, (context as i32, 1))
            })?;
        }
        Ok(context)
    }

    /// Runs a stream callback and returns the action (a missing callback continues).
    pub fn on_stream(
        &mut self,
        callback: Callback,
        context: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Result<i32, Failure> {
        let ctx = context as i32;
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        let eos = i32::from(end_of_stream);
        let action = match callback {
            Callback::RequestHeaders => {
                self.call_headers(|e: &Exports| e.request_headers.as_ref(), (ctx, size, eos))?
            }
            Callback::RequestBody => {
                self.call3(|e: &Exports| e.request_body.as_ref(), (ctx, size, eos))?
            }
            Callback::ResponseHeaders => {
                self.call_headers(|e: &Exports| e.response_headers.as_ref(), (ctx, size, eos))?
            }
            Callback::ResponseBody => {
                self.call3(|e: &Exports| e.response_body.as_ref(), (ctx, size, eos))?
            }
            Callback::RequestTrailers => match self.exports.request_trailers.as_ref() {
                Some(f) => guarded(&mut self.store, self.deadline, |store| {
                    f.call(store, (ctx, size))
                })?,
                None => action::CONTINUE,
            },
            Callback::ResponseTrailers => match self.exports.response_trailers.as_ref() {
                Some(f) => guarded(&mut self.store, self.deadline, |store| {
                    f.call(store, (ctx, size))
                })?,
                None => action::CONTINUE,
            },
        };
        Ok(action::normalize(callback, action))
    }

    fn call_headers(
        &mut self,
        which: fn(&Exports) -> Option<&Headers>,
        (ctx, size, eos): (i32, i32, i32),
    ) -> Result<i32, Failure> {
        match which(&self.exports) {
            Some(Headers::V2(f)) => guarded(&mut self.store, self.deadline, |store| {
                f.call(store, (ctx, size, eos))
            }),
            Some(Headers::V1(f)) => guarded(&mut self.store, self.deadline, |store| {
                f.call(store, (ctx, size))
            }),
            None => Ok(action::CONTINUE),
        }
    }

    fn call3(
        &mut self,
        which: fn(&Exports) -> Option<&A3>,
        args: (i32, i32, i32),
    ) -> Result<i32, Failure> {
        match which(&self.exports) {
            Some(f) => guarded(&mut self.store, self.deadline, |store| f.call(store, args)),
            None => Ok(action::CONTINUE),
        }
    }

    /// Delivers a callout's end to the root context: an http call's response, a gRPC call's
    /// message or status, or one event of a gRPC stream.
    pub fn on_callout(&mut self, token: u32, result: CalloutResult) -> Result<(), Failure> {
        self.on_root();
        match result {
            CalloutResult::Http(response) => self.on_http_call_response(token, response),
            CalloutResult::Grpc(outcome) => self.on_grpc(token, outcome),
            CalloutResult::GrpcStream(event) => self.on_grpc_stream(token, event),
        }
    }

    /// Whether gRPC stream `token` is still open here (not cancelled, not closed on both sides).
    pub fn has_grpc_stream(&self, token: u32) -> bool {
        self.store.data().grpc_streams.contains_key(&token)
    }

    /// One event of gRPC stream `token` to the root context, through the callback Envoy calls
    /// for it (`context.cc` `GrpcStreamClientHandler`, `onGrpcReceiveInitialMetadataWrapper`,
    /// `onGrpcReceiveWrapper`, `onGrpcReceiveTrailingMetadataWrapper`, `onGrpcCloseWrapper`),
    /// with its map, buffer or status readable meanwhile. A cancelled stream gets nothing. At
    /// the close the stream is marked remote-closed, and forgotten after the callback if the
    /// filter had closed its side (Envoy's `cleanup`).
    fn on_grpc_stream(&mut self, token: u32, event: StreamEvent) -> Result<(), Failure> {
        if !self.has_grpc_stream(token) {
            return Ok(());
        }
        let root = self.store.data().root_context as i32;
        let count = |len: usize| i32::try_from(len).unwrap_or(i32::MAX);
        let (export, argument) = {
            let state = self.store.data_mut();
            match event {
                StreamEvent::InitialMetadata(pairs) => {
                    let n = count(pairs.len());
                    state.grpc_metadata = Some((map::GRPC_RECEIVE_INITIAL_METADATA, pairs));
                    (self.exports.grpc_initial_metadata.as_ref(), n)
                }
                StreamEvent::Message(message) => {
                    let n = count(message.len());
                    state.grpc_message = Some(message);
                    (self.exports.grpc_receive.as_ref(), n)
                }
                StreamEvent::TrailingMetadata(pairs) => {
                    let n = count(pairs.len());
                    state.grpc_metadata = Some((map::GRPC_RECEIVE_TRAILING_METADATA, pairs));
                    (self.exports.grpc_trailing_metadata.as_ref(), n)
                }
                StreamEvent::Close(code, message) => {
                    if let Some(stream) = state.grpc_streams.get_mut(&token) {
                        stream.remote_closed = true;
                    }
                    state.call_status = Some((code, message));
                    (self.exports.grpc_close.as_ref(), code)
                }
            }
        };
        let result = match export {
            Some(f) => guarded(&mut self.store, self.deadline, |store| {
                f.call(store, (root, token as i32, argument))
            }),
            None => Ok(()),
        };
        let state = self.store.data_mut();
        state.grpc_message = None;
        state.grpc_metadata = None;
        state.call_status = None;
        if state
            .grpc_streams
            .get(&token)
            .is_some_and(|stream| stream.remote_closed && stream.local_closed)
        {
            state.grpc_streams.remove(&token);
        }
        result
    }

    /// A unary gRPC call's end: its message through `on_grpc_receive` (buffer 5), any other
    /// status through `on_grpc_close`, with `proxy_get_status` answering it meanwhile (Envoy
    /// `context.cc` `onGrpcReceive`, `onGrpcClose`).
    fn on_grpc(&mut self, token: u32, outcome: GrpcOutcome) -> Result<(), Failure> {
        // A cancelled call gets nothing (Envoy `context.cc` `grpcCancel`: erased).
        if self.store.data_mut().grpc_calls.remove(&token).is_none() {
            return Ok(());
        }
        let root = self.store.data().root_context as i32;
        let token = token as i32;
        let result = match outcome {
            GrpcOutcome::Message(message) => {
                let size = i32::try_from(message.len()).unwrap_or(i32::MAX);
                self.store.data_mut().grpc_message = Some(message);
                match self.exports.grpc_receive.as_ref() {
                    Some(f) => guarded(&mut self.store, self.deadline, |store| {
                        f.call(store, (root, token, size))
                    }),
                    None => Ok(()),
                }
            }
            GrpcOutcome::Closed(code, message) => {
                let code = i32::try_from(code).unwrap_or(i32::MAX);
                self.store.data_mut().call_status = Some((code, message));
                match self.exports.grpc_close.as_ref() {
                    Some(f) => guarded(&mut self.store, self.deadline, |store| {
                        f.call(store, (root, token, code))
                    }),
                    None => Ok(()),
                }
            }
        };
        let state = self.store.data_mut();
        state.grpc_message = None;
        state.call_status = None;
        result
    }

    /// Delivers an http-call response to the root context (a failed call has no headers).
    fn on_http_call_response(
        &mut self,
        token: u32,
        response: Option<http::Response<bytes::Bytes>>,
    ) -> Result<(), Failure> {
        // Envoy `context.cc` `onHttpCallFailure`: a reset is (BrokenConnection, "reset") for
        // `proxy_get_status` while its response callback runs, and there is no response (its
        // maps are `BadArgument`, its body `NotFound`).
        let delivered = match response {
            Some(response) => {
                let (mut parts, body) = response.into_parts();
                let trailers =
                    parts
                        .extensions
                        .remove::<CallTrailers>()
                        .map(|CallTrailers(map)| {
                            map.iter()
                                .map(|(name, value)| {
                                    (name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec())
                                })
                                .collect()
                        });
                let mut headers = Vec::with_capacity(parts.headers.len() + 1);
                headers.push((
                    b":status".to_vec(),
                    parts.status.as_str().as_bytes().to_vec(),
                ));
                for (name, value) in &parts.headers {
                    headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
                }
                Some(CallResponse {
                    headers,
                    body,
                    trailers,
                })
            }
            None => None,
        };
        // Envoy `context.cc` `onHttpCallSuccess`: `headerSize(response->trailers())`, 0 without.
        let counts = delivered.as_ref().map_or((0, 0, 0), |d| {
            let trailers = d.trailers.as_ref().map_or(0, Vec::len);
            (d.headers.len() as i32, d.body.len() as i32, trailers as i32)
        });
        let state = self.store.data_mut();
        state.call_status = delivered
            .is_none()
            .then(|| (crate::abi::status::BROKEN_CONNECTION, "reset".to_owned()));
        state.call_response = delivered;
        let root = self.store.data().root_context as i32;
        let result = match self.exports.http_call_response.as_ref() {
            Some(f) => guarded(&mut self.store, self.deadline, |store| {
                f.call(store, (root, token as i32, counts.0, counts.1, counts.2))
            }),
            None => Ok(()),
        };
        self.store.data_mut().call_response = None;
        self.store.data_mut().call_status = None;
        result
    }

    /// `on_log`, `on_done`, `on_delete` for a finished stream context.
    pub fn close_context(&mut self, context: u32) -> Result<(), Failure> {
        let ctx = context as i32;
        let result = (|| {
            if let Some(f) = self.exports.log.as_ref() {
                guarded(&mut self.store, self.deadline, |store| f.call(store, ctx))?;
            }
            if let Some(f) = self.exports.done.as_ref() {
                guarded(&mut self.store, self.deadline, |store| f.call(store, ctx))?;
            }
            if let Some(f) = self.exports.delete.as_ref() {
                guarded(&mut self.store, self.deadline, |store| f.call(store, ctx))?;
            }
            Ok(())
        })();
        let state = self.store.data_mut();
        state.live_contexts.retain(|c| *c != context);
        state.remote.retain(|remote| remote.context != context);
        state.stream_declared.retain(|(c, _)| *c != context);
        result
    }

    /// `on_done` on the root context: the instance is being let go (its chain was replaced by
    /// a reload, or keel stops), as cpp-host's `WasmBase::startShutdown` begins (`src/wasm.cc`).
    /// `false` when the root answered "not done yet": it calls `proxy_done` later, and until
    /// then its callouts are delivered (`crate::ticker::drain`).
    pub fn root_done(&mut self) -> Result<bool, Failure> {
        self.on_root();
        let root = self.store.data().root_context as i32;
        let done = match self.exports.done.as_ref() {
            Some(f) => guarded(&mut self.store, self.deadline, |store| f.call(store, root))? != 0,
            None => true,
        };
        self.store.data_mut().done_pending = !done;
        Ok(done)
    }

    /// Whether the root still owes its `proxy_done`.
    pub fn done_pending(&self) -> bool {
        self.store.data().done_pending
    }

    /// The callouts the root context started (in `on_configure`, `on_tick`, `on_done`, a
    /// callout's response) and not yet sent.
    pub fn take_callouts(&mut self) -> Vec<NewCallout> {
        std::mem::take(&mut self.store.data_mut().callouts)
    }

    /// `on_delete` on the root context: the last call an instance gets.
    pub fn root_delete(&mut self) -> Result<(), Failure> {
        self.on_root();
        let root = self.store.data().root_context as i32;
        if let Some(f) = self.exports.delete.as_ref() {
            guarded(&mut self.store, self.deadline, |store| f.call(store, root))?;
        }
        Ok(())
    }

    /// Makes the root context effective for a root callback: cpp-host starts every callback on
    /// its own context (`include/proxy-wasm/wasm.h` `SaveRestoreContext` clears
    /// `effective_context_id_`), where a previous callback may have left another stream
    /// effective.
    fn on_root(&mut self) {
        let state = self.store.data_mut();
        state.effective_context = state.root_context;
    }

    /// `on_tick` on the root context.
    pub fn on_tick(&mut self) -> Result<(), Failure> {
        self.on_root();
        match self.exports.tick.as_ref() {
            Some(f) => guarded(&mut self.store, self.deadline, |store| f.call(store, 1)),
            None => Ok(()),
        }
    }

    /// `on_queue_ready` on the root context.
    pub fn on_queue_ready(&mut self, queue: u32) -> Result<(), Failure> {
        self.on_root();
        match self.exports.queue_ready.as_ref() {
            Some(f) => guarded(&mut self.store, self.deadline, |store| {
                f.call(store, (1, queue as i32))
            }),
            None => Ok(()),
        }
    }

    /// The size of the instance's linear memory.
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }
}
