//! A filter written in AssemblyScript against the npm package `@solo-io/proxy-runtime`
//! (`wasm-tests/filters/assemblyscript`, built by `cargo xtask build-wasm` with `npm ci` and
//! `asc`), doing what the proxy-wasm Rust SDK's examples do — header rewriting (`http_headers`,
//! `http_config`), a local reply, body rewriting (`http_body`), an auth callout with pause and
//! resume (`http_auth_random`), a shared queue — and answered as Envoy answers it. The module is
//! a reactor with no `_initialize` or `_start` (its top-level code is the wasm start function),
//! exports `malloc` instead of `proxy_on_memory_allocate`, and speaks ABI 0.2.0.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keel_wasm::{BodyVerdict, FilterSpec, HeadersVerdict, LocalResponse};
use wasm_tests::{
    Answer, ScriptedCallouts, chain, chain_with, eventually, header, info, request, response,
};

/// The filter with the root id it registers (`ROOT_ID` in its source): the SDK picks the root
/// context by the `plugin_root_id` property, as in Envoy. Its queue lives in vm `vm_id`.
fn filter_in(vm_id: &str, config: &str) -> FilterSpec {
    let mut spec = wasm_tests::spec("assemblyscript", "test_assemblyscript", config);
    spec.root_id = "assemblyscript_root".into();
    spec.vm_id = vm_id.into();
    spec
}

/// [`filter_in`] the vm every test but the queue's shares.
fn filter(config: &str) -> FilterSpec {
    filter_in("assemblyscript_vm", config)
}

/// The values of `name` in a local reply, in order.
fn values(local: &LocalResponse, name: &str) -> Vec<String> {
    local
        .headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .collect()
}

/// Header rewriting as Envoy's `context.cc` does it (`addHeaderMapValue` appends,
/// `replaceHeaderMapValue` sets, `removeHeaderMapValue` removes every value), with the plugin
/// configuration the SDK read in `onConfigure` (`PluginConfiguration` buffer, cpp-host
/// `src/context.cc` `ContextBase::onConfigure`).
#[tokio::test]
async fn request_headers_are_rewritten_with_the_plugin_configuration() {
    let (chain, _registry) = chain(vec![filter("from-config")]);
    let mut stream = chain.stream(info());
    let mut req = request(
        "/headers",
        &[("x-as-replace", "old"), ("x-as-remove", "gone")],
    );
    req.headers
        .append("x-as-remove", "gone too".parse().unwrap());
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-as-config"), "from-config");
    assert_eq!(header(&req.headers, "x-as-replace"), "replaced");
    assert!(
        !req.headers.contains_key("x-as-remove"),
        "{:?}",
        req.headers
    );
    let mut res = response(201, &[("content-length", "5")]);
    assert_eq!(
        stream.response_headers(&mut res, None, false).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&res.headers, "x-as-status"), "201");
    assert!(!res.headers.contains_key("content-length"));
    stream.finish();
}

/// The Rust SDK's `http_headers` example answers `/hello` itself, and its README shows Envoy
/// logging that reply in the same filter's response headers callback (`<- :status: 200`,
/// `hello: World`, `powered-by: proxy-wasm`, `content-type: text/plain`): Envoy sends a local
/// reply through the encoder filter chain (`source/common/http/filter_manager.cc`
/// `sendLocalReplyViaFilterChain`), and a reply with a body is `text/plain`
/// (`source/common/http/utility.cc` `sendLocalReply`). The gRPC status the SDK passes
/// (`InvalidCode`, -1) does not matter for an HTTP request (Envoy `context.cc`
/// `sendLocalResponse` hands it to `sendLocalReply`, which uses it for gRPC requests only).
#[tokio::test]
async fn a_local_reply_passes_through_the_filters_own_response_callback() {
    let (chain, _registry) = chain(vec![filter("c")]);
    let mut stream = chain.stream(info());
    let mut req = request("/hello", &[]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 200);
            assert_eq!(&local.body[..], b"Hello, World!\n");
            assert_eq!(values(&local, "hello"), ["World"]);
            assert_eq!(values(&local, "powered-by"), ["proxy-wasm"]);
            assert_eq!(values(&local, "content-type"), ["text/plain"]);
            assert_eq!(values(&local, "x-as-status"), ["200"], "{local:?}");
        }
        other => panic!("expected the local reply, got {other:?}"),
    }
    stream.finish();
}

/// The `http_body` pattern: `StopIterationAndBuffer` until the end of the stream, then the whole
/// body is the filter's to read and replace (Envoy `context.cc` `encodeData` and `getBuffer`
/// give the buffered `encodingBuffer()` while the filter buffers; the example's README shows the
/// 50-byte secret body redacted whole).
#[tokio::test]
async fn a_buffered_response_body_is_redacted_whole() {
    let (chain, _registry) = chain(vec![filter("c")]);
    let mut stream = chain.stream(info());
    let mut req = request("/secret", &[]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    let mut res = response(200, &[("content-length", "29")]);
    assert_eq!(
        stream.response_headers(&mut res, None, false).await,
        HeadersVerdict::Continue
    );
    assert!(!res.headers.contains_key("content-length"));
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"this is a "), false)
            .await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"secret message\n"), false)
            .await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"bye\n"), true)
            .await,
        BodyVerdict::Forward(Bytes::from_static(
            b"Original message body (29 bytes) redacted.\n"
        ))
    );
    stream.finish();
}

/// A body without the secret is passed on as it came, once whole.
#[tokio::test]
async fn a_body_without_the_secret_is_passed_on_unchanged() {
    let (chain, _registry) = chain(vec![filter("c")]);
    let mut stream = chain.stream(info());
    let mut req = request("/hello-body", &[]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    let mut res = response(200, &[]);
    assert_eq!(
        stream.response_headers(&mut res, None, false).await,
        HeadersVerdict::Continue
    );
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"Everyone may "), false)
            .await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream
            .response_body(Bytes::from_static(b"read this.\n"), true)
            .await,
        BodyVerdict::Forward(Bytes::from_static(b"Everyone may read this.\n"))
    );
    stream.finish();
}

/// The `http_auth_random` pattern: `proxy_http_call` then `StopIteration`; the answer comes to
/// the root context (`proxy_on_http_call_response` on the root id, cpp-host `src/context.cc`
/// `ContextBase::onHttpCallResponse`), the SDK makes the stream effective
/// (`proxy_set_effective_context`) and resumes it with `proxy_continue_stream` (Envoy
/// `context.cc` `continueStream` → `continueDecoding`), the header it added on the way going up.
#[tokio::test]
async fn an_auth_callout_pauses_the_request_and_a_200_resumes_it() {
    let callouts = Arc::new(ScriptedCallouts::default());
    callouts.answer("alice", Answer::Reply(200, "", Duration::from_millis(10)));
    let (chain, _registry) = chain_with(vec![filter("c")], callouts.clone());
    let mut stream = chain.stream(info());
    let mut req = request("/headers", &[("x-as-auth", "alice")]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-as-auth-status"), "200");
    assert_eq!(callouts.completed(), ["/auth?id=alice"]);
    stream.finish();
}

/// A denied callout answers 403 from the callout callback: the paused request never goes up and
/// the reply, like the `http_headers` one, passes the filter's response callback.
#[tokio::test]
async fn an_auth_callout_that_denies_answers_403() {
    let callouts = Arc::new(ScriptedCallouts::default());
    callouts.answer("mallory", Answer::Reply(401, "", Duration::from_millis(10)));
    let (chain, _registry) = chain_with(vec![filter("c")], callouts.clone());
    let mut stream = chain.stream(info());
    let mut req = request("/headers", &[("x-as-auth", "mallory")]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 403);
            assert_eq!(&local.body[..], b"Access forbidden.\n");
            assert_eq!(values(&local, "powered-by"), ["proxy-wasm"]);
            assert_eq!(values(&local, "x-as-status"), ["403"]);
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    assert!(!req.headers.contains_key("x-as-auth-status"));
    stream.finish();
}

/// A callout that fails reaches the callback with no headers (cpp-host `onHttpCallResponse`
/// with 0 headers; Envoy `context.cc` `onHttpCallFailure`), which the SDK passes on as
/// `headers == 0`: the filter denies.
#[tokio::test]
async fn a_failed_auth_callout_is_delivered_without_headers() {
    let callouts = Arc::new(ScriptedCallouts::default());
    callouts.answer("bob", Answer::Fail(Duration::from_millis(10)));
    let (chain, _registry) = chain_with(vec![filter("c")], callouts.clone());
    let mut stream = chain.stream(info());
    let mut req = request("/headers", &[("x-as-auth", "bob")]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => assert_eq!(local.status, 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    stream.finish();
}

/// A callout to an upstream keel does not have fails at once: Envoy `context.cc` `httpCall`
/// answers `BadArgument` for an unknown cluster, which the filter turns into its 500 with the
/// status in the body (`WasmResult::BadArgument` is 2).
#[tokio::test]
async fn a_callout_to_no_upstream_is_refused_with_bad_argument() {
    let (chain, _registry) = chain(vec![filter("c")]);
    let mut stream = chain.stream(info());
    let mut req = request("/headers", &[("x-as-auth", "anyone")]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 500);
            assert_eq!(&local.body[..], b"callout failed: 2\n");
        }
        other => panic!("expected a 500, got {other:?}"),
    }
    stream.finish();
}

/// A shared queue: the root context registers it in `onConfigure`, a stream resolves it by vm id
/// and enqueues, and `proxy_on_queue_ready` reaches the registering root context once per item
/// (cpp-host `src/shared_queue.cc` `SharedQueue::enqueue` posts one `onQueueReady` per enqueue),
/// which dequeues it, in order; the next request sees what was dequeued.
#[tokio::test]
async fn a_shared_queue_delivers_each_item_to_the_registering_root_context() {
    // A vm of its own: queues are process-wide by vm id, and the last instance to register one
    // gets its items (cpp-host `registerQueue`), here another test's.
    let (chain, _registry) = chain(vec![filter_in("assemblyscript_queue_vm", "c")]);
    for item in ["one", "two"] {
        let mut stream = chain.stream(info());
        let mut req = request("/", &[("x-as-enqueue", item)]);
        assert_eq!(
            stream.request_headers(&mut req, true).await,
            HeadersVerdict::Continue
        );
        assert_eq!(header(&req.headers, "x-as-enqueued"), "0", "WasmResult::Ok");
        stream.finish();
    }
    let dequeued = eventually(async || {
        let mut stream = chain.stream(info());
        let mut req = request("/", &[]);
        stream.request_headers(&mut req, true).await;
        header(&req.headers, "x-as-dequeued") == "one,two"
    })
    .await;
    assert!(
        dequeued,
        "on_queue_ready did not dequeue both items, in order"
    );
}
