//! The development CA: server certificates for both listeners and client
//! certificates for the x509 credential type, all minted in memory at start.

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::util;

/// The key algorithm and encoding of a client certificate's private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA P-256, PKCS#8 PEM (`PRIVATE KEY`).
    #[default]
    EcdsaP256,
    /// RSA 2048, PKCS#8 PEM (`PRIVATE KEY`), as service-managed XSUAA certificates.
    Rsa2048Pkcs8,
    /// RSA 2048, PKCS#1 PEM (`RSA PRIVATE KEY`).
    Rsa2048Pkcs1,
}

/// Options for [`crate::DevXsuaa::issue_client_cert`].
#[derive(Debug, Clone)]
pub struct ClientCertOpts {
    /// Subject common name; `None` uses the client id.
    pub common_name: Option<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity; a past value yields an expired certificate.
    pub not_after: SystemTime,
    /// Key algorithm and PEM encoding of the private key.
    pub key: KeyKind,
}

impl Default for ClientCertOpts {
    /// Valid from one hour ago for seven days (the XSUAA default), ECDSA key.
    fn default() -> Self {
        let now = SystemTime::now();
        Self {
            common_name: None,
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(7 * 24 * 3600),
            key: KeyKind::EcdsaP256,
        }
    }
}

/// A client certificate with its key, as PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Leaf certificate followed by the issuing CA certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8 or PKCS#1 PEM, see [`KeyKind`]).
    pub key_pem: String,
    /// Lowercase hex SHA-256 of the leaf certificate's DER.
    pub sha256_fingerprint: String,
}

/// A certificate authority held in memory.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl Ca {
    /// Mints a self-signed CA valid from a day ago for a year.
    pub(crate) fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "xsuaa-dev");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(24 * 3600)).into();
        params.not_after = (now + Duration::from_secs(365 * 24 * 3600)).into();
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// PEM of the CA certificate.
    pub(crate) fn pem(&self) -> &str {
        &self.cert_pem
    }

    /// DER of the CA certificate.
    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A server certificate for the loopback names and the zone hosts of
    /// multi-zone mode, returned as chain and key.
    pub(crate) fn server_cert(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), rcgen::Error> {
        let names = [
            "127.0.0.1",
            "localhost",
            "::1",
            "auth.localhost",
            "*.auth.localhost",
            "auth.cert.localhost",
            "*.auth.cert.localhost",
        ]
        .map(String::from)
        .to_vec();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(30 * 24 * 3600)).into();
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = vec![cert.der().clone(), self.cert_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }

    /// A client certificate (clientAuth) issued by this CA.
    pub(crate) fn client_cert(&self, common_name: &str, opts: &ClientCertOpts) -> Result<ClientCert, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "xsuaa-dev clients");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = opts.not_before.into();
        params.not_after = opts.not_after.into();
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let alg = match opts.key {
            KeyKind::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyKind::Rsa2048Pkcs8 | KeyKind::Rsa2048Pkcs1 => &PKCS_RSA_SHA256,
        };
        let key = KeyPair::generate_for(alg)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_pem = match opts.key {
            KeyKind::Rsa2048Pkcs1 => {
                let pkcs1 = pkcs8_inner_key(key.serialized_der()).ok_or(rcgen::Error::CouldNotParseKeyPair)?;
                util::pem_encode("RSA PRIVATE KEY", pkcs1)
            }
            KeyKind::EcdsaP256 | KeyKind::Rsa2048Pkcs8 => key.serialize_pem(),
        };
        Ok(ClientCert {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem,
            sha256_fingerprint: fingerprint(cert.der()),
        })
    }
}

/// Lowercase hex SHA-256 of a certificate's DER, the id under which client
/// certificates are registered.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    util::hex(digest::digest(&digest::SHA256, der).as_ref())
}

/// Normalises a user-supplied fingerprint (any case, optional colons).
pub(crate) fn normalize_fingerprint(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| *c != ':')
        .flat_map(char::to_lowercase)
        .collect()
}

fn random_serial() -> Result<SerialNumber, rcgen::Error> {
    let mut bytes = util::random_bytes::<16>().map_err(|_| rcgen::Error::RingUnspecified)?;
    // A positive serial avoids a leading 0x00 pad that some parsers reject.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Extracts the PKCS#1 `RSAPrivateKey` from a PKCS#8 `PrivateKeyInfo`:
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }.
fn pkcs8_inner_key(pkcs8: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = util::der_next(pkcs8)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = util::der_next(body)?;
    let (_, _, rest) = util::der_next(rest)?;
    let (tag, key, _) = util::der_next(rest)?;
    (tag == 0x04).then_some(key)
}
