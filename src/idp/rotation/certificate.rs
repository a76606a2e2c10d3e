//! What a client certificate says about itself (subject, issuer, serial, validity) and the checks a
//! new credential must pass before it replaces the current one.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;

use crate::config::XsuaaCredentials;

/// A certificate whose `notBefore` lies this far in the future is still accepted: a freshly issued
/// certificate can start a little ahead of our clock.
const NOT_BEFORE_SKEW_SECS: i64 = 300;

/// The leaf of a client certificate chain, as far as operators care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject distinguished name, e.g. `CN=sb-app!t1, O=SAP SE`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Certificates in the chain, the leaf included.
    pub chain_length: usize,
}

impl CertificateInfo {
    /// Seconds until `notAfter` (negative once expired).
    pub fn seconds_left(&self, now_unix: i64) -> i64 {
        self.not_after - now_unix
    }
}

/// Why a certificate or a credential cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("certificate {index} of the chain does not parse: {reason}")]
    CertificateParse { index: usize, reason: String },
    #[error("{0}")]
    Tls(String),
    #[error("unusable private key: {0}")]
    Key(String),
    #[error("the certificate expired at {}", format_unix(*.0))]
    Expired(i64),
    #[error("the certificate is not valid before {}", format_unix(*.0))]
    NotYetValid(i64),
    #[error("the binding cannot be used: {0}")]
    Binding(String),
    #[error("{field} changed from {old:?} to {new:?}; a new identity needs a restart")]
    IdentityChanged {
        field: &'static str,
        old: String,
        new: String,
    },
}

impl From<crate::tls::Error> for CredentialError {
    fn from(error: crate::tls::Error) -> CredentialError {
        CredentialError::Tls(error.to_string())
    }
}

/// Parses every certificate of a PEM chain and describes the leaf.
///
/// # Errors
/// PEM without certificates, or a certificate that does not parse.
pub fn inspect(pem: &str) -> Result<CertificateInfo, CredentialError> {
    let chain = crate::tls::certificates(pem)?;
    let mut leaf = None;
    for (index, der) in chain.iter().enumerate() {
        let (_, certificate) =
            x509_parser::parse_x509_certificate(der).map_err(|error| CredentialError::CertificateParse {
                index,
                reason: error.to_string(),
            })?;
        if index == 0 {
            let validity = certificate.validity();
            leaf = Some(CertificateInfo {
                subject: certificate.subject().to_string(),
                issuer: certificate.issuer().to_string(),
                serial: certificate.raw_serial_as_string(),
                not_before: validity.not_before.timestamp(),
                not_after: validity.not_after.timestamp(),
                chain_length: chain.len(),
            });
        }
    }
    leaf.ok_or(CredentialError::Tls(crate::tls::Error::NoCertificate.to_string()))
}

/// Checks that `key_pem` is the private key of the leaf in `certificate_pem`, the way the TLS
/// client will use them.
///
/// # Errors
/// A key that does not parse or does not belong to the certificate.
pub fn check_key(certificate_pem: &str, key_pem: &str) -> Result<(), CredentialError> {
    let chain = crate::tls::certificates(certificate_pem)?;
    let key = crate::tls::private_key(key_pem)?;
    // A key that is PEM but not a key would otherwise read as a mismatch below.
    crate::tls::provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|error| CredentialError::Key(error.to_string()))?;
    // rustls compares the key's public half with the leaf's SubjectPublicKeyInfo here.
    let trust = crate::connect::Trust::Roots(Arc::new(RootCertStore::empty()));
    crate::connect::client_config(&trust, Some((chain, key)), crate::connect::Protocols::Http1)?;
    Ok(())
}

/// Checks the validity window against `now_unix`.
///
/// # Errors
/// [`CredentialError::Expired`] or [`CredentialError::NotYetValid`].
pub fn check_validity(info: &CertificateInfo, now_unix: i64) -> Result<(), CredentialError> {
    if info.not_after <= now_unix {
        return Err(CredentialError::Expired(info.not_after));
    }
    if info.not_before > now_unix + NOT_BEFORE_SKEW_SECS {
        return Err(CredentialError::NotYetValid(info.not_before));
    }
    Ok(())
}

/// Everything a new credential must pass before it is swapped in: for x509 the chain parses, the
/// key matches the leaf and the leaf is within its validity. Secret credentials carry no
/// certificate (`Ok(None)`).
///
/// # Errors
/// The first check that fails.
pub fn verify(credentials: &XsuaaCredentials, now_unix: i64) -> Result<Option<CertificateInfo>, CredentialError> {
    let (certificate, key) = match (&credentials.certificate, &credentials.key) {
        (Some(certificate), Some(key)) => (certificate, key),
        (Some(_), None) => return Err(CredentialError::Binding("a certificate without a key".into())),
        _ => return Ok(None),
    };
    let info = inspect(certificate)?;
    check_key(certificate, key)?;
    check_validity(&info, now_unix)?;
    Ok(Some(info))
}

/// How close a certificate is to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryLevel {
    /// More than the warning period left.
    Valid,
    /// Less than the warning period left.
    ExpiresSoon,
    /// Past `notAfter`: the identity provider refuses it.
    Expired,
}

/// Classifies `seconds_left` against the warning period.
pub fn expiry_level(seconds_left: i64, warning: Duration) -> ExpiryLevel {
    let warning = i64::try_from(warning.as_secs()).unwrap_or(i64::MAX);
    if seconds_left <= 0 {
        ExpiryLevel::Expired
    } else if seconds_left < warning {
        ExpiryLevel::ExpiresSoon
    } else {
        ExpiryLevel::Valid
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-11-20T10:00:00Z`).
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days: proleptic Gregorian date of a day count since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A duration in seconds for people: `3d 4h`, `5h 12m`, `40s`, with a minus sign when past.
pub fn format_seconds(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if days > 0 {
        format!("{sign}{days}d {hours}h")
    } else if hours > 0 {
        format!("{sign}{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{sign}{minutes}m {}s", s % 60)
    } else {
        format!("{sign}{s}s")
    }
}
