use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::RootCertStore;

use super::certificate::{self, expiry_level, format_seconds, format_unix};
use super::*;

const HOUR: u64 = 3600;

struct Minted {
    cert_pem: String,
    key_pem: String,
}

fn mint(common_name: &str, not_before: SystemTime, not_after: SystemTime) -> Minted {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "rotation tests");
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0x03]));
    let cert = params.self_signed(&key).unwrap();
    Minted {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Valid from an hour ago for `lifetime`.
fn mint_for(lifetime: Duration) -> Minted {
    let now = SystemTime::now();
    mint("sb-app!t1", now - Duration::from_secs(HOUR), now + lifetime)
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn now() -> i64 {
    unix(SystemTime::now())
}

#[test]
fn inspect_describes_the_leaf() {
    let not_before = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let not_after = not_before + Duration::from_secs(7 * 24 * HOUR);
    let minted = mint("sb-app!t1", not_before, not_after);
    let info = certificate::inspect(&minted.cert_pem).unwrap();
    assert!(info.subject.contains("CN=sb-app!t1"), "{}", info.subject);
    assert!(info.subject.contains("O=rotation tests"), "{}", info.subject);
    assert_eq!(info.issuer, info.subject, "self-signed");
    assert_eq!(info.serial, "01:02:03");
    assert_eq!(info.not_before, 1_700_000_000);
    assert_eq!(info.not_after, 1_700_000_000 + 7 * 24 * 3600);
    assert_eq!(info.chain_length, 1);
    // Literal `\n` as bindings often carry them.
    let escaped = minted.cert_pem.replace('\n', "\\n");
    assert_eq!(certificate::inspect(&escaped).unwrap(), info);
}

#[test]
fn verify_refuses_what_the_token_endpoint_would_refuse() {
    let good = mint_for(Duration::from_secs(7 * 24 * HOUR));
    let other = mint_for(Duration::from_secs(7 * 24 * HOUR));
    let start = SystemTime::now();
    let expired = mint(
        "old",
        start - Duration::from_secs(48 * HOUR),
        start - Duration::from_secs(HOUR),
    );
    let future = mint(
        "early",
        start + Duration::from_secs(24 * HOUR),
        start + Duration::from_secs(48 * HOUR),
    );
    let garbage_cert = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    let rows: &[(&str, &str, &str, Option<&str>)] = &[
        ("good", &good.cert_pem, &good.key_pem, None),
        (
            "corrupt key",
            &good.cert_pem,
            "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
            Some("unusable private key"),
        ),
        ("no key", &good.cert_pem, "garbage", Some("no private key found")),
        (
            "key of another certificate",
            &good.cert_pem,
            &other.key_pem,
            Some("do not match"),
        ),
        ("expired", &expired.cert_pem, &expired.key_pem, Some("expired at")),
        (
            "not yet valid",
            &future.cert_pem,
            &future.key_pem,
            Some("not valid before"),
        ),
        (
            "certificate does not parse",
            garbage_cert,
            &good.key_pem,
            Some("does not parse"),
        ),
        ("no certificate", "nothing", &good.key_pem, Some("no certificate")),
    ];
    for (case, cert, key, expected) in rows {
        let credentials = credentials(Path::new("/nonexistent"), cert, key);
        match (certificate::verify(&credentials, now()), expected) {
            (Ok(Some(info)), None) => assert!(info.subject.contains("sb-app")),
            (Err(error), Some(text)) => assert!(error.to_string().contains(text), "{case}: {error}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn expiry_levels_and_formats() {
    let warning = Duration::from_secs(48 * HOUR);
    let rows: &[(i64, ExpiryLevel)] = &[
        (30 * 24 * 3600, ExpiryLevel::Valid),
        (48 * 3600, ExpiryLevel::Valid),
        (48 * 3600 - 1, ExpiryLevel::ExpiresSoon),
        (1, ExpiryLevel::ExpiresSoon),
        (0, ExpiryLevel::Expired),
        (-3600, ExpiryLevel::Expired),
    ];
    for (seconds, level) in rows {
        assert_eq!(expiry_level(*seconds, warning), *level, "{seconds}");
    }
    for (secs, text) in [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (4_102_444_799, "2099-12-31T23:59:59Z"),
    ] {
        assert_eq!(format_unix(secs), text);
    }
    assert_eq!(format_seconds(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    assert_eq!(format_seconds(5 * 3600 + 12 * 60), "5h 12m");
    assert_eq!(format_seconds(40), "40s");
    assert_eq!(format_seconds(-7200), "-2h 0m");
}

/// The daily check walks a 60-hour certificate from valid through the warning into expiry, and a
/// rotation is checked at once, without waiting for the next day.
#[tokio::test(start_paused = true)]
async fn expiry_is_checked_daily_and_after_rotation() {
    let minted = mint_for(Duration::from_secs(60 * HOUR));
    let status = Arc::new(CredentialStatus::new(Some(
        certificate::inspect(&minted.cert_pem).unwrap(),
    )));
    let clock = Clock::tokio();
    let mut checks = status.subscribe_expiry();
    tokio::spawn(monitor_expiry(
        Arc::downgrade(&status),
        clock,
        Duration::from_secs(48 * HOUR),
        EXPIRY_LOG_PERIOD,
    ));
    let mut seen = Vec::new();
    for _ in 0..4 {
        checks.changed().await.unwrap();
        let check = checks.borrow_and_update().unwrap();
        seen.push((check.level, (check.seconds_left as f64 / 3600.0).round() as i64));
    }
    assert_eq!(
        seen,
        [
            (ExpiryLevel::Valid, 60),
            (ExpiryLevel::ExpiresSoon, 36),
            (ExpiryLevel::ExpiresSoon, 12),
            (ExpiryLevel::Expired, -12),
        ]
    );
    let left = status.seconds_to_expiry(clock.now()).unwrap();
    assert!((-12 * 3600 - 60..=-12 * 3600 + 60).contains(&left), "{left}");

    let checked_at = status.last_expiry_check().unwrap().checked_at;
    let fresh = mint_for(Duration::from_secs(7 * 24 * HOUR));
    status.rotated(Some(certificate::inspect(&fresh.cert_pem).unwrap()));
    checks.changed().await.unwrap();
    let check = checks.borrow_and_update().unwrap();
    assert_eq!(check.level, ExpiryLevel::Valid);
    assert_eq!(
        check.checked_at, checked_at,
        "checked right after the rotation, not a day later"
    );

    // A refusal leaves the certificate alone and triggers no extra check.
    status.refused("broken".into());
    tokio::time::advance(Duration::from_secs(HOUR)).await;
    tokio::task::yield_now().await;
    assert!(!checks.has_changed().unwrap());
}

#[tokio::test]
async fn secret_credentials_have_no_expiry() {
    let status = CredentialStatus::new(None);
    assert_eq!(status.not_after(), None);
    assert_eq!(status.seconds_to_expiry(0), None);
    assert_eq!(check_expiry(&status, 0, Duration::from_secs(HOUR)), None);
}

// === reloads ===

fn credentials(folder: &Path, cert: &str, key: &str) -> XsuaaCredentials {
    let mut fields = Map::new();
    for (name, value) in binding_fields(cert, key) {
        fields.insert(name.to_string(), Value::String(value));
    }
    crate::config::credentials_from_map("xsuaa", BindingSource::Files(folder.to_path_buf()), &fields).unwrap()
}

fn binding_fields(cert: &str, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("clientid", "sb-app!t1".into()),
        ("xsappname", "app!t1".into()),
        ("url", "https://tenant.auth.example".into()),
        ("certurl", "https://tenant.auth.cert.example".into()),
        ("uaadomain", "auth.example".into()),
        ("credential-type", "x509".into()),
        ("certificate", cert.into()),
        ("key", key.into()),
    ]
}

fn write_plain(folder: &Path, fields: &[(&str, String)]) {
    for (name, value) in fields {
        std::fs::write(folder.join(name), value).unwrap();
    }
    std::fs::write(folder.join("type"), "xsuaa").unwrap();
}

#[tokio::test]
async fn reload_swaps_verified_credentials_and_keeps_the_old_on_refusal() {
    let folder = tempfile::tempdir().unwrap();
    let first = mint_for(Duration::from_secs(7 * 24 * HOUR));
    write_plain(folder.path(), &binding_fields(&first.cert_pem, &first.key_pem));
    let initial = credentials(folder.path(), &first.cert_pem, &first.key_pem);
    let idp = IdpClient::new(&initial, Arc::new(RootCertStore::empty()), Duration::from_secs(1)).unwrap();
    assert!(idp.rotation().is_some(), "credentials from files are watched");

    assert_eq!(idp.reload(Trigger::Poll).await, Reload::Unchanged);
    assert_eq!(idp.status().reloads().generation, 0);

    let second = mint_for(Duration::from_secs(14 * 24 * HOUR));
    write_plain(folder.path(), &binding_fields(&second.cert_pem, &second.key_pem));
    assert_eq!(idp.reload(Trigger::Poll).await, Reload::Rotated);
    let status = idp.status();
    assert_eq!(status.reloads().generation, 1);
    let expected = certificate::inspect(&second.cert_pem).unwrap();
    assert_eq!(status.not_after(), Some(expected.not_after));
    assert_eq!(idp.reload(Trigger::Poll).await, Reload::Unchanged);

    let third = mint_for(Duration::from_secs(7 * 24 * HOUR));
    let start = SystemTime::now();
    let expired = mint(
        "old",
        start - Duration::from_secs(48 * HOUR),
        start - Duration::from_secs(HOUR),
    );
    let mut changed_client = binding_fields(&third.cert_pem, &third.key_pem);
    changed_client[0].1 = "sb-other!t2".into();
    let mut no_url = binding_fields(&third.cert_pem, &third.key_pem);
    no_url.retain(|(name, _)| *name != "url");
    type Fields = Vec<(&'static str, String)>;
    let rows: Vec<(&str, Fields, &str)> = vec![
        (
            "key of another certificate",
            binding_fields(&third.cert_pem, &second.key_pem),
            "do not match",
        ),
        (
            "corrupt key",
            binding_fields(&third.cert_pem, "garbage"),
            "no private key",
        ),
        (
            "expired",
            binding_fields(&expired.cert_pem, &expired.key_pem),
            "expired at",
        ),
        ("another client", changed_client, "clientid changed"),
        ("incomplete", no_url, ".url: is required"),
    ];
    for (index, (case, fields, reason)) in rows.into_iter().enumerate() {
        // Each case is refused twice: by the poll and by SIGHUP.
        let refused = 2 * index as u64;
        for file in std::fs::read_dir(folder.path()).unwrap() {
            std::fs::remove_file(file.unwrap().path()).unwrap();
        }
        write_plain(folder.path(), &fields);
        let outcome = idp.reload(Trigger::Poll).await;
        assert!(
            matches!(&outcome, Reload::Refused(error) if error.to_string().contains(reason)),
            "{case}: {outcome:?}"
        );
        let state = status.reloads();
        assert_eq!(state.generation, 1, "{case}: the old credential stays");
        assert_eq!(state.refused, refused + 1, "{case}");
        assert!(
            state.last_error.as_deref().is_some_and(|e| e.contains(reason)),
            "{case}: {state:?}"
        );
        assert_eq!(status.not_after(), Some(expected.not_after), "{case}");
        // Reported once; a poll of the same content stays quiet, SIGHUP looks again.
        assert_eq!(idp.reload(Trigger::Poll).await, Reload::Unchanged, "{case}");
        assert!(
            matches!(idp.reload(Trigger::Signal).await, Reload::Refused(_)),
            "{case}"
        );
        assert_eq!(status.reloads().refused, refused + 2, "{case}");
        assert_eq!(idp.reload(Trigger::Rejected).await, Reload::Unchanged, "{case}");
    }
}

/// A key supplied apart from the binding (`XSUAA_PRIVATE_KEY`) is not in the files: the current key
/// goes on with the new certificate (which must then still match it).
#[tokio::test]
async fn a_key_outside_the_binding_is_kept() {
    let folder = tempfile::tempdir().unwrap();
    let first = mint_for(Duration::from_secs(7 * 24 * HOUR));
    let mut fields = binding_fields(&first.cert_pem, &first.key_pem);
    fields.retain(|(name, _)| *name != "key");
    write_plain(folder.path(), &fields);
    let initial = credentials(folder.path(), &first.cert_pem, &first.key_pem);
    let idp = IdpClient::new(&initial, Arc::new(RootCertStore::empty()), Duration::from_secs(1)).unwrap();
    assert!(idp.rotation().is_some(), "credentials from files are watched");
    assert_eq!(idp.reload(Trigger::Poll).await, Reload::Unchanged);
}

#[test]
fn only_binding_files_are_watched() {
    let minted = mint_for(Duration::from_secs(HOUR * 24));
    let mut vcap = credentials(Path::new("/x"), &minted.cert_pem, &minted.key_pem);
    vcap.source = BindingSource::VcapServices;
    assert!(Rotation::for_credentials(&vcap, Clock::System).is_none());
}
