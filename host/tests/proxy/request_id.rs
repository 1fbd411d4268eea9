//! Envoy's generated `x-request-id` in `keel serve`: a request without one reaches the member
//! with a fresh UUID v4, a client's own id is kept, and `forwarded.generate_request_id: false`
//! turns it off (`source/common/http/conn_manager_utility.cc` `mutateRequestHeaders`:
//! `rid_extension->set(request_headers, force_set)` with `force_set` false for a non-edge
//! request, as every request is under the default `use_remote_address: false`;
//! `source/extensions/request_id/uuid/config.cc` `UUIDRequestIDExtension::set`).

use crate::harness::{Backend, Http, Keel, config};
use crate::uuid::is_uuid_v4;

/// The `x-request-id` the member saw, if any.
async fn seen_id(http: &Http, keel: &Keel, headers: &[(&str, &str)]) -> Option<String> {
    let r = http.get(&keel.url("/echo-headers"), headers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_an_id_gets_a_uuid_and_a_clients_id_is_kept() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", ""));
    let http = Http::new();
    let first = seen_id(&http, &keel, &[]).await.expect("a generated id");
    assert!(is_uuid_v4(&first), "{first}");
    let second = seen_id(&http, &keel, &[]).await.expect("a generated id");
    assert!(is_uuid_v4(&second), "{second}");
    assert_ne!(first, second, "every request gets its own");
    assert_eq!(
        seen_id(&http, &keel, &[("x-request-id", "client-42")]).await,
        Some("client-42".to_owned()),
        "not an edge request: the client's id is kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_request_id_false_adds_none() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "forwarded:\n  generate_request_id: false\n",
    ));
    let http = Http::new();
    assert_eq!(seen_id(&http, &keel, &[]).await, None);
}
