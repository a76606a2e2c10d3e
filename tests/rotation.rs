//! Client certificates that rotate: the binding files are swapped the Kubernetes way (an atomic
//! `..data` symlink swap) while logins and token refreshes run, the identity provider revokes the
//! old certificate, and nothing fails; broken new credentials are refused and the old ones stay.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use approuter::idp::rotation::{CredentialStatus, ReloadState};
use serde_json::json;
use support::idp::Browser;
use support::{backend, gateway, Backend, Gateway};
use tokio::sync::watch;
use xsuaa_dev::{ClientCertOpts, DevXsuaa};

/// Longest wait for a reload that a test triggered.
const RELOAD_PATIENCE: Duration = Duration::from_secs(15);
const BINDING: &str = "my-xsuaa";
/// A poll interval no test outlives: only the retry path or SIGHUP can reload.
const NEVER_MS: u64 = 3_600_000;

struct Setup {
    dev: Arc<DevXsuaa>,
    root: PathBuf,
    router: Gateway,
    _backend: Backend,
}

impl Setup {
    fn status(&self) -> Arc<CredentialStatus> {
        self.router
            .state
            .auth
            .as_ref()
            .expect("auth configured")
            .credential_status()
            .clone()
    }

    fn rewrite_binding(&self, credentials: &serde_json::Value) {
        self.dev
            .write_binding_dir(&self.root, BINDING, credentials)
            .expect("binding files");
    }

    /// Logs a new browser in and returns the fingerprint of the client certificate the router
    /// presented for the code exchange.
    async fn login(&self) -> Option<String> {
        let browser = Browser::new(&self.dev);
        let (response, visited) = browser.navigate(&self.router.url("/api/login")).await;
        assert_eq!(response.status(), 200, "{visited:?}");
        self.dev
            .last_token_request()
            .and_then(|record| record.client_cert_fingerprint)
    }
}

/// A router reading its XSUAA binding from files under `SERVICE_BINDING_ROOT`.
async fn setup(dev: DevXsuaa, poll_ms: u64) -> Setup {
    let backend = backend().await;
    let root = tempfile::tempdir().unwrap();
    dev.write_binding_dir(root.path(), BINDING, &dev.credentials()).unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    std::fs::write(ca_dir.path().join("ca.pem"), dev.ca_pem()).unwrap();
    let root_path = root.path().to_path_buf();
    let router = gateway(json!({
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
    .env("SERVICE_BINDING_ROOT", root.path().display().to_string())
    .env("XS_CACERT_PATH", ca_dir.path().join("ca.pem").display().to_string())
    .env("BINDING_POLL_INTERVAL_MS", poll_ms.to_string())
    // Every browser of the load comes from 127.0.0.1.
    .env("LOGIN_RATE_LIMIT", "off")
    .keep(root)
    .keep(ca_dir)
    .start()
    .await;
    Setup {
        dev: Arc::new(dev),
        root: root_path,
        router,
        _backend: backend,
    }
}

async fn wait_for_reloads(status: &CredentialStatus, done: impl Fn(&ReloadState) -> bool) -> ReloadState {
    let mut reloads = status.subscribe_reloads();
    let state = tokio::time::timeout(RELOAD_PATIENCE, reloads.wait_for(|state| done(state)))
        .await
        .expect("no reload within the patience")
        .expect("status alive")
        .clone();
    state
}

const LOGINS: usize = 30;
const REFRESHES_PER_LOGIN: usize = 2;
const WORKERS: usize = 3;
/// The rotation starts once this many logins are done ...
const ROTATE_AFTER: usize = 6;
/// ... and logins from this one on start only after it, so a good part of the load meets the new
/// credentials and the revoked old one.
const HOLD_FROM: usize = 12;

/// One round of load: `WORKERS` tasks share `LOGINS` logins; after each login, the session makes
/// `REFRESHES_PER_LOGIN` API calls, each of which refreshes the 1-second access token.
fn spawn_load(
    setup: &Setup,
    done_tx: watch::Sender<usize>,
    rotated_rx: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let done_tx = Arc::new(done_tx);
    (0..WORKERS)
        .map(|_| {
            let dev = setup.dev.clone();
            let url = setup.router.url("");
            let next = next.clone();
            let done_tx = done_tx.clone();
            let mut rotated_rx = rotated_rx.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= LOGINS {
                        break;
                    }
                    if index >= HOLD_FROM {
                        rotated_rx.wait_for(|rotated| *rotated).await.expect("test alive");
                    }
                    let browser = Browser::new(&dev);
                    let (response, visited) = browser.navigate(&format!("{url}/api/login/{index}")).await;
                    if response.status() != 200 {
                        failures.push(format!("login {index}: {} after {visited:?}", response.status()));
                        continue;
                    }
                    for call in 0..REFRESHES_PER_LOGIN {
                        let response = browser
                            .client
                            .get(format!("{url}/api/data/{index}/{call}"))
                            .header("x-requested-with", "XMLHttpRequest")
                            .send()
                            .await
                            .expect("router reachable");
                        if response.status() != 200 {
                            failures.push(format!("refresh {index}/{call}: {}", response.status()));
                        }
                    }
                    done_tx.send_modify(|done| *done += 1);
                }
                failures
            })
        })
        .collect()
}

/// The whole rotation under load; `poll_ms` decides whether the watcher (short poll) or the retry
/// after a rejected token request (no poll) picks up the new files.
async fn rotate_under_load(poll_ms: u64) -> (Setup, String) {
    let dev = DevXsuaa::builder()
        .access_token_lifetime(Duration::from_secs(1))
        .start()
        .await
        .expect("development XSUAA");
    let setup = setup(dev, poll_ms).await;
    let status = setup.status();
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let (rotated_tx, rotated_rx) = watch::channel(false);
    let workers = spawn_load(&setup, done_tx, rotated_rx);

    done_rx
        .wait_for(|done| *done >= ROTATE_AFTER)
        .await
        .expect("load running");
    let old = setup
        .dev
        .last_token_request()
        .and_then(|record| record.client_cert_fingerprint)
        .expect("the old certificate was used");
    let new = setup.dev.issue_client_cert(ClientCertOpts::default());
    setup.rewrite_binding(&setup.dev.credentials_with(&new));
    setup.dev.revoke_client_cert(&old);
    if poll_ms < NEVER_MS {
        wait_for_reloads(&status, |state| state.generation >= 1).await;
    }
    rotated_tx.send(true).expect("workers alive");

    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.expect("worker"));
    }
    assert!(failures.is_empty(), "{} failed: {failures:#?}", failures.len());
    let state = status.reloads();
    assert_eq!(state.generation, 1, "{state:?}");
    assert_eq!(state.refused, 0, "{state:?}");
    let last = setup.dev.last_token_request().expect("token requests");
    assert_eq!(
        last.client_cert_fingerprint.as_deref(),
        Some(new.sha256_fingerprint.as_str())
    );
    let grants = setup.dev.stats().token_requests_by_grant;
    assert!(
        grants.get("refresh_token").copied().unwrap_or(0) >= (LOGINS * REFRESHES_PER_LOGIN) as u64,
        "every API call refreshed: {grants:?}"
    );
    assert!(
        grants.get("authorization_code").copied().unwrap_or(0) >= LOGINS as u64,
        "{grants:?}"
    );
    (setup, new.sha256_fingerprint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_through_the_watcher_loses_nothing() {
    let (setup, new) = rotate_under_load(50).await;
    assert_eq!(setup.login().await.as_deref(), Some(new.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_through_the_retry_loses_nothing() {
    let (setup, new) = rotate_under_load(NEVER_MS).await;
    // The old certificate was refused at least once, and the retry on the re-read binding hid it.
    assert!(setup.dev.stats().token_requests_refused >= 1, "{:?}", setup.dev.stats());
    assert_eq!(setup.login().await.as_deref(), Some(new.as_str()));
}

#[tokio::test]
async fn broken_new_credentials_are_refused_and_the_old_ones_stay() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let setup = setup(dev, 50).await;
    let status = setup.status();
    let original = setup.login().await.expect("mTLS login");
    let not_after = status.not_after().expect("certificate details");

    let fresh = setup.dev.issue_client_cert(ClientCertOpts::default());
    let other = setup.dev.issue_client_cert(ClientCertOpts::default());
    let now = SystemTime::now();
    let expired = setup.dev.issue_client_cert(ClientCertOpts {
        not_before: now - Duration::from_secs(7200),
        not_after: now - Duration::from_secs(3600),
        ..Default::default()
    });
    let with = |cert: &str, key: &str| {
        let mut credentials = setup.dev.credentials_with(&fresh);
        credentials["certificate"] = json!(cert);
        credentials["key"] = json!(key);
        credentials
    };
    let rows = [
        (
            "corrupt key",
            with(
                &fresh.cert_pem,
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            "unusable private key",
        ),
        (
            "key of another certificate",
            with(&fresh.cert_pem, &other.key_pem),
            "do not match",
        ),
        (
            "expired certificate",
            setup.dev.credentials_with(&expired),
            "expired at",
        ),
    ];
    for (refused, (case, credentials, reason)) in rows.into_iter().enumerate() {
        setup.rewrite_binding(&credentials);
        let state = wait_for_reloads(&status, |state| state.refused > refused as u64).await;
        assert!(
            state.last_error.as_deref().is_some_and(|error| error.contains(reason)),
            "{case}: {state:?}"
        );
        assert_eq!(state.generation, 0, "{case}");
        assert_eq!(status.not_after(), Some(not_after), "{case}");
        assert_eq!(
            setup.login().await.as_deref(),
            Some(original.as_str()),
            "{case}: the old certificate logs in"
        );
    }

    // A good binding afterwards is taken, and clears the error.
    setup.rewrite_binding(&setup.dev.credentials_with(&fresh));
    let state = wait_for_reloads(&status, |state| state.generation == 1).await;
    assert_eq!(state.last_error, None);
    assert_eq!(setup.login().await.as_deref(), Some(fresh.sha256_fingerprint.as_str()));
}

#[tokio::test]
async fn sighup_rereads_the_binding_at_once() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let setup = setup(dev, NEVER_MS).await;
    let status = setup.status();
    let fresh = setup.dev.issue_client_cert(ClientCertOpts::default());
    setup.rewrite_binding(&setup.dev.credentials_with(&fresh));
    let sent = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(std::process::id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
    let state = wait_for_reloads(&status, |state| state.generation >= 1).await;
    assert_eq!(state.refused, 0);
    assert_eq!(setup.login().await.as_deref(), Some(fresh.sha256_fingerprint.as_str()));
}

#[tokio::test]
async fn the_certificate_in_use_is_reported() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let setup = setup(dev, NEVER_MS).await;
    let auth = setup.router.state.auth.as_ref().unwrap();
    let seconds = auth.certificate_expiry().expect("x509 credentials have an expiry");
    // The development certificate lives until seven days from its minting.
    assert!((6 * 86_400..=7 * 86_400).contains(&seconds), "{seconds}");
    let certificate = auth.credential_status().certificate().unwrap();
    assert!(certificate.subject.contains(&setup.dev.client_id()), "{certificate:?}");
    assert_eq!(certificate.chain_length, 2);
    let check = wait_for_expiry_check(auth.credential_status()).await;
    assert_eq!(check.level, approuter::idp::rotation::ExpiryLevel::Valid);
    assert_binding_folder(&setup.root);
}

async fn wait_for_expiry_check(status: &CredentialStatus) -> approuter::idp::rotation::ExpiryCheck {
    let mut checks = status.subscribe_expiry();
    let check = tokio::time::timeout(RELOAD_PATIENCE, checks.wait_for(Option::is_some))
        .await
        .expect("the start-up check ran")
        .expect("status alive");
    check.expect("checked")
}

/// The binding is laid out as kubelet does it, so the test exercises the `..data` swap.
fn assert_binding_folder(root: &Path) {
    let link = root.join(BINDING).join("..data");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[tokio::test]
async fn secret_bindings_have_no_certificate_to_watch() {
    let dev = DevXsuaa::builder().client_secret("s3cret").start().await.unwrap();
    let credentials = dev.secret_credentials().unwrap();
    let router = gateway(json!({"routes": [{"source": "^/(.*)$", "localDir": "."}]}))
        .xsuaa(&dev, &credentials)
        .start()
        .await;
    let auth = router.state.auth.as_ref().unwrap();
    assert_eq!(auth.certificate_expiry(), None);
    assert!(auth.credential_status().certificate().is_none());
}
