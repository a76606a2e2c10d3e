//! The HTTPS listener with a test CA: h2 and http/1.1 negotiated by ALPN over TLS 1.2 and 1.3, the
//! request forwarded as https, and a certificate written over the files picked up by new
//! connections while an open one keeps working.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use support::pki::TestCa;
use support::{backend, gateway, Backend, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Replaces a file the way a secret volume does: write aside, then rename over.
fn replace(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).expect("write");
    std::fs::rename(&aside, path).expect("rename");
}

struct TlsRouter {
    router: Gateway,
    cert_path: PathBuf,
    key_path: PathBuf,
}

async fn tls_router(ca: &TestCa, backend: &Backend) -> TlsRouter {
    let folder = tempfile::tempdir().expect("temp dir");
    let cert_path = folder.path().join("tls.crt");
    let key_path = folder.path().join("tls.key");
    let (cert, key) = ca.server("first");
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let router = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destinations(&[("backend", &backend.url())])
    .env("TLS_CERT_PATH", cert_path.display().to_string())
    .env("TLS_KEY_PATH", key_path.display().to_string())
    .env("TLS_RELOAD_INTERVAL", "50")
    .keep(folder)
    .start()
    .await;
    TlsRouter {
        router,
        cert_path,
        key_path,
    }
}

fn https_url(router: &Gateway, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", router.addr.port())
}

/// A raw TLS connection offering `alpn`, limited to `versions`.
async fn connect(
    router: &Gateway,
    ca: &TestCa,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsStream<TcpStream> {
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(router.addr).await.expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("peer certificates")[0]
        .clone()
        .into_owned()
}

/// One HTTP/1.1 request on an open connection; returns the status line.
async fn status_line(stream: &mut TlsStream<TcpStream>, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    text.lines().next().unwrap_or("").to_string()
}

/// (offered protocols, TLS version, expected protocol, expected version)
type AlpnCase = (
    &'static [&'static [u8]],
    &'static rustls::SupportedProtocolVersion,
    &'static [u8],
    rustls::ProtocolVersion,
);

#[tokio::test]
async fn alpn_negotiates_h2_and_http1_over_tls_12_and_13() {
    let ca = TestCa::new();
    let backend = backend().await;
    let tls = tls_router(&ca, &backend).await;
    let router = &tls.router;

    let table: &[AlpnCase] = &[
        (
            &[b"h2", b"http/1.1"],
            &rustls::version::TLS13,
            b"h2",
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &[b"http/1.1"],
            &rustls::version::TLS13,
            b"http/1.1",
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &[b"h2", b"http/1.1"],
            &rustls::version::TLS12,
            b"h2",
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &[b"http/1.1"],
            &rustls::version::TLS12,
            b"http/1.1",
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ];
    for (offered, version, expected, expected_version) in table {
        let stream = connect(router, &ca, offered, &[version]).await;
        let (_, session) = stream.get_ref();
        assert_eq!(
            session.alpn_protocol(),
            Some(*expected),
            "offered {offered:?} over {version:?}"
        );
        assert_eq!(session.protocol_version(), Some(*expected_version));
    }

    // Real clients over each protocol reach the backend, which learns that the client used https.
    let ca_cert = reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("ca");
    for (http1_only, expected) in [(false, http::Version::HTTP_2), (true, http::Version::HTTP_11)] {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(ca_cert.clone())
            .no_proxy();
        if http1_only {
            builder = builder.http1_only();
        }
        let client = builder.build().expect("client");
        let response = client.get(https_url(router, "/hello")).send().await.expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), expected);
        let seen = backend.next_matching(|seen| seen.uri == "/hello").await;
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
    }
}

#[tokio::test]
async fn plain_http_is_refused_on_the_tls_port() {
    let ca = TestCa::new();
    let backend = backend().await;
    let tls = tls_router(&ca, &backend).await;
    let response = support::client().get(tls.router.url("/hello")).send().await;
    assert!(response.is_err(), "plain HTTP was answered: {response:?}");
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn new_connections_get_a_rotated_certificate_and_open_ones_keep_working() {
    let ca = TestCa::new();
    let backend = backend().await;
    let tls = tls_router(&ca, &backend).await;
    let mut open = connect(&tls.router, &ca, &[b"http/1.1"], &[&rustls::version::TLS13]).await;
    let first = peer_leaf(&open);
    assert!(status_line(&mut open, "/before").await.starts_with("HTTP/1.1 200"));

    let (cert, key) = ca.server("second");
    // Key first, certificate second: in between the pair does not match and must not be served.
    replace(&tls.key_path, &key);
    replace(&tls.cert_path, &cert);
    let expected = approuter::tls::certificates(&cert).expect("new certificate")[0].clone();

    // The files are polled; a bounded wait for the next check to swap them in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rotated = loop {
        let fresh = connect(&tls.router, &ca, &[b"http/1.1"], &[&rustls::version::TLS13]).await;
        let leaf = peer_leaf(&fresh);
        if leaf != first {
            break (fresh, leaf);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut fresh, leaf) = rotated;
    assert_eq!(leaf, expected, "a new connection gets the rotated certificate");
    assert!(status_line(&mut fresh, "/after").await.starts_with("HTTP/1.1 200"));
    // The connection opened before the swap still works with its old certificate.
    assert_eq!(peer_leaf(&open), first);
    assert!(status_line(&mut open, "/still").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_certificate_without_its_key_is_a_configuration_error() {
    let (_dir, config) = gateway(json!({"routes": []}))
        .env("TLS_CERT_PATH", "/nonexistent/tls.crt")
        .config();
    let errors = config
        .expect_err("half a TLS configuration must be refused")
        .to_string();
    assert!(errors.contains("TLS_KEY_PATH"), "{errors}");
}
