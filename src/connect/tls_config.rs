//! The rustls client configurations: whom they trust (roots, or any server for
//! `strictSSL: false`), which protocols they offer with ALPN, and the client identity.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// How servers are verified.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Against these roots (the system's plus `XS_CACERT_PATH`).
    Roots(Arc<RootCertStore>),
    /// Any certificate is accepted: a destination's `strictSSL: false`.
    AnyServer,
}

/// The application protocols offered with ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocols {
    /// `http/1.1` only: websocket upgrades and the identity provider.
    Http1,
    /// `h2` and `http/1.1`: the upstream pool.
    Http1AndH2,
}

impl Protocols {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Protocols::Http1 => vec![b"http/1.1".to_vec()],
            Protocols::Http1AndH2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// A client certificate chain (leaf first) and its private key, for mutual TLS.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A rustls client configuration verifying servers by `trust`, presenting `identity` if any, and
/// offering `protocols`.
///
/// # Errors
/// [`crate::tls::Error::Identity`] when the key does not fit the certificate.
pub fn client_config(
    trust: &Trust,
    identity: Option<Identity>,
    protocols: Protocols,
) -> Result<ClientConfig, crate::tls::Error> {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(crate::tls::Error::Identity)?;
    let builder = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots.clone()),
        Trust::AnyServer => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer { provider })),
    };
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(crate::tls::Error::Identity)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = protocols.alpn();
    Ok(config)
}

#[derive(Debug)]
struct AcceptAnyServer {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
