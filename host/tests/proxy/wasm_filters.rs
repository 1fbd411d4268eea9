//! keel with its real filter chain: `sticky.wasm` and `route_suffix.wasm` (built by
//! `cargo xtask build-wasm`, found through `KEEL_FILTERS_DIR` or `target/filters/`) loaded by
//! keel-wasm inside `keel serve`. The cookie's route picks the member; after that member is
//! killed the client is served by the other one and gets a cookie naming it; a client-sent
//! routing header is ignored.

use crate::harness::{Backend, Http, Keel, config, filters_dir, filters_section};

#[tokio::test(flavor = "multi_thread")]
async fn the_wasm_filters_route_by_cookie_and_rewrite_after_failover() {
    let mut a = Backend::start("a");
    let b = Backend::start("b");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active"), ("b", b.url(), "active")],
        "",
        &filters_section(),
    ));
    let http = Http::new();
    for (cookie, member) in [("JSESSIONID=ABC.a", "a"), ("JSESSIONID=XYZ.b", "b")] {
        for _ in 0..3 {
            let r = http.get(&keel.url("/"), &[("cookie", cookie)]).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.served_by(), member, "{cookie} belongs to {member}");
            assert!(
                r.headers.get("set-cookie").is_none(),
                "the route is already right: no cookie for {cookie}"
            );
        }
    }
    let r = http
        .get(
            &keel.url("/;jsessionid=PQR.b"),
            &[("cookie", "JSESSIONID=ABC.a")],
        )
        .await;
    assert_eq!(
        r.served_by(),
        "b",
        "the path parameter wins over the cookie"
    );
    let r = http
        .get(
            &keel.url("/"),
            &[("cookie", "JSESSIONID=ABC.a"), ("x-keel-route", "b")],
        )
        .await;
    assert_eq!(
        r.served_by(),
        "a",
        "a client-sent routing header is ignored"
    );

    a.kill();
    let r = http
        .get(&keel.url("/"), &[("cookie", "JSESSIONID=ABC.a")])
        .await;
    assert_eq!(r.status, 200, "the session fails over");
    assert_eq!(r.served_by(), "b");
    let set_cookie = r
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        set_cookie.starts_with("JSESSIONID=ABC.b"),
        "route_suffix moves the client to the member that served: {set_cookie:?}"
    );
    let r = http
        .get(&keel.url("/"), &[("cookie", "JSESSIONID=ABC.b")])
        .await;
    assert_eq!(r.served_by(), "b", "the moved session sticks");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_with_a_bad_configuration_stops_keel_naming_it() {
    let a = Backend::start("a");
    let dir = filters_dir();
    let text = config(
        &[("a", a.url(), "active")],
        "",
        &format!(
            "filters:\n  - name: sticky\n    wasm: {}\n    config:\n      colour: blue\n",
            dir.join("sticky.wasm").display()
        ),
    );
    let scratch = crate::harness::Scratch::new();
    let path = scratch.write("keel.yaml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run keel");
    assert!(!out.status.success(), "keel must refuse to start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sticky") && stderr.contains("colour"),
        "the error names the filter and the field: {stderr}"
    );
}
