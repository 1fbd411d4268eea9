//! The pure logic of keel's proxy-wasm filters.
//!
//! Everything here builds and tests natively and knows nothing of proxy-wasm: the filter crates
//! (`filters/sticky`, `filters/route-suffix`) are thin adapters around it.
