//! The shipped bootstraps pass every check; broken copies of them (made here, in a temporary
//! directory) are refused, each for the reason it was broken.
//!
//! The `.wasm` files must be built (`cargo xtask build-wasm`; `KEEL_FILTERS_DIR` names another
//! directory): the checks require that the files the bootstraps load exist.

use std::path::{Path, PathBuf};

use keel_envoy_config::{check_file, descriptor_pool, parse_bootstrap, workspace_root};

fn shipped(name: &str) -> PathBuf {
    workspace_root().join("envoy-config").join(name)
}

/// A copy of a shipped file with `from` replaced by `to` (which must change it), in cargo's
/// scratch directory for tests (under `target/`: nothing is left in /tmp).
fn broken(file: &str, from: &str, to: &str, label: &str) -> PathBuf {
    let text = std::fs::read_to_string(shipped(file)).expect("the shipped file is readable");
    assert!(text.contains(from), "{file} does not contain `{from}`");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keel-envoy-config");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{label}.yaml"));
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write the broken copy");
    path
}

/// The schema error for a broken copy (the schema must refuse it).
fn schema_error(path: &Path) -> String {
    let pool = descriptor_pool().expect("Envoy's protos compile");
    match parse_bootstrap(pool, path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(err) => err,
    }
}

/// The cross-reference problems of a broken copy that the schema accepts.
fn problems(path: &Path) -> Vec<String> {
    match check_file(path) {
        Ok(_) => panic!("{} passed every check", path.display()),
        Err(problems) => problems,
    }
}

fn assert_mentions(problems: &[String], what: &str) {
    assert!(
        problems.iter().any(|p| p.contains(what)),
        "no problem mentions `{what}`: {problems:#?}"
    );
}

#[test]
fn envoy_yaml_passes() {
    let summary = check_file(&shipped("envoy.yaml")).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(summary.managers.len(), 1);
    let hcm = &summary.managers[0];
    let keel: Vec<_> = hcm
        .wasm_filters
        .iter()
        .filter_map(|w| w.keel_filter())
        .collect();
    assert_eq!(keel, ["sticky", "session", "route_suffix"]);
    assert!(
        hcm.wasm_filters
            .iter()
            .all(|w| w.failure_policy == "FAIL_RELOAD" && w.runtime == "envoy.wasm.runtime.v8")
    );
    assert_eq!(hcm.stateful_session_header.as_deref(), Some("x-keel-host"));
    let names: Vec<_> = summary.clusters.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["tomcats", "keel_store"]);
    assert_eq!(summary.admin_address.as_deref(), Some("127.0.0.1:9901"));
}

#[test]
fn envoy_sticky_yaml_passes() {
    let summary = check_file(&shipped("envoy-sticky.yaml")).unwrap_or_else(|e| panic!("{e:#?}"));
    let keel: Vec<_> = summary.managers[0]
        .wasm_filters
        .iter()
        .filter_map(|w| w.keel_filter())
        .collect();
    assert_eq!(keel, ["sticky", "route_suffix"]);
}

#[test]
fn a_misspelt_field_is_refused_with_its_path() {
    let err = schema_error(&broken(
        "envoy.yaml",
        "connect_timeout: 2s",
        "connect_timout: 2s",
        "typo",
    ));
    assert!(err.contains("connect_timout"), "{err}");
    assert!(err.contains("static_resources.clusters[0]"), "{err}");
}

#[test]
fn a_misspelt_field_inside_an_any_is_refused() {
    // Two Anys deep: the listener's HCM, then the stateful_session filter's session_state.
    let err = schema_error(&broken(
        "envoy.yaml",
        "strict: false",
        "strictly: false",
        "typo_any",
    ));
    assert!(err.contains("strictly"), "{err}");
}

#[test]
fn an_unknown_type_is_refused() {
    let err = schema_error(&broken(
        "envoy.yaml",
        "envoy.extensions.filters.http.router.v3.Router",
        "envoy.extensions.filters.http.router.v3.Routr",
        "bad_type",
    ));
    assert!(err.contains("Routr"), "{err}");
}

#[test]
fn a_type_that_does_not_fit_the_fields_is_refused() {
    // A real message, but not the one these fields belong to.
    let err = schema_error(&broken(
        "envoy.yaml",
        "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        "wrong_type",
    ));
    assert!(err.contains("mutations"), "{err}");
}

#[test]
fn wrong_value_types_are_refused() {
    for (from, to, label, what) in [
        (
            "lb_policy: ROUND_ROBIN",
            "lb_policy: ROUND_ROBBIN",
            "enum",
            "ROUND_ROBBIN",
        ),
        (
            "port_value: 9901",
            "port_value: ninety",
            "port",
            "port_value",
        ),
        (
            "base_ejection_time: 10s",
            "base_ejection_time: ten",
            "duration",
            "base_ejection_time",
        ),
        (
            "use_remote_address: true",
            "use_remote_address: [true]",
            "bool",
            "use_remote_address",
        ),
    ] {
        let err = schema_error(&broken("envoy.yaml", from, to, label));
        assert!(err.contains(what), "{label}: {err}");
    }
}

#[test]
fn a_route_to_an_undefined_cluster_is_refused() {
    let p = problems(&broken(
        "envoy.yaml",
        "cluster: tomcats",
        "cluster: tomcat",
        "route_cluster",
    ));
    assert_mentions(&p, "names cluster `tomcat`, which is not defined");
}

#[test]
fn a_cluster_defined_twice_is_refused() {
    let p = problems(&broken(
        "envoy.yaml",
        "- name: keel_store\n",
        "- name: tomcats\n",
        "dup_cluster",
    ));
    assert_mentions(&p, "cluster `tomcats` is defined twice");
    assert_mentions(&p, "store_upstream `keel_store` is not a cluster");
}

#[test]
fn the_router_must_be_last() {
    let p = problems(&broken(
        "envoy.yaml",
        "strict: false\n          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
        "strict: false\n          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n          - name: late\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n              max_request_bytes: 1024\n",
        "router_last",
    ));
    assert_mentions(&p, "the last HTTP filter is not the router");
}

#[test]
fn the_sticky_header_must_be_the_one_stateful_session_reads() {
    let p = problems(&broken(
        "envoy.yaml",
        "\"header\": \"x-keel-host\"",
        "\"header\": \"x-keel-route\"",
        "header",
    ));
    assert_mentions(
        &p,
        "sets `x-keel-route` but stateful_session reads `x-keel-host`",
    );
}

#[test]
fn filter_routes_must_be_the_cluster_endpoints() {
    let p = problems(&broken(
        "envoy.yaml",
        "port_value: 8082 }   # tomcat2",
        "port_value: 8083 }   # tomcat2",
        "endpoints",
    ));
    assert_mentions(
        &p,
        "route `tomcat2` is 127.0.0.1:8082, which is no endpoint",
    );
}

#[test]
fn filter_routes_must_agree() {
    let p = problems(&broken(
        "envoy.yaml",
        "\"routes\": { \"tomcat1\": \"127.0.0.1:8081\", \"tomcat2\": \"127.0.0.1:8082\" }\n                    }\n                failure_policy: FAIL_RELOAD\n          # 3.",
        "\"routes\": { \"tomcat1\": \"127.0.0.1:8081\" }\n                    }\n                failure_policy: FAIL_RELOAD\n          # 3.",
        "routes_agree",
    ));
    assert_mentions(
        &p,
        "the routes of `keel.session` differ from those of `keel.sticky`",
    );
}

#[test]
fn a_missing_wasm_file_is_refused() {
    let p = problems(&broken(
        "envoy.yaml",
        "target/filters/session.wasm",
        "filters/session.wasm",
        "wasm_path",
    ));
    assert_mentions(&p, "is not under target/filters/");
}

#[test]
fn the_plugin_configuration_must_be_a_string_value() {
    // The sticky filter's JSON in a StringValue becomes `{}` in a BytesValue: valid for Envoy's
    // schema, but Envoy would hand the filter the bytes, not the JSON text keel's filters read.
    let text = std::fs::read_to_string(shipped("envoy-sticky.yaml")).expect("readable");
    let start = text
        .find("\"@type\": type.googleapis.com/google.protobuf.StringValue")
        .expect("a StringValue");
    let end = start
        + text[start..]
            .find("\n                    }\n")
            .expect("the end of the JSON")
        + "\n                    }\n".len();
    let from = &text[start..end];
    let p = problems(&broken(
        "envoy-sticky.yaml",
        from,
        "\"@type\": type.googleapis.com/google.protobuf.BytesValue\n                  value: e30=\n",
        "bytes_config",
    ));
    assert_mentions(&p, "not a google.protobuf.StringValue");
}

#[test]
fn protoc_gen_validate_rules_are_enforced() {
    for (from, to, label, what) in [
        // string min_len: 1
        (
            "name: x-keel-host",
            "name: \"\"",
            "min_len",
            "session_state.typed_config.name: `` is too short",
        ),
        // Duration gt: 0
        (
            "connect_timeout: 2s",
            "connect_timeout: 0s",
            "duration_gt",
            "clusters[0].connect_timeout: 0 is out of range (> 0)",
        ),
        // Duration required
        (
            "    - timeout: 2s\n      interval: 5s",
            "    - interval: 5s",
            "duration_required",
            "clusters[0].health_checks[0].timeout: is required",
        ),
        // a required oneof
        (
            "match: { prefix: \"/\" }",
            "match: { case_sensitive: true }",
            "oneof",
            "routes[1].match: one of prefix, path,",
        ),
        // UInt32Value lte: 100
        (
            "max_ejection_percent: 50",
            "max_ejection_percent: 150",
            "wrapper",
            "max_ejection_percent: 150 is out of range (<= 100)",
        ),
    ] {
        let p = problems(&broken("envoy.yaml", from, to, label));
        assert_mentions(&p, what);
    }
}
