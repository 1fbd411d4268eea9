//! HTTP/1.1 upgrades: a request with `Connection: upgrade` reaches its session's member with the
//! upgrade headers, the member's 101 reaches the client, and then bytes flow both ways through
//! keel; a member that does not switch answers as usual.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{head_end, read_some, two_members, whole_answer};

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_is_tunnelled_to_the_sessions_member() {
    let (_a, _b, keel) = two_members("");
    let mut tcp = TcpStream::connect(keel.addr).await.unwrap();
    tcp.write_all(
        b"GET /echo-upgrade HTTP/1.1\r\nHost: keel\r\nConnection: Upgrade\r\nUpgrade: keel-echo\r\nx-keel-route: b\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_some(&mut tcp, head_end).await;
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: keel-echo"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(
        head.contains("x-served-by: b"),
        "the session's member: {head}"
    );
    // After the head: the member's greeting, then an echo of what the client sends.
    let rest = head
        .split_once("\r\n\r\n")
        .map_or("", |(_, r)| r)
        .to_owned();
    let greeting = if rest.contains('\n') {
        rest.into_bytes()
    } else {
        read_some(&mut tcp, |b| b.contains(&b'\n')).await
    };
    assert_eq!(greeting, b"b\n");
    for message in [&b"ping"[..], b"\x00\xffbinary", b"pong"] {
        tcp.write_all(message).await.unwrap();
        let echoed = read_some(&mut tcp, |b| b.len() >= message.len()).await;
        assert_eq!(echoed, message);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_does_not_switch_answers_as_http() {
    let (_a, _b, keel) = two_members("");
    let mut tcp = TcpStream::connect(keel.addr).await.unwrap();
    for _ in 0..2 {
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: keel\r\nConnection: Upgrade\r\nUpgrade: keel-echo\r\n\r\n",
        )
        .await
        .unwrap();
        let answer = read_some(&mut tcp, whole_answer).await;
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(!answer.contains("upgrade: keel-echo"), "{answer}");
    }
}
