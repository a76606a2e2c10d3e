//! TLS material: PEM loading and trust roots. The aws-lc-rs provider is the only one compiled in.
//! [`server`]: the HTTPS listener's reloading certificate; the client configurations are
//! [`crate::connect`]'s.

pub mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no certificate found in PEM")]
    NoCertificate,
    #[error("invalid certificate PEM: {0}")]
    CertificatePem(String),
    #[error("no private key found in PEM (PKCS#1, PKCS#8 or SEC1 expected)")]
    NoPrivateKey,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate and key do not match or are unusable: {0}")]
    Identity(#[source] rustls::Error),
    #[error("invalid trust root: {0}")]
    Root(String),
}

/// The process-wide crypto provider (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Bindings often carry PEM with literal `\n` sequences; SAP's libraries unescape them too.
pub fn unescape_pem(pem: &str) -> String {
    if pem.contains("\\n") {
        pem.replace("\\n", "\n")
    } else {
        pem.to_string()
    }
}

/// Every certificate in a PEM text, in order (leaf first for a chain).
///
/// # Errors
/// [`Error::NoCertificate`] or [`Error::CertificatePem`].
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = unescape_pem(pem);
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::CertificatePem(error.to_string()))?;
    if certs.is_empty() {
        return Err(Error::NoCertificate);
    }
    Ok(certs)
}

/// The private key in a PEM text: PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 or SEC1 (`EC PRIVATE KEY`).
///
/// # Errors
/// [`Error::NoPrivateKey`].
pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = unescape_pem(pem);
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| Error::NoPrivateKey)
}

/// The system's trust roots plus the certificates in `extra` PEM files (`XS_CACERT_PATH`).
///
/// # Errors
/// A file that cannot be read or holds no usable certificate.
pub fn root_store(extra_files: &[impl AsRef<Path>], extra_pem: &[String]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate must not keep the router from starting.
        let _ = roots.add(cert);
    }
    for file in extra_files {
        let path = file.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        add_pem_roots(&mut roots, &text)?;
    }
    for pem in extra_pem {
        add_pem_roots(&mut roots, pem)?;
    }
    Ok(roots)
}

fn add_pem_roots(roots: &mut RootCertStore, pem: &str) -> Result<(), Error> {
    for cert in certificates(pem)? {
        roots.add(cert).map_err(|error| Error::Root(error.to_string()))?;
    }
    Ok(())
}
