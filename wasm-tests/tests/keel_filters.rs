//! keel's own filters, `sticky.wasm` and `route_suffix.wasm`, driven end to end through the
//! runtime with the configuration contract of the plan: the same decisions as their native
//! tests in `keel-filter-logic` (`sticky.rs`, `route_suffix/{request,response}.rs`). Also: the
//! built filters export only the callbacks they implement (`unused-callbacks`, applied by
//! `cargo xtask build-wasm`), and which bodies a chain of them takes part in.

// Tests may unwrap (keel conventions); this covers their helper functions too.
#![allow(clippy::unwrap_used)]

use keel_wasm::{ChainError, FilterChain, HeadersVerdict, UpstreamInfo};
use wasm_tests::{chain, header, info, request, response, spec};

async fn route_header(config: &str, uri: &str, headers: &[(&str, &str)]) -> Vec<String> {
    let (chain, _registry) = chain(vec![spec("sticky", "sticky", config)]);
    let mut stream = chain.stream(info());
    let mut req = request(uri, headers);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    stream.finish();
    req.headers
        .get_all("x-keel-route")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

#[tokio::test]
async fn sticky_routes_a_tomcat_cookie_by_its_suffix() {
    let routes = route_header(
        "",
        "/shop",
        &[(
            "cookie",
            "JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat1",
        )],
    )
    .await;
    assert_eq!(routes, ["tomcat1"]);
}

#[tokio::test]
async fn sticky_prefers_the_url_parameter_and_reads_msm_ids() {
    let routes = route_header(
        "{}",
        "/a;jsessionid=ABC-n1.tomcat2?x",
        &[("cookie", "JSESSIONID=ABC-n1.tomcat1")],
    )
    .await;
    assert_eq!(routes, ["tomcat2"]);
}

#[tokio::test]
async fn sticky_envoy_host_encoding_and_unknown_routes() {
    let config = r#"{"encoding": "envoy_host", "routes": {"tomcat1": "127.0.0.1:8081"}}"#;
    assert_eq!(
        route_header(config, "/", &[("cookie", "JSESSIONID=ABC.tomcat1")]).await,
        ["MTI3LjAuMC4xOjgwODE="]
    );
    assert!(
        route_header(config, "/", &[("cookie", "JSESSIONID=ABC.tomcat9")])
            .await
            .is_empty()
    );
    let config = r#"{"routes": {"tomcat1": "127.0.0.1:8081"}}"#;
    assert!(
        route_header(config, "/", &[("cookie", "JSESSIONID=ABC.tomcat2")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn sticky_sets_nothing_without_a_usable_id() {
    assert!(route_header("", "/", &[]).await.is_empty());
    assert!(
        route_header("", "/", &[("cookie", "JSESSIONID=ABC")])
            .await
            .is_empty()
    );
    assert!(
        route_header("", "/", &[("cookie", "JSESSIONID=AB\"C.t1")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn sticky_replaces_a_routing_header_the_client_sent() {
    assert!(
        route_header("", "/", &[("x-keel-route", "tomcat9")])
            .await
            .is_empty()
    );
    let routes = route_header(
        "",
        "/",
        &[
            ("x-keel-route", "tomcat9"),
            ("cookie", "JSESSIONID=A.tomcat1"),
        ],
    )
    .await;
    assert_eq!(routes, ["tomcat1"]);
}

#[tokio::test]
async fn sticky_custom_names() {
    let config = r#"{"cookie_names": ["SID"], "path_parameters": [], "header": "x-route"}"#;
    let (chain, _registry) = chain(vec![spec("sticky", "sticky", config)]);
    let mut stream = chain.stream(info());
    let mut req = request(
        "/a;jsessionid=X.t1",
        &[("cookie", "JSESSIONID=Y.t2; SID=Z.t3")],
    );
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(header(&req.headers, "x-route"), "t3");
}

#[test]
fn an_unknown_config_key_is_refused_naming_the_field() {
    for (file, config) in [
        ("sticky", r#"{"cookie_name": ["X"]}"#),
        ("route_suffix", r#"{"routes": {}, "colour": 1}"#),
    ] {
        let registry = prometheus::Registry::new();
        let error = FilterChain::new(
            vec![spec(file, file, config)],
            1,
            &registry,
            std::sync::Arc::new(keel_wasm::NoCallouts),
        )
        .unwrap_err();
        match &error {
            ChainError::Configure { filter, message } => {
                assert_eq!(filter, file);
                let field = if file == "sticky" {
                    "cookie_name"
                } else {
                    "colour"
                };
                assert!(message.contains(field), "{file}: {message}");
            }
            other => panic!("{file}: unexpected {other:?}"),
        }
    }
}

const SUFFIX_CONFIG: &str = r#"{"routes": {"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}, "mode": "MODE",
    "cookie": {"path": "/", "http_only": true, "secure": true, "same_site": "Lax"}}"#;

fn served_by(address: &str, route: &str) -> UpstreamInfo {
    UpstreamInfo::new(address.parse().unwrap(), route)
}

/// One request and response through route_suffix; returns the request and response heads.
async fn suffix(
    mode: &str,
    req_headers: (&str, &[(&str, &str)]),
    res_headers: &[(&str, &[u8])],
    upstream: &UpstreamInfo,
) -> (http::request::Parts, http::response::Parts) {
    let config = SUFFIX_CONFIG.replace("MODE", mode);
    let (chain, _registry) = chain(vec![spec("route_suffix", "route_suffix", &config)]);
    let mut stream = chain.stream(info());
    let mut req = request(req_headers.0, req_headers.1);
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    let mut res = response(200, &[]);
    for (name, value) in res_headers {
        res.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    assert_eq!(
        stream
            .response_headers(&mut res, Some(upstream), true)
            .await,
        HeadersVerdict::Continue
    );
    stream.finish();
    (req, res)
}

fn all(map: &http::HeaderMap, name: &str) -> Vec<Vec<u8>> {
    map.get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

#[tokio::test]
async fn route_suffix_rewrites_set_cookie_keeping_attributes_and_other_cookies() {
    let (_, res) = suffix(
        "rewrite",
        ("/", &[]),
        &[
            ("set-cookie", b"a=1; Path=/"),
            (
                "set-cookie",
                b"JSESSIONID=NEW.tomcat1; Path=/shop; Secure; HttpOnly; SameSite=Strict; X=\xff",
            ),
            ("content-type", b"text/html"),
        ],
        &served_by("127.0.0.1:8082", "tomcat2"),
    )
    .await;
    assert_eq!(
        all(&res.headers, "set-cookie"),
        vec![
            b"a=1; Path=/".to_vec(),
            b"JSESSIONID=NEW.tomcat2; Path=/shop; Secure; HttpOnly; SameSite=Strict; X=\xff"
                .to_vec(),
        ]
    );
    assert_eq!(header(&res.headers, "content-type"), "text/html");
}

#[tokio::test]
async fn route_suffix_adds_a_cookie_after_a_failover() {
    let (_, res) = suffix(
        "rewrite",
        ("/", &[("cookie", "JSESSIONID=X-n1.tomcat1")]),
        &[],
        &served_by("127.0.0.1:8082", "tomcat2"),
    )
    .await;
    assert_eq!(
        all(&res.headers, "set-cookie"),
        vec![b"JSESSIONID=X-n1.tomcat2; Path=/; Secure; HttpOnly; SameSite=Lax".to_vec()]
    );
}

#[tokio::test]
async fn route_suffix_leaves_the_same_route_and_unknown_backends_alone() {
    let same: &[(&str, &[u8])] = &[
        ("set-cookie", b"JSESSIONID=Y.tomcat1; Path=/"),
        ("location", b"/a;jsessionid=Y.tomcat1"),
    ];
    let (_, res) = suffix(
        "rewrite",
        ("/", &[("cookie", "JSESSIONID=X.tomcat1")]),
        same,
        &served_by("127.0.0.1:8081", "tomcat1"),
    )
    .await;
    assert_eq!(
        all(&res.headers, "set-cookie"),
        vec![b"JSESSIONID=Y.tomcat1; Path=/".to_vec()]
    );
    assert_eq!(header(&res.headers, "location"), "/a;jsessionid=Y.tomcat1");
    let (_, res) = suffix(
        "rewrite",
        ("/", &[("cookie", "JSESSIONID=X.tomcat1")]),
        same,
        &served_by("127.0.0.9:8089", "other"),
    )
    .await;
    assert_eq!(
        all(&res.headers, "set-cookie"),
        vec![b"JSESSIONID=Y.tomcat1; Path=/".to_vec()]
    );
}

#[tokio::test]
async fn route_suffix_rewrites_location() {
    let (_, res) = suffix(
        "rewrite",
        ("/", &[]),
        &[(
            "location",
            b"https://h.example/app/next;jsessionid=X.tomcat1?a=1;jsessionid=X.tomcat1",
        )],
        &served_by("127.0.0.1:8082", "tomcat2"),
    )
    .await;
    assert_eq!(
        header(&res.headers, "location"),
        "https://h.example/app/next;jsessionid=X.tomcat2?a=1;jsessionid=X.tomcat1"
    );
}

#[tokio::test]
async fn route_suffix_strip_append_strips_on_the_way_in_and_appends_on_the_way_out() {
    let (req, res) = suffix(
        "strip_append",
        (
            "/a;v=1;jsessionid=P-n2.tomcat1/b?jsessionid=Q.tomcat1",
            &[("cookie", "x=1;  JSESSIONID=\"C.tomcat1\" ; y=2")],
        ),
        &[
            ("set-cookie", b"JSESSIONID=\"NEW\"; Path=/app"),
            ("location", b"/app;jsessionid=NEW"),
        ],
        &served_by("127.0.0.1:8081", "tomcat1"),
    )
    .await;
    assert_eq!(req.uri, "/a;v=1;jsessionid=P-n2/b?jsessionid=Q.tomcat1");
    assert_eq!(
        all(&req.headers, "cookie"),
        vec![b"x=1;  JSESSIONID=\"C\" ; y=2".to_vec()]
    );
    assert_eq!(
        all(&res.headers, "set-cookie"),
        vec![b"JSESSIONID=\"NEW.tomcat1\"; Path=/app".to_vec()]
    );
    assert_eq!(
        header(&res.headers, "location"),
        "/app;jsessionid=NEW.tomcat1"
    );
}

#[tokio::test]
async fn route_suffix_joins_several_cookie_headers_when_one_changes() {
    let (req, _) = suffix(
        "strip_append",
        (
            "/",
            &[
                ("cookie", "a=1"),
                ("cookie", "JSESSIONID=C.tomcat2"),
                ("cookie", "b=2"),
            ],
        ),
        &[],
        &served_by("127.0.0.1:8082", "tomcat2"),
    )
    .await;
    assert_eq!(
        all(&req.headers, "cookie"),
        vec![b"a=1; JSESSIONID=C; b=2".to_vec()]
    );
}

#[tokio::test]
async fn sticky_and_route_suffix_together() {
    let sticky = spec(
        "sticky",
        "sticky",
        r#"{"routes": {"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}}"#,
    );
    let suffix = spec(
        "route_suffix",
        "route_suffix",
        &SUFFIX_CONFIG.replace("MODE", "rewrite"),
    );
    let (chain, _registry) = chain(vec![sticky, suffix]);
    let mut stream = chain.stream(info());
    let mut req = request(
        "/shop",
        &[
            ("cookie", "JSESSIONID=S-n1.tomcat1"),
            ("x-keel-route", "evil"),
        ],
    );
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    assert_eq!(all(&req.headers, "x-keel-route"), vec![b"tomcat1".to_vec()]);
    // tomcat1 is down: the balancer fails over to tomcat2; the client's id must follow.
    let mut res = response(200, &[]);
    let upstream = served_by("127.0.0.1:8082", "tomcat2");
    assert_eq!(
        stream
            .response_headers(&mut res, Some(&upstream), true)
            .await,
        HeadersVerdict::Continue
    );
    assert_eq!(
        all(&res.headers, "set-cookie"),
        vec![b"JSESSIONID=S-n1.tomcat2; Path=/; Secure; HttpOnly; SameSite=Lax".to_vec()]
    );
    stream.finish();
}

/// A long run through both filters: no failure, no leak that would reach a limit.
#[tokio::test]
async fn many_requests_through_both_filters_never_fail() {
    let routes = r#"{"tomcat1": "127.0.0.1:8081", "tomcat2": "127.0.0.1:8082"}"#;
    let sticky = spec(
        "sticky-long",
        "sticky",
        &format!(r#"{{"routes": {routes}}}"#),
    );
    let suffix = spec(
        "suffix-long",
        "route_suffix",
        &format!(r#"{{"routes": {routes}, "mode": "rewrite"}}"#),
    );
    let (chain, registry) = chain(vec![sticky, suffix]);
    let upstream = served_by("127.0.0.1:8081", "tomcat1");
    for n in 0..40_000u32 {
        let mut stream = chain.stream(info());
        let mut req = request("/shop", &[("cookie", "JSESSIONID=S-n1.tomcat1")]);
        let verdict = stream.request_headers(&mut req, true).await;
        if verdict != HeadersVerdict::Continue {
            let failures: Vec<String> = registry
                .gather()
                .iter()
                .filter(|f| f.name() == "keel_wasm_failures_total")
                .flat_map(|f| {
                    f.get_metric()
                        .iter()
                        .map(|m| format!("{:?}", m.get_label()))
                        .collect::<Vec<_>>()
                })
                .collect();
            panic!(
                "request {n}: {verdict:?}; failures {failures:?}; memory {:?}",
                chain.memory_per_instance()
            );
        }
        let mut res = response(200, &[("set-cookie", "JSESSIONID=S-n1.tomcat1; Path=/")]);
        assert_eq!(
            stream
                .response_headers(&mut res, Some(&upstream), true)
                .await,
            HeadersVerdict::Continue
        );
        stream.finish();
    }
    assert!(
        chain
            .memory_per_instance()
            .iter()
            .all(|(_, bytes)| *bytes < 8 << 20),
        "{:?}",
        chain.memory_per_instance()
    );
}

/// The exports of a built filter (`wasmparser`).
fn exports(file: &str) -> Vec<String> {
    let bytes = std::fs::read(wasm_tests::filter(file)).unwrap();
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ExportSection(reader) = payload.unwrap() {
            names.extend(reader.into_iter().map(|e| e.unwrap().name.to_owned()));
        }
    }
    names
}

#[test]
fn the_filters_export_only_the_callbacks_they_implement() {
    // `unused-callbacks` in each filter's Cargo.toml, applied by `cargo xtask build-wasm`.
    let stream = ["proxy_on_context_create", "proxy_on_delete"];
    let wanted: [(&str, &[&str]); 3] = [
        ("sticky", &["proxy_on_request_headers"]),
        (
            "route_suffix",
            &["proxy_on_request_headers", "proxy_on_response_headers"],
        ),
        (
            "session",
            &["proxy_on_request_headers", "proxy_on_response_headers"],
        ),
    ];
    let callbacks = [
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
        "proxy_on_log",
        "proxy_on_done",
    ];
    for (file, implemented) in wanted {
        let names = exports(file);
        let has = |name: &str| names.iter().any(|n| n == name);
        for name in stream {
            assert!(has(name), "{file} must export {name}");
        }
        let exported: Vec<&str> = callbacks.iter().copied().filter(|c| has(c)).collect();
        assert_eq!(exported, implemented, "{file}");
    }
    // The session filter's memcached answers come to its root context.
    assert!(
        exports("session")
            .iter()
            .any(|n| n == "proxy_on_http_call_response")
    );
}

#[test]
fn a_chain_takes_part_only_in_the_bodies_its_filters_read() {
    let bodies = |specs| chain(specs).0.bodies();
    let none = keel_wasm::Bodies {
        request: false,
        response: false,
    };
    // Request headers only: neither body.
    assert_eq!(bodies(vec![spec("sticky", "sticky", "")]), none);
    // A response callback may read the request body's size: that body goes through.
    let request_only = keel_wasm::Bodies {
        request: true,
        response: false,
    };
    let sticky_suffix = vec![
        spec("sticky", "sticky", ""),
        spec(
            "route_suffix",
            "route_suffix",
            r#"{"routes": {"tomcat1": "127.0.0.1:8081"}}"#,
        ),
    ];
    assert_eq!(bodies(sticky_suffix), request_only);
    // A module that exports every callback (the SDK's default) takes part in both.
    let both = keel_wasm::Bodies {
        request: true,
        response: true,
    };
    assert_eq!(bodies(vec![spec("probe", "test_probe", "")]), both);
}
