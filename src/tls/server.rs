//! The HTTPS listener's side of TLS: the certificate and key from PEM files behind a resolver that
//! swaps them atomically, a watcher that reloads them when the files change (rotation without a
//! restart), and the rustls server configuration (TLS 1.2+, ALPN h2 and http/1.1).

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

use super::Error;
use crate::config::TlsFiles;

/// The protocols offered in ALPN, most preferred first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The certificate the listener presents; new handshakes pick up a reloaded one, handshakes in
/// progress keep the one they started with.
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The file contents behind `current` (and the last rejected pair), to notice changes cheaply.
    seen: Mutex<Seen>,
    /// `notAfter` of the leaf certificate (Unix seconds), for the expiry metric.
    not_after: AtomicI64,
}

#[derive(Default, PartialEq, Eq)]
struct Seen {
    loaded: u64,
    rejected: Option<u64>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ReloadingCert {
    /// Loads the certificate chain and key of `files`.
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key that does not fit.
    pub fn load(files: &TlsFiles) -> Result<ReloadingCert, Error> {
        let provider = super::provider();
        let (cert_pem, key_pem) = read_pair(files)?;
        let key = certified_key(&cert_pem, &key_pem, &provider)?;
        let not_after = leaf_not_after(&key.cert).unwrap_or(0);
        Ok(ReloadingCert {
            files: files.clone(),
            provider,
            current: ArcSwap::from_pointee(key),
            seen: Mutex::new(Seen {
                loaded: digest(&cert_pem, &key_pem),
                rejected: None,
            }),
            not_after: AtomicI64::new(not_after),
        })
    }

    /// Re-reads the files and swaps in their pair when it changed and is usable. Returns true
    /// when a new certificate was installed.
    ///
    /// A half-written rotation (new certificate, old key) is not usable: the old pair stays until
    /// the next check finds both files updated.
    pub fn reload(&self) -> bool {
        let (cert_pem, key_pem) = match read_pair(&self.files) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "TLS certificate files cannot be read; keeping the current certificate");
                return false;
            }
        };
        let contents = digest(&cert_pem, &key_pem);
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.loaded == contents || seen.rejected == Some(contents) {
            return false;
        }
        match certified_key(&cert_pem, &key_pem, &self.provider) {
            Ok(key) => {
                let not_after = leaf_not_after(&key.cert).unwrap_or(0);
                self.current.store(Arc::new(key));
                self.not_after.store(not_after, Ordering::Relaxed);
                *seen = Seen {
                    loaded: contents,
                    rejected: None,
                };
                tracing::info!(cert = %self.files.cert.display(), not_after, "TLS certificate reloaded");
                true
            }
            Err(error) => {
                // Logged once per content; the pair may be in the middle of being replaced.
                seen.rejected = Some(contents);
                tracing::warn!(%error, "new TLS certificate files are not usable yet; keeping the current certificate");
                false
            }
        }
    }

    /// `notAfter` of the certificate being served, in Unix seconds (0 when it cannot be parsed).
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }
}

/// Checks the files every `files.reload_interval` until `cert` is dropped.
pub fn spawn_reloader(cert: &Arc<ReloadingCert>) {
    let weak: Weak<ReloadingCert> = Arc::downgrade(cert);
    let interval = cert.files.reload_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(cert) = weak.upgrade() else { break };
            // File IO off the async workers: a slow volume must not stall requests.
            let _ = tokio::task::spawn_blocking(move || cert.reload()).await;
        }
    });
}

/// The server configuration: rustls' safe defaults (TLS 1.2 and 1.3, no weak suites) with the
/// aws-lc-rs provider, certificates from `resolver`, no client authentication.
///
/// # Errors
/// Never with the aws-lc-rs provider; kept for a provider without the default versions.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Identity)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// `notAfter` of the first certificate in `certs`, in Unix seconds.
pub fn leaf_not_after(certs: &[CertificateDer<'_>]) -> Option<i64> {
    let leaf = certs.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

fn read_pair(files: &TlsFiles) -> Result<(String, String), Error> {
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certified_key(cert_pem: &str, key_pem: &str, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let chain = super::certificates(cert_pem)?;
    let key = super::private_key(key_pem)?;
    CertifiedKey::from_der(chain, key, provider).map_err(Error::Identity)
}

/// A fingerprint of the pair, only to notice changes (not a security boundary).
fn digest(cert_pem: &str, key_pem: &str) -> u64 {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(cert_pem.as_bytes());
    context.update(&[0]);
    context.update(key_pem.as_bytes());
    let hash = context.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            reload_interval: Duration::from_secs(5),
        }
    }

    fn served(resolver: &ReloadingCert) -> Vec<u8> {
        resolver.current.load().cert[0].as_ref().to_vec()
    }

    #[test]
    fn reload_swaps_only_a_complete_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let first = pair("one.example");
        let files = write(dir.path(), &first);
        let resolver = ReloadingCert::load(&files).unwrap();
        assert!(resolver.not_after() > 0);
        let before = served(&resolver);
        assert!(!resolver.reload(), "unchanged files are not reloaded");

        // The certificate is replaced before the key: the mismatched pair is refused.
        let second = pair("two.example");
        std::fs::write(&files.cert, &second.0).unwrap();
        assert!(!resolver.reload());
        assert_eq!(served(&resolver), before);

        std::fs::write(&files.key, &second.1).unwrap();
        assert!(resolver.reload());
        assert_ne!(served(&resolver), before);
    }

    #[test]
    fn a_key_that_does_not_fit_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), &pair("one.example"));
        std::fs::write(&files.key, pair("other.example").1).unwrap();
        assert!(matches!(ReloadingCert::load(&files), Err(Error::Identity(_))));
    }
}
