//! A test certificate authority: server certificates for 127.0.0.1, PEM and trust roots.

use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA that signs server certificates for 127.0.0.1.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "approuter test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate (PEM) and key (PEM) for 127.0.0.1 with common name `name`.
    pub fn server(&self, name: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(86_400)).into();
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in approuter::tls::certificates(&self.pem).expect("CA PEM") {
            roots.add(cert).expect("root");
        }
        roots
    }
}

/// A rustls server configuration with a certificate of `ca` for 127.0.0.1, offering `alpn`.
pub fn server_config(ca: &TestCa, alpn: &[&[u8]]) -> std::sync::Arc<rustls::ServerConfig> {
    let (cert, key) = ca.server("backend");
    let certs = approuter::tls::certificates(&cert).expect("certificate PEM");
    let key = approuter::tls::private_key(&key).expect("key PEM");
    let mut config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}

/// As [`server_config`], demanding a client certificate issued by the CA in `client_ca_pem`:
/// a handshake without one, or with another CA's, is refused.
pub fn server_config_demanding_client(
    ca: &TestCa,
    client_ca_pem: &str,
    alpn: &[&[u8]],
) -> std::sync::Arc<rustls::ServerConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (cert, key) = ca.server("backend");
    let certs = approuter::tls::certificates(&cert).expect("certificate PEM");
    let key = approuter::tls::private_key(&key).expect("key PEM");
    let mut client_roots = rustls::RootCertStore::empty();
    for cert in approuter::tls::certificates(client_ca_pem).expect("client CA PEM") {
        client_roots.add(cert).expect("client root");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(client_roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}
