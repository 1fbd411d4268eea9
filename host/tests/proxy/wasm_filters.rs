//! keel with its real filter chain: `sticky.wasm` and `route_suffix.wasm` (built by
//! `cargo xtask build-wasm`, found through `KEEL_FILTERS_DIR` or `target/filters/`) loaded by
//! keel-wasm inside `keel serve`. The cookie's route picks the member; after that member is
//! killed the client is served by the other one and gets a cookie naming it; a client-sent
//! routing header is ignored.

use crate::harness::{
    Backend, Http, Keel, config, filters_dir, filters_section, post_unsized, read_some, two_oks,
};

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

/// With filters on, a body keeps its framing as Envoy keeps it: a request's Content-Length
/// reaches the member, a chunked one goes on chunked, and a response's Content-Length reaches
/// the client (the filters read no body, so nothing changes its length).
#[tokio::test(flavor = "multi_thread")]
async fn the_filter_chain_keeps_content_length() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", &filters_section()));
    let url = keel.url("/echo-headers");
    let r = Http::new()
        .send(http::Method::POST, &url, &[], "a=1&b=2")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("content-length: 7\n"), "{}", r.body);
    assert!(!r.body.contains("transfer-encoding"), "{}", r.body);
    let length = r
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok());
    assert_eq!(length, Some(r.body.len().to_string().as_str()), "{r:?}");

    let r = post_unsized(&url, &[], b"a=1&b=2", false).await;
    assert!(
        r.body.contains("transfer-encoding: chunked\n"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("content-length"), "{}", r.body);
}

/// A member that answers before it has read the request body (nginx's `return 200`) gets the
/// rest of the body through the filters, and the client's connection stays usable: the next
/// request on it is answered. Before, the filter stream ended with the response and cut the
/// request body short, and keel closed the client's connection (wrk saw socket errors).
#[tokio::test(flavor = "multi_thread")]
async fn an_early_answer_leaves_the_connection_usable() {
    use tokio::io::AsyncWriteExt;
    let a = Backend::start("a");
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", &filters_section()));
    let addr = keel.url("").trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let body = vec![b'k'; 1 << 20];
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&body).await?;
        wr.write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            .await?;
        Ok::<_, std::io::Error>(wr)
    });
    let seen = read_some(&mut rd, two_oks).await;
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.contains("early"), "{text}");
    writer
        .await
        .expect("writer")
        .expect("the whole request was written");
}
