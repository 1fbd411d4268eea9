//! TLS for listeners (rustls with the ring provider; ALPN h2 and http/1.1) and the TLS facts
//! passed to upstreams.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig, ServerConnection};

use crate::upstream::TlsInfo;

/// A TLS listener: its acceptor, and what filters read of its certificate (read once here,
/// not per connection).
#[derive(Clone)]
pub struct ListenerTls {
    /// Handshakes with the configured certificate and key.
    pub acceptor: TlsAcceptor,
    /// The first certificate of the chain, as filters read it.
    pub local_certificate: Arc<keel_wasm::LocalCertificate>,
}

/// Builds a listener's TLS from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<ListenerTls, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let Some(leaf) = certs.first() else {
        return Err(format!("{}: no certificate found", cert.display()));
    };
    let local_certificate = Arc::new(
        crate::server::certificate::local(leaf).map_err(|e| format!("{}: {e}", cert.display()))?,
    );
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ListenerTls {
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
        local_certificate,
    })
}

/// Protocol, cipher and key size of an established connection.
pub fn info(conn: &ServerConnection) -> TlsInfo {
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_string(),
    };
    // The IANA name, as Tomcat's own JSSE connector reports it: rustls spells the TLS 1.3
    // suites `TLS13_…` where IANA has `TLS_…`; its TLS 1.2 names are IANA's already.
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| match s.suite().as_str() {
            Some(name) => match name.strip_prefix("TLS13_") {
                Some(rest) => format!("TLS_{rest}"),
                None => name.to_string(),
            },
            None => format!("{:?}", s.suite()),
        })
        .unwrap_or_default();
    let key_size = if cipher.contains("AES_128") {
        128
    } else if cipher.contains("AES_256") || cipher.contains("CHACHA20") {
        256
    } else {
        0
    };
    TlsInfo {
        protocol,
        cipher,
        key_size,
    }
}

/// The session as filters read it: the version, the SNI lowercased, as Envoy keeps it
/// (`ConnectionSocketImpl::setRequestedServerName`), and the listener's certificate.
pub fn for_filters(
    conn: &ServerConnection,
    info: &TlsInfo,
    listener: &ListenerTls,
) -> keel_wasm::DownstreamTls {
    keel_wasm::DownstreamTls {
        version: info.protocol.clone(),
        server_name: conn.server_name().map(str::to_ascii_lowercase),
        local_certificate: listener.local_certificate.clone(),
    }
}

/// Whether ALPN chose HTTP/2.
pub fn is_h2(conn: &ServerConnection) -> bool {
    conn.alpn_protocol() == Some(b"h2")
}
