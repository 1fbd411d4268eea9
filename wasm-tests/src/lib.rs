//! Helpers shared by the tests that load the built `.wasm` filters (see `tests/`).
