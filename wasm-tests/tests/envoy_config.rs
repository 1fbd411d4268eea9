//! The Envoy bootstraps in `envoy-config/` cannot drift from what the filters accept: each keel
//! filter's plugin configuration is taken out of the file (parsed as Envoy's `Bootstrap`, the
//! `StringValue` text Envoy would hand the filter) and the filter is started with exactly that
//! configuration in keel's runtime — `on_vm_start` and `on_configure` must succeed — alone and as
//! the file's whole chain. A request then shows that the sticky filter's header names the
//! cluster endpoint that Envoy's stateful_session will pick.

// Tests may unwrap (keel conventions).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use keel_envoy_config::{WasmFilter, descriptor_pool, parse_bootstrap, summarize, workspace_root};
use keel_wasm::{ChainError, FilterChain, FilterSpec, HeadersVerdict};
use wasm_tests::fake_store::FakeStore;
use wasm_tests::{header, info, request, spec};

const BOOTSTRAPS: &[&str] = &["envoy.yaml", "envoy-sticky.yaml"];

/// The wasm filters of a bootstrap, in chain order.
fn wasm_filters(file: &str) -> Vec<WasmFilter> {
    let pool = descriptor_pool().unwrap();
    let path = workspace_root().join("envoy-config").join(file);
    let bootstrap = parse_bootstrap(pool, &path).unwrap();
    let summary = summarize(pool, &bootstrap).unwrap();
    summary
        .managers
        .into_iter()
        .flat_map(|m| m.wasm_filters)
        .collect()
}

/// A spec for a keel filter exactly as the bootstrap configures it.
fn spec_of(filter: &WasmFilter) -> FilterSpec {
    let file = filter
        .keel_filter()
        .unwrap_or_else(|| panic!("{} is not a keel filter", filter.filename));
    assert_eq!(
        filter.configuration_type, "google.protobuf.StringValue",
        "{}",
        filter.filter_name
    );
    let mut spec = spec(&filter.plugin_name, file, &filter.configuration);
    spec.root_id.clone_from(&filter.root_id);
    spec.vm_id.clone_from(&filter.vm_id);
    spec
}

fn start(specs: Vec<FilterSpec>) -> Result<FilterChain, ChainError> {
    let registry = prometheus::Registry::new();
    // The session filter calls the store upstream named in its configuration (keel_store).
    FilterChain::new(specs, 1, &registry, Arc::new(FakeStore::default()))
}

#[test]
fn every_keel_filter_starts_with_its_envoy_configuration() {
    for file in BOOTSTRAPS {
        let filters = wasm_filters(file);
        assert!(
            filters.len() >= 2,
            "{file}: only {} wasm filters",
            filters.len()
        );
        for filter in &filters {
            if let Err(err) = start(vec![spec_of(filter)]) {
                panic!(
                    "{file}: {} refuses the configuration written for it: {err}\n{}",
                    filter.filter_name, filter.configuration
                );
            }
        }
        start(filters.iter().map(spec_of).collect())
            .unwrap_or_else(|err| panic!("{file}: the whole chain does not start: {err}"));
    }
}

#[test]
fn the_same_path_refuses_a_drifted_configuration() {
    // The check above can fail: a key the filter does not know, slipped into the configuration
    // taken from the file, stops on_configure.
    let filters = wasm_filters("envoy.yaml");
    for filter in &filters {
        let mut drifted = filter.clone();
        drifted.configuration = drifted
            .configuration
            .replacen('{', "{\"stickiness\": true,", 1);
        match start(vec![spec_of(&drifted)]) {
            Err(ChainError::Configure { message, .. }) => {
                assert!(message.contains("stickiness"), "{message}");
            }
            Err(other) => panic!("{}: unexpected {other:?}", filter.filter_name),
            Ok(_) => panic!("{}: a drifted configuration started", filter.filter_name),
        }
    }
}

#[tokio::test]
async fn the_sticky_header_names_the_cluster_endpoint() {
    let filters = wasm_filters("envoy.yaml");
    let sticky = filters
        .iter()
        .find(|f| f.keel_filter() == Some("sticky"))
        .unwrap();
    let chain = start(vec![spec_of(sticky)]).unwrap();
    let mut stream = chain.stream(info());
    let mut req = request(
        "/shop",
        &[
            (
                "cookie",
                "JSESSIONID=4F1C0D2E9A8B7C6D5E4F3A2B1C0D9E8F.tomcat2",
            ),
            ("x-keel-host", "forged"),
        ],
    );
    assert_eq!(
        stream.request_headers(&mut req, true).await,
        HeadersVerdict::Continue
    );
    stream.finish();
    // base64("127.0.0.1:8082"): tomcat2's endpoint in the tomcats cluster; the forged one is gone.
    assert_eq!(header(&req.headers, "x-keel-host"), "MTI3LjAuMC4xOjgwODI=");
    assert_eq!(req.headers.get_all("x-keel-host").iter().count(), 1);
}
