//! Client protocols: HTTP/2 cleartext (prior knowledge), and TLS with ALPN choosing h2 or
//! http/1.1; the member sees X-Forwarded-Proto https behind TLS, a filter sees the TLS session,
//! and the response streams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::harness::{Backend, Keel, Scratch, config, filters_dir};

#[tokio::test(flavor = "multi_thread")]
async fn http2_cleartext_prior_knowledge() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", ""));
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    let res = client
        .get(keel.url("/echo-headers").parse().unwrap())
        .await
        .expect("h2c request");
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.headers()["x-served-by"], "a");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains(&format!("host: {}", keel.addr)),
        "Host from :authority: {body}"
    );
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
}

/// A TLS connection to keel at `addr` (trusting `roots`, offering ALPN `alpn`).
pub(crate) async fn tls_connect(
    addr: std::net::SocketAddr,
    roots: RootCertStore,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

async fn tls_request(
    addr: std::net::SocketAddr,
    roots: RootCertStore,
    alpn: &[u8],
) -> (Vec<u8>, http::Version, String) {
    let tls = tls_connect(addr, roots, alpn).await;
    let negotiated = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let req = Request::get("https://localhost/echo-headers")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = if negotiated == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = "/echo-headers".parse().unwrap();
        send.send_request(Request::from_parts(parts, body))
            .await
            .unwrap()
    };
    let version = res.version();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        negotiated,
        version,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// keel's configuration for member `a` with a TLS listener (a fresh self-signed certificate for
/// `localhost`, written into the returned directory), and the roots that trust it.
pub(crate) fn tls_config(a: &Backend) -> (Scratch, String, RootCertStore) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    tls_config_with(a, cert)
}

/// [`tls_config`] with the listener's certificate given.
fn tls_config_with(a: &Backend, cert: rcgen::CertifiedKey) -> (Scratch, String, RootCertStore) {
    let dir = Scratch::new();
    let cert_path = dir.write("cert.pem", &cert.cert.pem());
    let key_path = dir.write("key.pem", &cert.key_pair.serialize_pem());
    let text = config(&[("a", a.url(), "active")], "", "").replace(
        "  - address: 127.0.0.1:0\n",
        &format!(
            "  - address: 127.0.0.1:0\n    tls:\n      cert: {}\n      key: {}\n",
            cert_path.display(),
            key_path.display()
        ),
    );
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    (dir, text, roots)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_alpn_h2_and_http11() {
    let a = Backend::start("a");
    let (_dir, text, roots) = tls_config(&a);
    let keel = Keel::start(&text);

    let (alpn, version, body) = tokio::time::timeout(
        Duration::from_secs(10),
        tls_request(keel.addr, roots.clone(), b"h2"),
    )
    .await
    .unwrap();
    assert_eq!(alpn, b"h2");
    assert_eq!(version, http::Version::HTTP_2);
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");

    let (alpn, version, body) = tokio::time::timeout(
        Duration::from_secs(10),
        tls_request(keel.addr, roots, b"http/1.1"),
    )
    .await
    .unwrap();
    assert_eq!(alpn, b"http/1.1");
    assert_eq!(version, http::Version::HTTP_11);
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
}

/// The member's echo of a request over TLS (ALPN `alpn`) to keel configured with `tls` and the
/// probe (mode `headers`, which copies properties into the request).
async fn probe_over_tls(tls: (Scratch, String, RootCertStore), alpn: &[u8]) -> String {
    let (_dir, text, roots) = tls;
    let keel = Keel::start(&format!(
        "{text}filters:\n  - name: probe\n    wasm: {}\n    config: headers\n",
        filters_dir().join("test_probe.wasm").display()
    ));
    let (_, _, body) =
        tokio::time::timeout(Duration::from_secs(10), tls_request(keel.addr, roots, alpn))
            .await
            .unwrap();
    body
}

/// A filter on a TLS listener reads the session as Envoy's properties give it
/// (`source/extensions/filters/common/expr/context.cc`: `connection.requested_server_name` is
/// the SNI, `connection.tls_version` the version); the probe copies both into the request,
/// which the member echoes.
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_reads_the_tls_session() {
    let a = Backend::start("a");
    let body = probe_over_tls(tls_config(&a), b"http/1.1").await;
    assert!(body.contains("x-prop-sni: 0:localhost\n"), "{body}");
    assert!(body.contains("x-prop-tls-version: TLSv1.3\n"), "{body}");
}

/// The listener's own certificate as Envoy's properties give it
/// (`source/extensions/filters/common/expr/context.cc` `extractSslInfo`, from
/// `source/common/tls/connection_info_impl.cc`): the subject in RFC 2253 form, last RDN first
/// and the comma escaped (`utility.cc` `getRFC2253NameFromCertificate`, `XN_FLAG_RFC2253`), and
/// the first URI and the first DNS subject alternative names (`[0]`).
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_reads_the_listeners_certificate() {
    let a = Backend::start("a");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "keel.example".into()]).unwrap();
    for uri in ["spiffe://keel.test/listener", "https://keel.example/second"] {
        let uri = uri.to_string().try_into().unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
    }
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CountryName, "DE");
    name.push(rcgen::DnType::OrganizationName, "Shop, Inc.");
    name.push(rcgen::DnType::CommonName, "keel listener");
    params.distinguished_name = name;
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key_pair).unwrap();
    let tls = tls_config_with(&a, rcgen::CertifiedKey { cert, key_pair });
    let body = probe_over_tls(tls, b"h2").await;
    assert!(
        body.contains("x-prop-subject-local: 0:CN=keel listener,O=Shop\\, Inc.,C=DE\n"),
        "{body}"
    );
    assert!(
        body.contains("x-prop-uri-san-local: 0:spiffe://keel.test/listener\n"),
        "{body}"
    );
    assert!(
        body.contains("x-prop-dns-san-local: 0:localhost\n"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_stream_through() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(&[("a", a.url(), "active")], "", ""));
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let started = std::time::Instant::now();
    let res = client
        .get(keel.url("/stream").parse().unwrap())
        .await
        .unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first\n");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the first chunk came before the member finished ({:?})",
        started.elapsed()
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_a_busy_one_is_not() {
    let a = Backend::start("a");
    let keel = Keel::start(&config(
        &[("a", a.url(), "active")],
        "",
        "limits:\n  idle_timeout: 600ms\n",
    ));
    let tcp = tokio::net::TcpStream::connect(keel.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    let conn = tokio::spawn(conn);
    // A request that takes longer than the idle timeout keeps the connection open (the
    // harness allows the member 2 s for the response head).
    let started = std::time::Instant::now();
    let req = Request::get(keel.url("/slow/1800"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.expect("slow request");
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1800));
    assert!(
        !conn.is_finished(),
        "busy for 1.8 s with idle_timeout 600 ms: still open"
    );
    // Idle now: keel sends GOAWAY and closes; the client's connection ends cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("closed once idle");
    ended.unwrap().expect("a clean end (GOAWAY), not an error");
}
