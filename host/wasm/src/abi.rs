//! The numbers of proxy-wasm ABI 0.2.1 (spec `abi-versions/v0.2.1`, cpp-host `wasm_result.h`,
//! SDK `src/types.rs`) and of WASI preview1 errno values the host returns.

/// `proxy_result_t` values.
pub(crate) mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const SERIALIZATION_FAILURE: i32 = 3;
    pub const PARSE_FAILURE: i32 = 4;
    pub const BROKEN_CONNECTION: i32 = 11;
}

/// Buffer types.
pub(crate) mod buffer {
    pub const REQUEST_BODY: i32 = 0;
    pub const RESPONSE_BODY: i32 = 1;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const GRPC_RECEIVE_BUFFER: i32 = 5;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

/// Header map types.
pub(crate) mod map {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const GRPC_RECEIVE_INITIAL_METADATA: i32 = 4;
    pub const GRPC_RECEIVE_TRAILING_METADATA: i32 = 5;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
    /// cpp-host `WasmHeaderMapType::MAX`: a larger type is `BadArgument`.
    pub const MAX: u32 = 7;
}

/// Stream types (`proxy_continue_stream`, `proxy_close_stream`).
pub(crate) mod stream_type {
    pub const REQUEST: i32 = 0;
    pub const RESPONSE: i32 = 1;
}

/// Actions a stream callback returns.
pub(crate) mod action {
    use crate::instance::Callback;

    pub const CONTINUE: i32 = 0;
    pub const PAUSE: i32 = 1;

    /// What keel makes of the value a stream callback returned, as Envoy maps it (cpp-host
    /// `src/context.cc` `convertVmCallResultToFilter{Headers,Data,Trailers}Status`, the value
    /// taken as unsigned, then Envoy `context.cc` `convertFilter*Status`):
    /// * headers: 0 Continue, 2 ContinueAndEndStream (Envoy's switch has no case for it: Continue);
    ///   1 StopIteration (StopAllIterationAndWatermark without `allow_on_headers_stop_iteration`),
    ///   3 StopAllIterationAndBuffer, 4 and above StopAllIterationAndWatermark: keel pauses;
    /// * body: 0 Continue; 1 StopIterationAndBuffer, 2 StopIterationAndWatermark, 3 and above
    ///   StopIterationNoBuffer: keel pauses (and buffers, also for NoBuffer);
    /// * trailers: 0 Continue, anything else StopIteration: keel pauses.
    pub fn normalize(callback: Callback, value: i32) -> i32 {
        let headers = matches!(
            callback,
            Callback::RequestHeaders | Callback::ResponseHeaders
        );
        match value {
            CONTINUE => CONTINUE,
            2 if headers => CONTINUE,
            _ => PAUSE,
        }
    }
}

/// Metric types.
pub(crate) mod metric {
    pub const COUNTER: i32 = 0;
    pub const GAUGE: i32 = 1;
    pub const HISTOGRAM: i32 = 2;
}

/// WASI preview1 errno values.
pub(crate) mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOTDIR: i32 = 20;
    pub const NOENT: i32 = 44;
    pub const NOSYS: i32 = 52;
    pub const NOTSUP: i32 = 58;
}

/// cpp-host `limits.h`: the most a serialized header map may be.
pub(crate) const MAX_PAIRS_BYTES: usize = 1 << 20;
/// cpp-host `limits.h`: the most entries a serialized header map may have.
pub(crate) const MAX_PAIRS_COUNT: usize = 1024;
/// cpp-host `limits.h`: the most bytes one `random_get` may ask for.
pub(crate) const MAX_RANDOM_BYTES: usize = 64 << 10;
