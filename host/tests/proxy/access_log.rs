//! The access log in a file of its own: what a line holds (escaped client bytes, the member, a
//! hash of the session id and never the id), rotation by SIGHUP, and every queued line written
//! at shutdown.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{Backend, Http, Keel, config, eventually};

/// A keel in front of backend `a`, its access log in `access.log` next to its configuration.
fn keel_with_access_log(a: &Backend) -> Keel {
    Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "access_log:\n  path: access.log\n",
    ))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the file has a line containing `needle`; that line.
async fn line_with(path: &Path, needle: &str) -> String {
    eventually(
        &format!("a line with {needle:?} in {}", path.display()),
        Duration::from_secs(5),
        || async { lines(path).into_iter().find(|l| l.contains(needle)) },
    )
    .await
}

#[tokio::test]
async fn a_line_names_the_member_and_hashes_the_session() {
    let a = Backend::start("a");
    let keel = keel_with_access_log(&a);
    let http = Http::new();
    let reply = http
        .get(
            &keel.url("/shop?q=1"),
            &[
                ("cookie", "theme=dark; JSESSIONID=S3CR3T0000.a"),
                ("user-agent", "evil\t\"agent\""),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    let line = line_with(&keel.dir.0.join("access.log"), "GET /shop?q=1").await;
    let digest = Sha256::digest(b"S3CR3T0000.a");
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert!(line.contains(" 200 "), "{line}");
    assert!(line.contains("member=a "), "{line}");
    assert!(line.contains(&format!("session={hash}")), "{line}");
    assert!(!line.contains("S3CR3T"), "the session id itself: {line}");
    assert!(line.contains("\"evil\\x09\\x22agent\\x22\""), "{line}");
}

#[tokio::test]
async fn sighup_reopens_the_file_after_rotation() {
    let a = Backend::start("a");
    let keel = keel_with_access_log(&a);
    let http = Http::new();
    let log = keel.dir.0.join("access.log");
    let rotated = keel.dir.0.join("access.log.1");
    assert_eq!(http.get(&keel.url("/before"), &[]).await.status, 200);
    line_with(&log, "GET /before").await;
    std::fs::rename(&log, &rotated).unwrap();
    keel.signal("HUP");
    keel.wait_line("keel: reloaded");
    assert_eq!(http.get(&keel.url("/after"), &[]).await.status, 200);
    line_with(&log, "GET /after").await;
    let old = lines(&rotated);
    assert!(old.iter().any(|l| l.contains("GET /before")), "{old:?}");
    assert!(!old.iter().any(|l| l.contains("GET /after")), "{old:?}");
}

#[tokio::test]
async fn every_line_is_written_before_keel_exits() {
    let a = Backend::start("a");
    let mut keel = keel_with_access_log(&a);
    let http = Http::new();
    const N: usize = 200;
    for i in 0..N {
        assert_eq!(
            http.get(&keel.url(&format!("/n{i}")), &[]).await.status,
            200
        );
    }
    keel.signal("TERM");
    assert!(keel.wait_exit(Duration::from_secs(10)).success());
    let written = lines(&keel.dir.0.join("access.log"));
    for i in 0..N {
        let path = format!("GET /n{i} ");
        assert!(
            written.iter().any(|l| l.contains(&path)),
            "no line for /n{i} among {} lines",
            written.len()
        );
    }
    assert_eq!(written.len(), N);
}
