//! The lifecycle as Envoy's: a chain starts (on_vm_start, on_configure), refuses a configuration
//! with the filter's own message, rejects files that are not proxy-wasm modules, and runs a
//! stream through every callback.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use keel_wasm::{ChainError, FilterChain, HeadersVerdict};
use wasm_tests::{chain, info, request, response, spec};

#[tokio::test]
async fn a_noop_chain_continues_every_phase() {
    let (chain, _registry) = chain(vec![spec("noop", "test_noop", "")]);
    assert!(!chain.is_empty());
    let mut stream = chain.stream(info());
    let mut req = request("/a?b=1", &[("cookie", "x=1")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(req.uri, "/a?b=1");
    assert_eq!(req.headers["cookie"], "x=1");
    let mut res = response(200, &[("content-type", "text/plain")]);
    assert_eq!(
        stream.response_headers(&mut res, None, false).await,
        HeadersVerdict::Continue
    );
    assert_eq!(res.status, 200);
    stream.finish();
    let memory = chain.memory_per_instance();
    assert_eq!(memory.len(), 1);
    assert!(memory[0].1 >= 64 << 10, "{memory:?}");
}

/// While a module starts, Envoy's V8 runtime traps every hostcall but logging, output,
/// arguments, environment, clocks, randomness and the WASI stubs (proxy-wasm-cpp-host
/// `src/wasm.cc` `WasmBase::startVm` `setRestrictedCallback`; `src/v8/v8.cc`:
/// `trap("restricted_callback")`): the SDK 0.1.x filter's `_start` logs, reads the clock and
/// its environment and starts; defining a metric there fails its start, naming the hostcall.
#[test]
fn a_hostcall_cpp_host_restricts_fails_the_start_naming_it() {
    let registry = prometheus::Registry::new();
    let callouts = std::sync::Arc::new(keel_wasm::NoCallouts);
    let allowed = spec("legacy", "test_legacy", "c");
    assert!(FilterChain::new(vec![allowed], 1, &registry, callouts.clone()).is_ok());
    let mut restricted = spec("legacy", "test_legacy", "c");
    restricted.env = vec![("LEGACY_START_HOSTCALL".into(), "define_metric".into())];
    let error = FilterChain::new(vec![restricted], 1, &registry, callouts).unwrap_err();
    match &error {
        ChainError::Start { filter, reason } => {
            assert_eq!(filter, "legacy");
            assert!(reason.contains("proxy_define_metric"), "{reason}");
            assert!(reason.contains("restricted_callback"), "{reason}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn on_configure_false_names_the_filter_and_its_message() {
    let registry = prometheus::Registry::new();
    let error = FilterChain::new(
        vec![spec("picky", "test_probe", "reject")],
        2,
        &registry,
        std::sync::Arc::new(keel_wasm::NoCallouts),
    )
    .unwrap_err();
    match &error {
        ChainError::Configure { filter, message } => {
            assert_eq!(filter, "picky");
            assert!(message.contains("field `mode` is reject"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains("picky"));
}

#[test]
fn a_missing_file_and_a_non_proxy_wasm_module_are_refused() {
    let registry = prometheus::Registry::new();
    let callouts = std::sync::Arc::new(keel_wasm::NoCallouts);
    let mut missing = spec("ghost", "test_noop", "");
    missing.wasm = "/nonexistent/ghost.wasm".into();
    let error = FilterChain::new(vec![missing], 1, &registry, callouts.clone()).unwrap_err();
    assert!(matches!(error, ChainError::Read { .. }), "{error}");

    let dir = std::env::temp_dir().join(format!("keel-wasm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A valid wasm module (magic, version, nothing else) that is not a proxy-wasm filter.
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]).unwrap();
    let mut not_proxy = spec("empty", "test_noop", "");
    not_proxy.wasm = empty;
    let error = FilterChain::new(vec![not_proxy], 1, &registry, callouts.clone()).unwrap_err();
    assert!(
        error.to_string().contains("not a proxy-wasm module"),
        "{error}"
    );

    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let mut bad = spec("garbage", "test_noop", "");
    bad.wasm = garbage;
    let error = FilterChain::new(vec![bad], 1, &registry, callouts).unwrap_err();
    assert!(matches!(error, ChainError::Module { .. }), "{error}");
}

#[tokio::test]
async fn many_streams_in_turn_reuse_one_instance() {
    let (chain, _registry) = chain(vec![spec("noop", "test_noop", "")]);
    for n in 0..200 {
        let mut stream = chain.stream(info());
        let mut req = request(&format!("/n/{n}"), &[]);
        assert_eq!(
            stream.request_headers(&mut req, true).await,
            HeadersVerdict::Continue
        );
        drop(stream);
    }
}

/// The imports keel provides are exactly those stock Envoy links (helper A's list, taken from
/// cpp-host `exports.h` and `wasm.cc`), plus the four 0.1.0-only functions Envoy links into
/// 0.1.0 modules (keel refuses them in 0.2 modules at load, see `check_abi`).
#[test]
fn keel_provides_exactly_the_imports_envoy_provides() {
    let list = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/envoy-abi-imports.txt"
    ))
    .unwrap();
    let mut envoy: Vec<(String, String)> = list
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (module, name) = line.split_once(' ').unwrap();
            (module.to_owned(), name.trim().to_owned())
        })
        .collect();
    for only_0_1 in [
        "proxy_get_configuration",
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
    ] {
        envoy.push(("env".to_owned(), only_0_1.to_owned()));
    }
    envoy.sort();
    assert_eq!(keel_wasm::provided_imports(), envoy);
}

fn send_sync<T: Send + Sync>(_: &T) {}
fn send<T: Send>(_: &T) {}

/// keel runs streams on a multi-threaded tokio runtime: the chain is shared, streams and the
/// futures of their methods move between threads.
#[tokio::test]
async fn the_chain_is_send_and_sync_and_stream_futures_are_send() {
    let (chain, _registry) = chain(vec![spec("noop", "test_noop", "")]);
    send_sync(&chain);
    let mut stream = chain.stream(info());
    send(&stream);
    let mut req = request("/", &[]);
    let future = stream.request_headers(&mut req, true);
    send(&future);
    assert_eq!(future.await, HeadersVerdict::Continue);
}

/// Each worker thread gets its own instance; streams opened on two workers run side by side.
#[test]
fn workers_have_their_own_instances() {
    let registry = prometheus::Registry::new();
    let chain = std::sync::Arc::new(
        FilterChain::new(
            vec![spec("noop", "test_noop", "")],
            2,
            &registry,
            std::sync::Arc::new(keel_wasm::NoCallouts),
        )
        .unwrap(),
    );
    let handles: Vec<_> = (0..2)
        .map(|worker| {
            let chain = chain.clone();
            std::thread::spawn(move || {
                keel_wasm::set_worker_index(worker);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for _ in 0..50 {
                        let mut stream = chain.stream(info());
                        let mut req = request("/", &[]);
                        assert_eq!(
                            stream.request_headers(&mut req, true).await,
                            HeadersVerdict::Continue
                        );
                    }
                });
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

/// When a chain is let go (a reload replaced it, or keel stops) and its last stream has ended,
/// every instance's root context gets `on_done` and `on_delete`, as cpp-host's
/// `WasmBase::startShutdown` calls them (`src/wasm.cc`): a filter that batches in its root
/// context can flush. Not before the last stream ends.
#[tokio::test]
async fn a_chain_let_go_calls_the_root_on_done_of_every_instance() {
    let registry = prometheus::Registry::new();
    let chain = FilterChain::new(
        vec![spec("probe", "test_probe", "root_done")],
        2,
        &registry,
        std::sync::Arc::new(keel_wasm::NoCallouts),
    )
    .unwrap();
    let done = |registry: &prometheus::Registry| {
        wasm_tests::metric(registry, "keel_wasmcustom_probe_root_done", &[]).unwrap_or(0.0)
    };
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    drop(chain);
    assert_eq!(done(&registry), 0.0, "a stream still runs on the chain");
    stream.finish();
    assert_eq!(done(&registry), 2.0, "one on_done per worker's instance");
}

/// A root whose `on_done` answers "not yet" is kept until it calls `proxy_done`, and the
/// callout it sent meanwhile (its batch) is sent and answered, as cpp-host keeps a VM pending
/// done (`src/wasm.cc` `WasmBase::startShutdown`, `WasmBase::done`). `proxy_done` answers
/// `NotFound` when no root waits (`probe.done_early`), `Ok` when one does (`probe.flushed`).
#[tokio::test]
async fn a_root_not_done_is_kept_until_proxy_done_and_its_callouts_are_sent() {
    let registry = prometheus::Registry::new();
    let callouts = std::sync::Arc::new(wasm_tests::ScriptedCallouts::default());
    callouts.answer(
        "flush",
        wasm_tests::Answer::Reply(200, "ok", std::time::Duration::from_millis(20)),
    );
    let chain = FilterChain::new(
        vec![spec("flusher", "test_probe", "root_flush")],
        1,
        &registry,
        callouts.clone(),
    )
    .unwrap();
    assert_eq!(
        wasm_tests::metric(&registry, "keel_wasmcustom_probe_done_early", &[]),
        Some(1.0),
        "proxy_done with no root waiting is NotFound"
    );
    drop(chain);
    let flushed = wasm_tests::eventually(async || {
        wasm_tests::metric(&registry, "keel_wasmcustom_probe_flushed", &[]).is_some()
    })
    .await;
    assert!(flushed, "the root's batch was not answered after on_done");
    assert_eq!(callouts.completed(), ["/flush?id=flush"]);
    assert_eq!(
        wasm_tests::metric(&registry, "keel_wasmcustom_probe_flushed", &[]),
        Some(0.0),
        "proxy_done while the root waits is Ok"
    );
}
