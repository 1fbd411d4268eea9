//! The node transport against a scripted server on a loopback port: connection reuse,
//! timeouts, protocol errors and dead-node marking with a clock the test moves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_store::clock::ManualClock;
use keel_store::meta::Response;
use keel_store::node::{NodeClient, NodeError, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the scripted server does with each command line it reads.
#[derive(Clone, Copy)]
enum Script {
    /// Answers `HD`, one byte per write.
    HdSlowly,
    /// Never answers.
    Silent,
    /// Answers garbage.
    Garbage,
    /// Answers `CLIENT_ERROR`.
    ClientError,
    /// Answers `HD` to the first command, then closes the connection (as a node that
    /// restarts, or closes idle connections, does).
    HdThenClose,
}

/// Starts the server; returns its address and the count of accepted connections.
async fn server(script: Script) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let answer: &[u8] = match script {
                        Script::HdSlowly => b"HD c5\r\n",
                        Script::Silent => continue,
                        Script::Garbage => b"STORED\r\n",
                        Script::ClientError => b"CLIENT_ERROR bad command line format\r\n",
                        Script::HdThenClose => {
                            s.write_all(b"HD\r\n").await.ok();
                            return;
                        }
                    };
                    for b in answer {
                        if s.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        s.flush().await.ok();
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn client(addr: SocketAddr, clock: Arc<ManualClock>) -> NodeClient {
    let config = TransportConfig {
        op_timeout: Duration::from_millis(300),
        retry_delay: Duration::from_secs(10),
        ..TransportConfig::default()
    };
    NodeClient::new("n1", addr, config, clock)
}

#[tokio::test]
async fn connections_are_reused_and_split_answers_decoded() {
    let (addr, accepted) = server(Script::HdSlowly).await;
    let node = client(addr, Arc::new(ManualClock::new()));
    for _ in 0..3 {
        let r = node.call(b"mn\r\n").await.expect("answer");
        assert_eq!(r.cas(), Some(5));
        assert!(matches!(r, Response::Done(_)));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for three calls"
    );
    assert_eq!(node.idle_connections(), 1);
}

#[tokio::test]
async fn a_timeout_marks_the_node_down_until_the_retry_delay_passes() {
    let (addr, accepted) = server(Script::Silent).await;
    let clock = Arc::new(ManualClock::new());
    let node = client(addr, clock.clone());
    let e = node.call(b"mn\r\n").await.expect_err("no answer");
    assert!(matches!(e, NodeError::Timeout { .. }), "{e}");
    assert!(!node.is_available());
    assert_eq!(
        node.idle_connections(),
        0,
        "a timed-out connection is dropped"
    );

    let e = node.call(b"mn\r\n").await.expect_err("down");
    assert!(matches!(e, NodeError::Down(_)), "{e}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a down node is not contacted"
    );

    clock.advance(Duration::from_secs(9));
    assert!(!node.is_available());
    clock.advance(Duration::from_secs(1));
    assert!(node.is_available(), "available again after retry_delay");
    let e = node.call(b"mn\r\n").await.expect_err("still silent");
    assert!(matches!(e, NodeError::Timeout { .. }), "{e}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "tried again on a new connection"
    );
}

#[tokio::test]
async fn a_protocol_error_marks_the_node_down() {
    let (addr, _) = server(Script::Garbage).await;
    let node = client(addr, Arc::new(ManualClock::new()));
    let e = node.call(b"mn\r\n").await.expect_err("garbage");
    assert!(matches!(e, NodeError::Protocol { .. }), "{e}");
    assert!(
        e.to_string().contains("n1"),
        "the error names the node: {e}"
    );
    assert!(!node.is_available());
    assert_eq!(node.idle_connections(), 0);
}

#[tokio::test]
async fn a_refused_connect_marks_the_node_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let node = client(addr, Arc::new(ManualClock::new()));
    let e = node.call(b"mn\r\n").await.expect_err("refused");
    assert!(matches!(e, NodeError::Connect { .. }), "{e}");
    assert!(!node.is_available());
}

#[tokio::test]
async fn an_error_line_drops_the_connection_but_not_the_node() {
    let (addr, accepted) = server(Script::ClientError).await;
    let node = client(addr, Arc::new(ManualClock::new()));
    for _ in 0..2 {
        let e = node.call(b"mn\r\n").await.expect_err("error line");
        assert!(matches!(e, NodeError::Reply { .. }), "{e}");
        assert!(node.is_available());
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "no reuse after an error line"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_node_closed_is_replaced_without_a_failure() {
    let (addr, accepted) = server(Script::HdThenClose).await;
    let node = client(addr, Arc::new(ManualClock::new()));
    for n in 1..=3 {
        let r = node.call(b"mn\r\n").await.expect("answer");
        assert!(matches!(r, Response::Done(_)));
        assert!(node.is_available(), "call {n}: the node is not blamed");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "a new connection each time"
    );
}
