//! keel in front of two real Tomcat 10 instances over AJP (`ajp://` members): stickiness by
//! route holds and the session lives on; kill -9 of one Tomcat fails requests over to the
//! other. Tomcat comes from Debian's `tomcat10` (see `host/ajp/tests/support/tomcat.rs`).
//!
//! The sticky wasm filter is not loaded here: the test sets the routing header itself from
//! the session id's `.jvmRoute` suffix, as the filter does.
#![allow(clippy::unwrap_used)] // tests may unwrap (PLAN.md)

#[allow(dead_code)]
#[path = "proxy/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../ajp/tests/support/tomcat.rs"]
mod tomcat;

use std::time::Duration;

use harness::{Http, Keel, Scratch, config, eventually, filters_section, post_unsized};
use tomcat::Tomcat;

const SECRET: &str = "keel-ajp-interop-secret";

fn two_tomcats() -> (Tomcat, Tomcat) {
    let a = std::thread::spawn(|| Tomcat::start("tc1", SECRET));
    let b = Tomcat::start("tc2", SECRET);
    (a.join().unwrap(), b)
}

fn session_id(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("id="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stickiness_holds_and_kill_9_fails_over() {
    let (mut tc1, tc2) = two_tomcats();
    let scratch = Scratch::new();
    let secret = scratch.write("ajp-secret", &format!("{SECRET}\n"));
    let keel = Keel::start(&config(
        &[
            ("tc1", format!("ajp://{}", tc1.ajp), "active"),
            ("tc2", format!("ajp://{}", tc2.ajp), "active"),
        ],
        &format!("  ajp:\n    secret_file: {}\n", secret.display()),
        "",
    ));
    let http = Http::new();

    // A new session on each member; every later request with its route header and cookie
    // lands on the same Tomcat and finds the session.
    // A Tomcat that is still warming up may miss its first CPINGs (keel then fails over, as it
    // should): wait until each route is served by its own Tomcat before asserting stickiness.
    for route in ["tc1", "tc2"] {
        let id = eventually(
            &format!("{route} in rotation"),
            Duration::from_secs(20),
            || {
                let http = http.clone();
                let url = keel.url("/app/session");
                async move {
                    let r = http.get(&url, &[("x-keel-route", route)]).await;
                    let id = session_id(&r.body);
                    (r.status == 200 && id.ends_with(&format!(".{route}"))).then_some(id)
                }
            },
        )
        .await;
        let cookie = format!("JSESSIONID={id}");
        for visit in 2..=4 {
            let r = http
                .get(
                    &keel.url("/app/session"),
                    &[("x-keel-route", route), ("cookie", &cookie)],
                )
                .await;
            assert_eq!(r.status, 200);
            assert_eq!(session_id(&r.body), id, "same session");
            assert!(r.body.contains(&format!("visits={visit}")), "{}", r.body);
        }
    }
    // Without a route both Tomcats take requests.
    let mut routes = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = http.get(&keel.url("/app/session"), &[]).await;
        routes.insert(
            session_id(&r.body)
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(routes.len(), 2, "{routes:?}");

    // kill -9 tc1: requests for tc1 fail over to tc2 (a new session there).
    tc1.kill9();
    let body = eventually("failover to tc2", Duration::from_secs(10), || {
        let http = http.clone();
        let url = keel.url("/app/session");
        async move {
            let r = http.get(&url, &[("x-keel-route", "tc1")]).await;
            (r.status == 200).then_some(r.body)
        }
    })
    .await;
    assert!(session_id(&body).ends_with(".tc2"), "{body}");
    for _ in 0..5 {
        let r = http
            .get(&keel.url("/app/echo"), &[("x-keel-route", "tc1")])
            .await;
        assert_eq!(r.status, 200, "every request fails over: {r:?}");
    }
}

#[test]
fn keel_refuses_to_start_without_an_ajp_secret() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "keel.yaml",
        &config(&[("tc1", "ajp://127.0.0.1:1".to_owned(), "active")], "", ""),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "keel started without a secret");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no AJP secret configured"), "{text}");
    assert!(
        text.contains("balancer.ajp.secret_file"),
        "says how to fix it: {text}"
    );
}

fn form_fields(body: &str) -> std::collections::BTreeMap<&str, &str> {
    body.lines().filter_map(|l| l.split_once('=')).collect()
}

/// A login form's post, as an application reads it: through keel over AJP, with keel's
/// default filters and without, over HTTP/1.1 (length known and chunked) and HTTP/2.
#[tokio::test(flavor = "multi_thread")]
async fn form_posts_reach_tomcat_parameters_with_and_without_filters() {
    let tc = Tomcat::start("tc1", SECRET);
    let scratch = Scratch::new();
    let secret = scratch.write("ajp-secret", &format!("{SECRET}\n"));
    let members = [("tc1", format!("ajp://{}", tc.ajp), "active")];
    let ajp = format!("  ajp:\n    secret_file: {}\n", secret.display());
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for top in [String::new(), filters_section()] {
        let keel = Keel::start(&config(&members, &ajp, &top));
        let url = keel.url("/app/form");
        // A Tomcat still warming up may miss its first CPINGs (keel then answers 504).
        eventually("tc1 answers", Duration::from_secs(20), || {
            let url = keel.url("/app/echo");
            async move { (Http::new().get(&url, &[]).await.status == 200).then_some(()) }
        })
        .await;
        let filters = if top.is_empty() {
            "no filters"
        } else {
            "filters"
        };
        let sized = Http::new()
            .send(http::Method::POST, &url, &form, "a=1&b=2")
            .await
            .unwrap();
        let chunked = post_unsized(&url, &form, b"a=1&b=2", false).await;
        let h2 = post_unsized(&url, &form, b"a=1&b=2", true).await;
        for (case, r, length, protocol) in [
            ("Content-Length", &sized, "7", "HTTP/1.1"),
            ("chunked", &chunked, "-1", "HTTP/1.1"),
            ("HTTP/2", &h2, "-1", "HTTP/2.0"),
        ] {
            assert_eq!(r.status, 200, "{filters}, {case}: {r:?}");
            let f = form_fields(&r.body);
            assert_eq!((f["a"], f["b"]), ("1", "2"), "{filters}, {case}: {f:?}");
            assert_eq!(f["length"], length, "{filters}, {case}: {f:?}");
            assert_eq!(f["protocol"], protocol, "{filters}, {case}: {f:?}");
            assert_eq!(f["remote"], "127.0.0.1", "{filters}, {case}: {f:?}");
            // The address the client reached, not the listener's.
            assert_eq!(f["local"], "127.0.0.1", "{filters}, {case}: {f:?}");
        }
    }
}
