//! The pure logic of keel's proxy-wasm filters.
//!
//! Everything here builds and tests natively and knows nothing of proxy-wasm: the filter crates
//! (`filters/sticky`, `filters/route-suffix`, `filters/session`) are thin adapters around it. Client data is read as
//! bytes (`&[u8]`): a header value is not necessarily UTF-8, and nothing here panics on any input.
//!
//! * [`syntax`]: whitespace, tokens, quotes.
//! * [`cookie`]: the request `Cookie` header. [`set_cookie`]: a response `Set-Cookie`, rewritten
//!   byte for byte. [`new_cookie`]: a `Set-Cookie` built from configured attributes.
//! * [`path_param`]: `;jsessionid=` path parameters. [`session_id`]: `<id>[-<node>][.<route>]`.
//! * [`lookup`]: where a request's session id is. [`config`]: the filters' plugin configuration.
//! * [`sticky`], [`route_suffix`] and [`session`]: the filters' decisions.
//! * [`base64`] (the Envoy host encoding) and [`fingerprint`] (ids in log lines).

pub mod base64;
pub mod config;
pub mod cookie;
pub mod fingerprint;
pub mod lookup;
pub mod new_cookie;
pub mod path_param;
pub mod route_suffix;
pub mod session;
pub mod session_id;
pub mod set_cookie;
pub mod sticky;
pub mod syntax;
