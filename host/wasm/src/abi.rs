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
    pub const INTERNAL_FAILURE: i32 = 10;
}

/// Buffer types.
pub(crate) mod buffer {
    pub const REQUEST_BODY: i32 = 0;
    pub const RESPONSE_BODY: i32 = 1;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

/// Header map types.
pub(crate) mod map {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// Stream types (`proxy_continue_stream`, `proxy_close_stream`).
pub(crate) mod stream_type {
    pub const REQUEST: i32 = 0;
    pub const RESPONSE: i32 = 1;
}

/// Actions a stream callback returns.
pub(crate) mod action {
    pub const CONTINUE: i32 = 0;
    pub const PAUSE: i32 = 1;
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
    pub const NOENT: i32 = 44;
    pub const NOSYS: i32 = 52;
}

/// cpp-host `limits.h`: the most a serialized header map may be.
pub(crate) const MAX_PAIRS_BYTES: usize = 1 << 20;
/// cpp-host `limits.h`: the most entries a serialized header map may have.
pub(crate) const MAX_PAIRS_COUNT: usize = 1024;
/// cpp-host `limits.h`: the most bytes one `random_get` may ask for.
pub(crate) const MAX_RANDOM_BYTES: usize = 64 << 10;
