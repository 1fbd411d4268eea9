//! Each host function through the probe filter: header maps, properties, filter state, metrics,
//! shared data with CAS, time, local responses, body buffering, WASI, foreign functions and
//! gRPC, timers and queues — and bad guest pointers answered with `InvalidMemoryAccess`.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use keel_wasm::{BodyVerdict, FilterChain, HeadersVerdict, TrailersVerdict, UpstreamInfo};
use wasm_tests::{
    chain, continued_get, eventually, header, info, local_header, metric, request, response, spec,
};

#[tokio::test]
async fn header_maps_properties_metrics_and_shared_data() {
    let (chain, registry) = chain(vec![spec("probe", "test_probe", "headers")]);
    let mut stream = chain.stream(info());
    let mut req = request(
        "/app/x;jsessionid=abc?q=1",
        &[
            ("x-replace", "old"),
            ("x-remove", "gone"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("content-length", "12"),
        ],
    );
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    let h = &req.headers;
    // :authority, :path, :method, :scheme + x-replace, x-remove, x-multi ×2, content-length (host
    // is :authority).
    assert_eq!(header(h, "x-probe-count"), "9/9");
    assert_eq!(header(h, "x-probe-path"), "/app/x;jsessionid=abc?q=1");
    assert_eq!(header(h, "x-replace"), "new");
    assert!(!h.contains_key("x-remove"));
    assert_eq!(header(h, "host"), "keel.test");
    assert_eq!(header(h, "x-prop-source"), "127.0.0.1:40000");
    assert_eq!(header(h, "x-prop-source-port"), "40000");
    assert_eq!(header(h, "x-prop-destination"), "127.0.0.1:8080");
    assert_eq!(header(h, "x-prop-method"), "GET");
    assert_eq!(header(h, "x-prop-host"), "keel.test");
    assert_eq!(header(h, "x-prop-url-path"), "/app/x;jsessionid=abc");
    assert_eq!(header(h, "x-prop-protocol"), "HTTP/1.1");
    assert_eq!(header(h, "x-prop-route"), "default_route");
    assert_eq!(header(h, "x-prop-cluster"), "tomcats");
    assert_eq!(header(h, "x-prop-plugin"), "probe");
    assert_eq!(header(h, "x-prop-root-id"), "probe_root");
    assert_eq!(header(h, "x-prop-vm-id"), "probe_vm");
    assert_eq!(header(h, "x-prop-missing"), "-");
    // Envoy walks a path segment by segment (`source/extensions/common/wasm/context.cc`
    // `getProperty`): one segment "request.path" names nothing; a third segment walks into the
    // header map (`expr/context.h` `HeadersWrapper::operator[]`: any case, values joined by ",").
    assert_eq!(header(h, "x-prop-dotted-segment"), "-");
    assert_eq!(header(h, "x-prop-header-field"), "a,b");
    // `request.size` is the Content-Length while the headers are there (`expr/context.cc`).
    assert_eq!(header(h, "x-prop-size"), "12");
    // The client connection's number (`info()` says 7): Envoy's `connection.id` and the wasm
    // `connection_id`.
    assert_eq!(header(h, "x-prop-connection-id"), "7");
    assert_eq!(header(h, "x-prop-connection-id-wasm"), "7");
    // Envoy `expr/context.cc`: `requested_server_name` is a string on every connection (empty
    // without SNI: status Ok, 0); `tls_version` exists only on a TLS connection
    // (`extractSslInfo`).
    assert_eq!(header(h, "x-prop-sni"), "0:");
    assert_eq!(header(h, "x-prop-tls-version"), "-");
    // Envoy `expr/context.cc` `ConnectionWrapper`: the local-certificate fields come from the
    // TLS session (`extractSslInfo`), so a plain connection has none (NotFound is status 1).
    assert_eq!(header(h, "x-prop-subject-local"), "1:");
    assert_eq!(header(h, "x-prop-uri-san-local"), "1:");
    assert_eq!(header(h, "x-prop-dns-san-local"), "1:");
    // The whole request cannot be listed (`context.cc` `getProperty`: SerializationFailure);
    // `request.headers` has each name once (`expr/context.h` `HeadersWrapper`): when the probe
    // reads it, the 4 pseudo-headers, x-replace, x-multi (twice), content-length, x-probe-count
    // and x-probe-path are 10 pairs but 9 names.
    assert_eq!(
        header(h, "x-prop-whole-request"),
        "Err(SerializationFailure)"
    );
    assert_eq!(header(h, "x-prop-header-names"), "9");
    // Envoy serves the plugin configuration only while the root configures
    // (`source/extensions/common/wasm/context.cc` `getBuffer`: `temp_plugin_`), NotFound after.
    assert_eq!(header(h, "x-plugin-config"), "none");
    assert_eq!(header(h, "x-metric"), "1");
    // Envoy `source/extensions/common/wasm/context.cc`: `recordMetric` adds to a counter
    // (`it->second->add(value)`), `incrementMetric` answers BadArgument unless `offset > 0`.
    assert_eq!(header(h, "x-recorded"), "4:Err(BadArgument)");
    assert_eq!(
        header(h, "x-metric-bytes"),
        "0",
        "a name of any bytes is defined"
    );
    assert_eq!(header(h, "x-shared"), "one:true:true");
    assert_eq!(header(h, "x-time-ok"), "true");

    let upstream = UpstreamInfo::new("127.1.2.3:8081".parse().unwrap(), "tomcat1");
    let mut res = response(200, &[("content-type", "text/html")]);
    assert_eq!(
        stream
            .response_headers(&mut res, Some(&upstream), true)
            .await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&res.headers, "x-upstream"), "127.1.2.3:8081");
    assert_eq!(header(&res.headers, "x-state"), "kept");
    // Set under ["probe", "state"]: Envoy looks up the first segment only (`context.cc`
    // `findValue`: `"wasm." + name`), so it is never found.
    assert_eq!(header(&res.headers, "x-state-nested"), "-");
    assert_eq!(header(&res.headers, "x-code"), "200");
    // Envoy clears a filter's request headers once its decodeHeaders continued
    // (`source/extensions/common/wasm/context.cc` `Context::decodeHeaders`: `request_headers_ =
    // nullptr`): get_header_map_value then answers BadArgument (2), get_header_map_pairs Ok with
    // no pairs (cpp-host `src/exports.cc` `get_header_map_pairs`: an empty map is ptr 0, len 0).
    assert_eq!(header(&res.headers, "x-request-path-status"), "2");
    assert_eq!(header(&res.headers, "x-request-pairs"), "0:0");
    assert_eq!(header(&res.headers, "x-response-count"), "2");
    assert_eq!(res.status, 201);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    assert_eq!(
        stream.response_trailers(&mut trailers).await,
        TrailersVerdict::Continue(Bytes::new())
    );
    assert_eq!(header(&trailers, "x-response-trailers"), "1");
    stream.finish();

    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_requests", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_logged_heads", &[]),
        Some(1.0),
        "on_log reads the request and response heads"
    );
    assert_eq!(
        metric(&registry, "keel_wasmcustom_probe_gauge", &[]),
        Some(42.0)
    );
    assert!(
        registry
            .gather()
            .iter()
            .any(|f| f.name() == "keel_wasmcustom_probe_histogram")
    );
    // A TLS client connection's session (`expr/context.cc`: `connection.requested_server_name`
    // from the SNI, `connection.tls_version` from `extractSslInfo`).
    let tls = keel_wasm::DownstreamTls {
        version: "TLSv1.3".into(),
        server_name: Some("shop.example".into()),
        local_certificate: std::sync::Arc::new(keel_wasm::LocalCertificate {
            subject: "CN=shop".into(),
            uri_san: None,
            dns_san: Some("shop.example".into()),
        }),
    };
    let mut stream = chain.stream(keel_wasm::StreamInfo {
        tls: true,
        downstream_tls: Some(std::sync::Arc::new(tls)),
        ..info()
    });
    let mut req = request("/", &[]);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-prop-sni"), "0:shop.example");
    assert_eq!(header(&req.headers, "x-prop-tls-version"), "TLSv1.3");
    // `expr/context.cc` `extractSslInfo`: the subject, the first DNS name; no URI name is
    // absent (`uriSanLocalCertificate().empty()`).
    assert_eq!(header(&req.headers, "x-prop-subject-local"), "0:CN=shop");
    assert_eq!(header(&req.headers, "x-prop-uri-san-local"), "1:");
    assert_eq!(
        header(&req.headers, "x-prop-dns-san-local"),
        "0:shop.example"
    );
    stream.finish();
}

#[tokio::test]
async fn a_local_response_replaces_the_request() {
    let (chain, _registry) = chain(vec![spec("probe", "test_probe", "local")]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 403);
            assert_eq!(&local.body[..], b"forbidden by probe\n");
            assert_eq!(local_header(&local, "x-local"), "yes");
        }
        other => panic!("expected a local response, got {other:?}"),
    }
}

/// A local reply to a gRPC request is a gRPC status, as Envoy's `sendLocalReply` makes it
/// (`source/common/http/utility.cc` `prepareLocalReply`: HTTP 200, `application/grpc`,
/// `grpc-status` from the filter or from the HTTP status, `grpc-message` the text, no body); to
/// any other request the same call is a plain reply. keel's own replies (the fail-closed 503)
/// take the same form.
#[tokio::test]
async fn a_local_reply_to_a_grpc_request_is_a_grpc_status() {
    let grpc = [("content-type", "application/grpc")];
    let respond = async |mode: &str, headers: &[(&str, &str)]| {
        // A name of its own: the failure metric (by filter name) is process-wide.
        let name = format!("grpc-reply-{mode}");
        let (chain, _registry) = chain(vec![spec(&name, "test_probe", mode)]);
        let mut stream = chain.stream(info());
        let mut req = request("/pkg.Svc/Call", headers);
        match stream.request_headers(&mut req, true).await {
            HeadersVerdict::Respond(local) => local,
            other => panic!("expected a local reply, got {other:?}"),
        }
    };
    let local = respond("grpc_local", &grpc).await;
    assert_eq!(local.status, 200);
    assert!(local.body.is_empty());
    assert_eq!(local_header(&local, "content-type"), "application/grpc");
    assert_eq!(local_header(&local, "grpc-status"), "10");
    assert_eq!(local_header(&local, "grpc-message"), "Aborted by probe");
    assert_eq!(local_header(&local, "x-probe"), "1");
    let plain = respond("grpc_local", &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(&plain.body[..], b"Aborted by probe");
    assert_eq!(local_header(&plain, "grpc-status"), "");
    // The fail-closed 503 to a gRPC request: UNAVAILABLE.
    let failed = respond("trap", &grpc).await;
    assert_eq!(failed.status, 200);
    assert_eq!(local_header(&failed, "grpc-status"), "14");
}

/// A local reply goes through the response callbacks of the filters the request reached, as
/// Envoy's `sendLocalReply` runs it through the encoder chain (`source/common/http/
/// filter_manager.cc` `sendLocalReplyViaFilterChain`, `encodeHeaders(nullptr, ...)` from the
/// first encoder filter): the `decorate` probe before the `local` one sees the 403 (property
/// `response.code`) and changes it; a filter after it, never reached, sees nothing (Envoy's
/// `http_request_started_`).
#[tokio::test]
async fn a_local_reply_goes_through_the_response_callbacks() {
    let (chain, _registry) = chain(vec![
        spec("decorate", "test_probe", "decorate"),
        spec("local", "test_probe", "local"),
        spec("after", "test_probe", "decorate"),
    ]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[]);
    match stream.request_headers(&mut req, true).await {
        HeadersVerdict::Respond(local) => {
            let values = |name: &str| -> Vec<String> {
                local
                    .headers
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.to_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(
                values("x-decorated"),
                ["403"],
                "only the filter before it ran"
            );
            assert_eq!(local.status, 418);
            assert_eq!(values("x-local"), ["yes"]);
            assert_eq!(values("content-type"), ["text/plain"]);
            assert_eq!(&local.body[..], b"forbidden by probe\n");
        }
        other => panic!("expected a local response, got {other:?}"),
    }
    stream.finish();
}

#[tokio::test]
async fn a_paused_body_is_buffered_then_rewritten() {
    let (chain, _registry) = chain(vec![spec("probe", "test_probe", "body_buffer")]);
    let (mut stream, _) = continued_get(&chain, "/upload", false).await;
    assert_eq!(
        stream
            .request_body(Bytes::from_static(b"hello "), false)
            .await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream
            .request_body(Bytes::from_static(b"world"), false)
            .await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream.request_body(Bytes::from_static(b"!"), true).await,
        BodyVerdict::Forward(Bytes::from_static(b"HELLO WORLD!"))
    );
    let mut res = response(200, &[]);
    assert_eq!(
        stream.response_headers(&mut res, None, false).await,
        HeadersVerdict::Continue
    );
    assert_eq!(
        stream.response_body(Bytes::from_static(b"ab"), false).await,
        BodyVerdict::Hold
    );
    assert_eq!(
        stream.response_body(Bytes::from_static(b"c"), true).await,
        BodyVerdict::Forward(Bytes::from_static(b"abc!"))
    );
}

#[tokio::test]
async fn a_body_held_when_the_trailers_come_goes_on_before_them() {
    // The first filter buffers until the end of the stream, which never comes as a body: the
    // trailers end it. What it held passes the second filter's body callback, then both see the
    // trailers.
    let (chain, _registry) = chain(vec![
        spec("buffer", "test_probe", "body_buffer"),
        spec("after", "test_probe", "trailers"),
    ]);
    let (mut stream, _) = continued_get(&chain, "/upload", false).await;
    for part in [&b"held "[..], b"until trailers"] {
        assert_eq!(
            stream
                .request_body(Bytes::copy_from_slice(part), false)
                .await,
            BodyVerdict::Hold
        );
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    assert_eq!(
        stream.request_trailers(&mut trailers).await,
        TrailersVerdict::Continue(Bytes::from_static(b"held until trailers"))
    );
    assert_eq!(trailers.get_all("x-trailers").iter().count(), 2);
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_413() {
    let mut probe = spec("probe", "test_probe", "body_buffer");
    probe.limits.max_buffered_body = 10;
    let (chain, _registry) = chain(vec![probe]);
    let (mut stream, _) = continued_get(&chain, "/upload", false).await;
    assert_eq!(
        stream
            .request_body(Bytes::from_static(b"0123456789"), false)
            .await,
        BodyVerdict::Hold
    );
    match stream.request_body(Bytes::from_static(b"x"), false).await {
        BodyVerdict::Respond(local) => assert_eq!(local.status, 413),
        other => panic!("expected 413, got {other:?}"),
    }
}

#[tokio::test]
async fn wasi_environment_clocks_random_and_output() {
    let mut probe = spec("probe", "test_probe", "wasi");
    probe.env = vec![("PROBE_ENV".into(), "from-config".into())];
    let (chain, _registry) = chain(vec![probe]);
    let (_stream, req) = continued_get(&chain, "/", true).await;
    assert_eq!(header(&req.headers, "x-env"), "from-config");
    assert_eq!(header(&req.headers, "x-clock"), "true");
    assert_eq!(header(&req.headers, "x-monotonic"), "true");
}

/// Envoy's foreign functions (`source/extensions/common/wasm/foreign.cc`):
/// `clear_route_cache`, and `compress`/`uncompress` (zlib's, so a stream real zlib wrote
/// decompresses, and what is not zlib is SerializationFailure); `expr_create` is NotFound, as
/// in an Envoy built without its CEL parser (the `#if defined(WASM_USE_CEL_PARSER)` there).
#[tokio::test]
async fn foreign_functions_clear_route_cache_and_zlib_and_grpc_needs_an_upstream() {
    let (chain, _registry) = chain(vec![spec("probe", "test_probe", "foreign")]);
    let (_stream, req) = continued_get(&chain, "/", true).await;
    assert_eq!(header(&req.headers, "x-foreign"), "Err(NotFound)");
    assert_eq!(header(&req.headers, "x-foreign-uncompress"), "hello");
    assert_eq!(header(&req.headers, "x-foreign-round-trip"), "probe probe");
    assert_eq!(
        header(&req.headers, "x-foreign-bad"),
        "Err(SerializationFailure)"
    );
    // Envoy registers `clear_route_cache` (`source/extensions/common/wasm/foreign.cc`), which
    // Istio-style filters call after a header rewrite: Ok, no result.
    assert_eq!(header(&req.headers, "x-foreign-route"), "Ok(None)");
    // No callout upstream `grpc`: Envoy `context.cc` `grpcCall` answers ParseFailure for an
    // unknown cluster.
    assert_eq!(header(&req.headers, "x-grpc"), "Err(ParseFailure)");
}

/// `sign` and `verify_signature` through a filter (`foreign.cc`, `ext/sign.proto`,
/// `ext/verify_signature.proto`, `source/common/crypto/utility_impl.cc`), with the keys in
/// `host/wasm/src/foreign/testdata` (OpenSSL-made): keel's RSA-SHA256 signature of the text is
/// `openssl dgst -sha256 -sign`'s (PKCS#1 v1.5 is deterministic), OpenSSL's signature verifies
/// with the PEM public key (the hash name in any case), one flipped bit fails with Envoy's
/// error, and a key given as PEM and DER at once is BadArgument.
#[tokio::test]
async fn sign_and_verify_signature_through_a_filter() {
    let (chain, _registry) = chain(vec![spec("probe", "test_probe", "signature")]);
    let (_stream, req) = continued_get(&chain, "/", true).await;
    let openssl: String = include_bytes!("../../host/wasm/src/foreign/testdata/rsa.sha256.sig")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(&req.headers, "x-sign"), format!("true:{openssl}"));
    assert_eq!(header(&req.headers, "x-verify"), "true:");
    assert_eq!(
        header(&req.headers, "x-verify-tampered"),
        "false:Failed to verify digest. Error code: 0"
    );
    assert_eq!(header(&req.headers, "x-sign-both-keys"), "BadArgument");
}

/// `declare_property` (`foreign.cc` `DeclarePropertyFactory`, `context.cc` `declareProperty`
/// and `setProperty`, `cel_state.h` `CelState::setValue`): on the root, a name declares once
/// (the second time BadArgument) and arguments that do not parse are BadArgument; a read-only
/// property takes one value (the second `set_property` is BadArgument, 2) and keeps it, a
/// writable one takes the last; a value set under two segments reads as nothing; a stream
/// context's declaration is its own (declared once, BadArgument the second time) and
/// `set_property` ignores it (it looks up the root's). `set_envoy_filter_state` finds no object
/// factory for the path: NotFound (`context.cc` `setEnvoyFilterState`).
#[tokio::test]
async fn declared_properties_govern_set_property() {
    let (chain, _registry) = chain(vec![spec("probe", "test_probe", "declare")]);
    let (_stream, req) = continued_get(&chain, "/", true).await;
    let h = &req.headers;
    assert_eq!(
        header(h, "x-declare-root"),
        "Ok(None),Ok(None),Err(BadArgument),Err(BadArgument)"
    );
    assert_eq!(header(h, "x-set-ro"), "0,2");
    assert_eq!(header(h, "x-get-ro"), "one");
    assert_eq!(header(h, "x-set-rw"), "0,0");
    assert_eq!(header(h, "x-get-rw"), "two");
    assert_eq!(header(h, "x-set-nested"), "0");
    assert_eq!(header(h, "x-get-nested"), "-");
    assert_eq!(header(h, "x-declare-stream"), "Ok(None),Err(BadArgument)");
    assert_eq!(header(h, "x-set-stream"), "0,0");
    assert_eq!(header(h, "x-envoy-filter-state"), "Err(NotFound)");
}

#[tokio::test]
async fn bad_guest_pointers_get_invalid_memory_access() {
    let (chain, registry) = chain(vec![spec("probe", "test_probe", "bad_pointers")]);
    let (_stream, req) = continued_get(&chain, "/", true).await;
    // log ×2, get_header_map_value, get_header_map_pairs, get_property: 6 (InvalidMemoryAccess);
    // set_header_map_pairs with garbage: 2 (BadArgument); get_buffer_bytes to a bad out-pointer: 6;
    // log at level 6: 2 (BadArgument, cpp-host `src/exports.cc` `log`), at level 5 (critical): 0.
    assert_eq!(header(&req.headers, "x-bad"), "6,6,6,6,6,2,6,2,0");
    assert_eq!(
        metric(
            &registry,
            "keel_wasm_failures_total",
            &[("filter", "probe")]
        ),
        None
    );
}

#[tokio::test]
async fn timers_tick_on_the_root_context() {
    let (chain, _registry) = chain(vec![spec("ticker", "test_probe", "tick")]);
    let ticked = eventually(async || {
        let mut stream = chain.stream(info());
        let mut req = request("/", &[]);
        stream.request_headers(&mut req, true).await;
        header(&req.headers, "x-ticks").parse::<u64>().unwrap_or(0) >= 3
    })
    .await;
    assert!(ticked, "on_tick did not run three times");
}

/// A chain of one probe in `mode` (one of the `tick_*` modes, whose requests pause until an
/// `on_tick` acts on them), with a pause timeout far longer than the wait here.
fn tick_chain(mode: &str) -> FilterChain {
    let mut probe = spec(mode, "test_probe", mode);
    probe.limits.pause_timeout = Duration::from_secs(30);
    chain(vec![probe]).0
}

/// Sends `GET path` into a new stream of `chain`: the verdict, and the request head as the
/// filters left it. The probe pauses; an `on_tick` must end the pause well within 10 s.
async fn ticked(chain: &FilterChain, path: &str) -> (HeadersVerdict, http::request::Parts) {
    let mut stream = chain.stream(info());
    let mut req = request(path, &[]);
    let verdict = tokio::time::timeout(
        Duration::from_secs(10),
        stream.request_headers(&mut req, true),
    )
    .await
    .expect("on_tick ended the pause, long before the pause timeout");
    (verdict, req)
}

#[tokio::test]
async fn on_tick_resumes_a_paused_stream() {
    // The filter pauses on request headers; its next on_tick (every 10 ms) makes the stream
    // effective and continues it. Without that, the stream would wait for the pause timeout.
    let chain = tick_chain("tick_resume");
    for _ in 0..3 {
        assert_eq!(ticked(&chain, "/").await.0, HeadersVerdict::Continue);
    }
}

/// A root callback acts on the stream it made effective: `on_tick` reads the paused request's
/// `:path` and its `request.path` property, adds a header, and resumes it. cpp-host's
/// hostcalls act on `contextOrEffectiveContext()` (`src/exports.cc`), so Envoy's
/// `getHeaderMapValue` and `getProperty` there see the paused stream; keel used to answer
/// `NotFound` (the stream's data was reachable only during its own callbacks).
#[tokio::test]
async fn on_tick_reads_and_changes_the_paused_stream_it_made_effective() {
    let chain = tick_chain("tick_edit");
    for path in ["/first", "/second?x=1"] {
        let (verdict, req) = ticked(&chain, path).await;
        assert_eq!(verdict, HeadersVerdict::Continue);
        assert_eq!(
            header(&req.headers, "x-from-tick"),
            format!("{path}, {path}")
        );
    }
}

/// A root callback answers the stream it made effective (`send_local_response` on the
/// effective context, Envoy `context.cc` `sendLocalResponse`); the reply goes out at once,
/// not at the pause timeout.
#[tokio::test]
async fn on_tick_answers_the_paused_stream_it_made_effective() {
    let chain = tick_chain("tick_reply");
    let (verdict, _) = ticked(&chain, "/").await;
    match verdict {
        HeadersVerdict::Respond(local) => {
            assert_eq!(local.status, 429);
            assert_eq!(&local.body[..], b"slow down\n");
            assert_eq!(local_header(&local, "x-from"), "tick");
        }
        other => panic!("expected the tick's 429, got {other:?}"),
    }
}

/// Enqueues `items` (comma separated) through the probe `name`, then waits until a request
/// sees all of them dequeued by `on_queue_ready`.
async fn queue_round_trip(name: &str, items: &str) -> bool {
    let (chain, _registry) = chain(vec![spec(name, "test_probe", "queue")]);
    let mut stream = chain.stream(info());
    let mut req = request("/", &[("x-enqueue", items)]);
    stream.request_headers(&mut req, true).await;
    drop(stream);
    eventually(async || {
        let mut stream = chain.stream(info());
        let mut req = request("/", &[]);
        stream.request_headers(&mut req, true).await;
        header(&req.headers, "x-queue-got") == items
    })
    .await
}

#[tokio::test]
async fn queued_items_reach_on_queue_ready() {
    assert!(
        queue_round_trip("queue", "hello-queue").await,
        "on_queue_ready did not dequeue the item"
    );
}

/// Each enqueue posts its own `on_queue_ready` (cpp-host `src/shared_queue.cc`
/// `SharedQueue::enqueue`): a receiver that dequeues one item per call gets them all, where
/// keel used to call it once per 10 ms pass, leaving items behind.
#[tokio::test]
async fn every_enqueue_gets_its_own_on_queue_ready() {
    assert!(
        queue_round_trip("queue3", "a,b,c").await,
        "not every item reached on_queue_ready"
    );
}

#[tokio::test]
async fn request_trailers_are_read_and_written() {
    let (chain, _registry) = chain(vec![spec("probe", "test_probe", "trailers")]);
    let (mut stream, _) = continued_get(&chain, "/", false).await;
    assert_eq!(
        stream
            .request_body(Bytes::from_static(b"data"), false)
            .await,
        BodyVerdict::Forward(Bytes::from_static(b"data"))
    );
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    assert_eq!(
        stream.request_trailers(&mut trailers).await,
        TrailersVerdict::Continue(Bytes::new())
    );
    assert_eq!(header(&trailers, "x-trailers"), "1:0");
    assert_eq!(header(&trailers, "grpc-status"), "0");
}
