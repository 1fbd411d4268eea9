//! Every configuration error names its key; `keel check` reports it; inject_routes fills the
//! filters' `routes` map from the members.

use std::path::Path;
use std::process::Command;

use crate::harness::Scratch;

const BASE: &str = "listeners:\n  - address: 127.0.0.1:8080\nbalancer:\n  members:\n    - route: t1\n      url: http://127.0.0.1:8081\n    - route: t2\n      url: http://127.0.0.1:8082\n";

fn err(text: &str, dir: &Path) -> (String, String) {
    match keel::config::parse(text, dir) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => (e.key().unwrap_or("").to_string(), e.to_string()),
    }
}

#[test]
fn every_error_names_its_key() {
    let dir = Scratch::new();
    dir.write("token", "short");
    dir.write("f.wasm", "");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            BASE.replace("http://127.0.0.1:8082", "htp://127.0.0.1:8082"),
            "balancer.members[1].url",
            "unsupported scheme \"htp\"",
        ),
        (
            BASE.replace("http://127.0.0.1:8082", "http://127.0.0.1:8082/app"),
            "balancer.members[1].url",
            "no path",
        ),
        (
            BASE.replace("http://127.0.0.1:8082", "ajp://127.0.0.1:8009"),
            "balancer.ajp.secret_file",
            "secret",
        ),
        (
            format!("{BASE}  ajp:\n    max_connections: 0\n"),
            "balancer.ajp.max_connections",
            "more than 0",
        ),
        (format!("{BASE}workers: 5000\n"), "workers", "at most 1024"),
        (
            format!("{BASE}  ajp:\n    ping: sometimes\n"),
            "balancer.ajp.ping",
            "unknown variant",
        ),
        (
            format!("{BASE}session_store:\n  type: memcached\n"),
            "session_store.nodes",
            "needs nodes",
        ),
        (
            format!("{BASE}session_store:\n  type: memcached\n  nodes: n1:localhost:11211\n"),
            "session_store.nodes",
            "n1",
        ),
        (
            format!("{BASE}session_store:\n  type: memory\n  nodes: n1:127.0.0.1:11211\n"),
            "session_store.nodes",
            "only for type: memcached",
        ),
        (
            format!(
                "{BASE}session_store:\n  type: memory\n  upstream: store\ncallout_upstreams:\n  store: http://127.0.0.1:8099\n"
            ),
            "session_store.upstream",
            "a name of its own",
        ),
        (
            format!("{BASE}session_store:\n  type: memory\n  colour: blue\n"),
            "session_store.colour",
            "unknown field",
        ),
        (
            format!("{BASE}  ajp:\n    secret_file: token\n    secret_required: false\n"),
            "balancer.ajp.secret_required",
            "remove one",
        ),
        (
            BASE.replace("route: t2", "route: t1"),
            "balancer.members[1].route",
            "duplicate route",
        ),
        (
            BASE.replace("route: t2", "route: \"t 2\""),
            "balancer.members[1].route",
            "route",
        ),
        (
            format!("{BASE}      weight: heavy\n"),
            "balancer.members[1].weight",
            "invalid type",
        ),
        (
            format!("{BASE}      weight: 0\n"),
            "balancer.members[1].weight",
            "1..=1000",
        ),
        (
            format!("{BASE}      status: sleeping\n"),
            "balancer.members[1].status",
            "unknown variant",
        ),
        (
            format!("{BASE}      colour: red\n"),
            "balancer.members[1].colour",
            "unknown field `colour`",
        ),
        (
            format!("{BASE}colour: red\n"),
            "colour",
            "unknown field `colour`",
        ),
        (
            format!("{BASE}  lbmethod: random\n"),
            "balancer.lbmethod",
            "unknown variant",
        ),
        (
            format!("{BASE}  health:\n    interval: 5 seconds\n"),
            "balancer.health.interval",
            "unit",
        ),
        (
            format!("{BASE}  health:\n    path: health\n"),
            "balancer.health.path",
            "absolute path",
        ),
        (
            format!("{BASE}  retry:\n    failonstatus: [503, 7000]\n"),
            "balancer.retry.failonstatus[1]",
            "not an HTTP status",
        ),
        (
            format!("{BASE}  retry:\n    max_interval: 18446744073709551615s\n"),
            "balancer.retry.max_interval",
            "longer than 24h",
        ),
        (
            format!("{BASE}  retry:\n    interval: 1m\n    max_interval: 30s\n"),
            "balancer.retry.max_interval",
            "at least balancer.retry.interval",
        ),
        (
            format!("{BASE}  retry:\n    backoff: 0.5\n"),
            "balancer.retry.backoff",
            "1.0..=10.0",
        ),
        (
            format!("{BASE}  sticky:\n    header: \"bad header\"\n"),
            "balancer.sticky.header",
            "not a header name",
        ),
        (
            format!("{BASE}  timeouts:\n    connect: 0ms\n"),
            "balancer.timeouts.connect",
            "more than 0",
        ),
        (
            format!("{BASE}  ajp:\n    packet_size: 100\n"),
            "balancer.ajp.packet_size",
            "8192..=65536",
        ),
        (
            BASE.replace("127.0.0.1:8080", "localhost"),
            "listeners[0].address",
            "not an ip:port",
        ),
        (
            format!("{BASE}admin:\n  address: 0.0.0.0:9901\n  token_file: token\n"),
            "admin.address",
            "not loopback",
        ),
        (
            format!("{BASE}admin:\n  token_file: nosuch\n"),
            "admin.token_file",
            "cannot read",
        ),
        (
            format!("{BASE}admin:\n  token_file: token\n"),
            "admin.token_file",
            "at least 16",
        ),
        (
            format!("{BASE}filters:\n  - name: s\n    wasm: missing.wasm\n"),
            "filters[0].wasm",
            "cannot read",
        ),
        (
            format!(
                "{BASE}filters:\n  - name: s\n    wasm: f.wasm\n    inject_routes: true\n    config:\n      routes: {{}}\n"
            ),
            "filters[0].config.routes",
            "inject_routes",
        ),
        (
            format!(
                "{BASE}filters:\n  - name: s\n    wasm: f.wasm\n  - name: s\n    wasm: f.wasm\n"
            ),
            "filters[1].name",
            "unique",
        ),
        (
            format!("{BASE}filters:\n  - name: s\n    wasm: f.wasm\n    failure_policy: maybe\n"),
            "filters[0].failure_policy",
            "unknown variant",
        ),
        (
            format!("{BASE}callout_upstreams:\n  store: ftp://127.0.0.1:1\n"),
            "callout_upstreams.store",
            "unsupported scheme",
        ),
        (
            format!("{BASE}session_store:\n  nodes: n1:127.0.0.1:11211\n"),
            "session_store",
            "missing field `type`",
        ),
        (
            format!("{BASE}limits:\n  max_headers: 0\n"),
            "limits.max_headers",
            "at least 1",
        ),
        (
            "listeners: []\nbalancer:\n  members: []\n".to_string(),
            "listeners",
            "at least one",
        ),
        (
            BASE.replace("  members:", "  members: []\n  old_members:"),
            "balancer.old_members",
            "unknown field",
        ),
        (
            format!("{BASE}access_log:\n  path: no-such-dir/access.log\n"),
            "access_log.path",
            "not a file in an existing directory",
        ),
        (
            format!("{BASE}limits:\n  idle_timeout: 0s\n"),
            "limits.idle_timeout",
            "longer than 0",
        ),
        (
            format!("{BASE}access_log:\n  path: /\n"),
            "access_log.path",
            "not a file in an existing directory",
        ),
    ];
    for (text, key, message) in cases {
        let (k, full) = err(&text, &dir.0);
        assert_eq!(k, key, "wrong key for {full}\n---\n{text}");
        assert!(full.contains(message), "{full:?} does not say {message:?}");
        assert!(
            full.starts_with(&format!("{key}: ")),
            "{full:?} does not start with the key"
        );
    }
}

#[test]
fn inject_routes_fills_the_routes_map() {
    let dir = Scratch::new();
    dir.write("sticky.wasm", "");
    let text = format!(
        "{BASE}filters:\n  - name: sticky\n    wasm: sticky.wasm\n    inject_routes: true\n    config:\n      cookie_names: [JSESSIONID]\n  - name: other\n    wasm: sticky.wasm\n"
    );
    let s = keel::config::parse(&text, &dir.0).expect("valid");
    let v: serde_json::Value = serde_json::from_slice(&s.filters[0].plugin_config).expect("json");
    assert_eq!(v["routes"]["t1"], "127.0.0.1:8081");
    assert_eq!(v["routes"]["t2"], "127.0.0.1:8082");
    assert_eq!(v["cookie_names"][0], "JSESSIONID");
    assert!(
        s.filters[1].plugin_config.is_empty(),
        "no config: empty plugin configuration"
    );
    assert_eq!(s.filters[0].wasm, dir.0.join("sticky.wasm"));
}

/// A string configuration reaches the filter as its bytes, as Envoy hands a filter a
/// `google.protobuf.StringValue` configuration (`source/extensions/common/wasm/plugin.cc`
/// `anyToBytes`): the SDK's `http_config` example reads its header value this way. Other YAML
/// goes as JSON.
#[test]
fn a_string_configuration_goes_as_it_is() {
    let dir = Scratch::new();
    dir.write("f.wasm", "");
    let text = format!(
        "{BASE}filters:\n  - name: f\n    wasm: f.wasm\n    config: The secret to life\n    vm_config: '{{\"a\": 1}}'\n  - name: g\n    wasm: f.wasm\n    config: [1, two]\n"
    );
    let s = keel::config::parse(&text, &dir.0).expect("valid");
    assert_eq!(s.filters[0].plugin_config, b"The secret to life");
    assert_eq!(s.filters[0].vm_config, br#"{"a": 1}"#);
    assert_eq!(s.filters[1].plugin_config, br#"[1,"two"]"#);
}

/// The embedded default names the filters under `target/filters/` of the working directory (the
/// repository root); tests run in `host/`, so it is parsed against the root, or against the
/// folder `cargo xtask test` built the filters into.
#[test]
fn the_embedded_default_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let text = match std::env::var("KEEL_FILTERS_DIR") {
        Ok(dir) => keel::config::DEFAULT_CONFIG.replace("target/filters", &dir),
        Err(_) => keel::config::DEFAULT_CONFIG.to_string(),
    };
    let s = keel::config::parse(&text, root)
        .expect("default config (are the filters built? run `cargo xtask build-wasm`)");
    let names: Vec<&str> = s.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["sticky", "session", "route_suffix"]);
    let store = s.session_store.as_ref().expect("a session store");
    assert_eq!(store.backend, keel::config::StoreBackend::Memory);
    assert_eq!(store.upstream, "keel_store");
    assert!(s.listeners[0].address.ip().is_loopback());
    assert!(s.members.iter().all(|m| m.address.ip().is_loopback()));
}

#[test]
fn keel_check_names_the_key_and_fails() {
    let dir = Scratch::new();
    let bad = dir.write(
        "bad.yaml",
        &BASE.replace("http://127.0.0.1:8082", "htp://127.0.0.1:8082"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("check")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("balancer.members[1].url: unsupported scheme \"htp\""),
        "{stderr}"
    );
    let good = dir.write("good.yaml", BASE);
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("check")
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 listener(s), 2 member(s)"));
}

#[test]
fn the_full_example_is_valid() {
    let dir = Scratch::new();
    for f in ["tls", "filters"] {
        std::fs::create_dir_all(dir.0.join(f)).unwrap();
    }
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    dir.write("tls/cert.pem", &cert.cert.pem());
    dir.write("tls/key.pem", &cert.key_pair.serialize_pem());
    dir.write("filters/sticky.wasm", "");
    dir.write("filters/session.wasm", "");
    dir.write("filters/route_suffix.wasm", "");
    dir.write("ajp-secret", "s3cret\n");
    dir.write("admin-token", "0123456789abcdef0123\n");
    let s = keel::config::parse(keel::config::EXAMPLE_CONFIG, &dir.0).expect("example is valid");
    assert_eq!(s.listeners.len(), 2);
    assert_eq!(s.members.len(), 3);
    assert_eq!(s.ajp.secret.as_deref(), Some("s3cret"));
    let v: serde_json::Value = serde_json::from_slice(&s.filters[1].plugin_config).unwrap();
    assert_eq!(v["routes"]["tomcat2"], "127.0.0.1:8010");
}
