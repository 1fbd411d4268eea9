//! keel's host: the proxy-wasm runtime on wasmtime, the HTTP front end, the balancer and the
//! upstreams (AJP/1.3 and HTTP).
