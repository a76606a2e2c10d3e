//! Client certificates that rotate: the binding folder is re-read (a poll every
//! `BINDING_POLL_INTERVAL_MS`, at once on `SIGHUP`, and after the identity provider rejects our
//! client), a new credential is verified before it replaces the current one, and the
//! certificate's expiry is logged at start, daily, and after each rotation.
//!
//! Kubernetes rewrites a mounted binding by swapping the `..data` symlink of the binding folder,
//! so the folder is watched as a whole: each read resolves `..data` once and reads the files of
//! that one payload directory, never a mix of old and new files. Polling the resolved contents
//! works on every file system (inotify misses changes on some volume types), costs a few small
//! reads per interval, and `SIGHUP` covers the operator who does not want to wait.

pub mod certificate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use self::certificate::{expiry_level, format_seconds, format_unix};
pub use self::certificate::{CertificateInfo, CredentialError, ExpiryLevel};
use super::xsuaa::IdpClient;
use super::Clock;
use crate::config::{BindingSource, XsuaaCredentials};

/// How often the certificate's details and expiry are logged when nothing changes.
pub const EXPIRY_LOG_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// `not_after` when there is no client certificate (secret credentials).
const NO_CERTIFICATE: i64 = i64::MIN;

// === impl CredentialStatus ===

/// What reloads have done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadState {
    /// Credentials swapped in since start.
    pub generation: u64,
    /// New credentials refused since start.
    pub refused: u64,
    /// Why the last new credential was refused; cleared by the next successful rotation.
    pub last_error: Option<String>,
}

/// One look at the certificate's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryCheck {
    /// How close the certificate is to its end.
    pub level: ExpiryLevel,
    /// Seconds until `notAfter` at the time of the check (negative once expired).
    pub seconds_left: i64,
    /// When the check ran, Unix seconds.
    pub checked_at: u64,
}

/// The client certificate as operations see it: its details, seconds to expiry, and what reloads
/// did. Shared by the token client, the watcher and whoever reports readiness or metrics.
pub struct CredentialStatus {
    certificate: ArcSwapOption<CertificateInfo>,
    not_after: AtomicI64,
    reloads: watch::Sender<ReloadState>,
    expiry: watch::Sender<Option<ExpiryCheck>>,
}

impl CredentialStatus {
    /// A status for the credential in use at start.
    pub fn new(certificate: Option<CertificateInfo>) -> CredentialStatus {
        let status = CredentialStatus {
            certificate: ArcSwapOption::empty(),
            not_after: AtomicI64::new(NO_CERTIFICATE),
            reloads: watch::Sender::new(ReloadState::default()),
            expiry: watch::Sender::new(None),
        };
        status.set_certificate(certificate);
        status
    }

    /// The leaf certificate in use; `None` for secret credentials.
    pub fn certificate(&self) -> Option<Arc<CertificateInfo>> {
        self.certificate.load_full()
    }

    /// `notAfter` of the certificate in use, Unix seconds (a lock-free read for metrics).
    pub fn not_after(&self) -> Option<i64> {
        let not_after = self.not_after.load(Ordering::Acquire);
        (not_after != NO_CERTIFICATE).then_some(not_after)
    }

    /// Seconds until the certificate in use expires, negative once expired.
    pub fn seconds_to_expiry(&self, now_unix: u64) -> Option<i64> {
        let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
        self.not_after().map(|not_after| not_after - now)
    }

    /// The reload counters now.
    pub fn reloads(&self) -> ReloadState {
        self.reloads.borrow().clone()
    }

    /// Changes whenever credentials are swapped in or refused.
    pub fn subscribe_reloads(&self) -> watch::Receiver<ReloadState> {
        self.reloads.subscribe()
    }

    /// The latest expiry check (at start, daily, after each rotation).
    pub fn last_expiry_check(&self) -> Option<ExpiryCheck> {
        *self.expiry.borrow()
    }

    /// Changes with every expiry check.
    pub fn subscribe_expiry(&self) -> watch::Receiver<Option<ExpiryCheck>> {
        self.expiry.subscribe()
    }

    /// Records a swap to credentials with `certificate`.
    pub(crate) fn rotated(&self, certificate: Option<CertificateInfo>) {
        self.set_certificate(certificate);
        self.reloads.send_modify(|state| {
            state.generation += 1;
            state.last_error = None;
        });
    }

    /// Records a refused new credential.
    pub(crate) fn refused(&self, reason: String) {
        self.reloads.send_modify(|state| {
            state.refused += 1;
            state.last_error = Some(reason);
        });
    }

    fn set_certificate(&self, certificate: Option<CertificateInfo>) {
        let not_after = certificate.as_ref().map_or(NO_CERTIFICATE, |info| info.not_after);
        self.certificate.store(certificate.map(Arc::new));
        self.not_after.store(not_after, Ordering::Release);
    }
}

impl std::fmt::Debug for CredentialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStatus")
            .field("certificate", &self.certificate())
            .field("reloads", &self.reloads())
            .finish_non_exhaustive()
    }
}

// === impl Rotation ===

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The periodic re-read.
    Poll,
    /// `SIGHUP`: re-check even content seen before, and say so in the log.
    Signal,
    /// The identity provider rejected our client: maybe the files already hold its successor.
    Rejected,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing new in the binding.
    Unchanged,
    /// New credentials are in use.
    Rotated,
    /// The new credentials failed a check; the current ones stay.
    Refused(CredentialError),
    /// The folder could not be read (it may be mid-swap); the next poll tries again.
    Unreadable(String),
    /// Another reload read the binding while this one waited.
    Coalesced,
}

/// Re-reads a binding folder and swaps verified new credentials into the token client.
pub struct Rotation {
    name: String,
    folder: PathBuf,
    clock: Clock,
    seen: tokio::sync::Mutex<Seen>,
    /// Binding reads started; a rejected token request that waited for the lock while another
    /// read ran does not read again.
    reads: AtomicU64,
}

struct Seen {
    current: XsuaaCredentials,
    /// Digest of the binding contents last looked at, accepted or refused, so that a refused
    /// credential is reported once and not at every poll.
    digest: Option<Vec<u8>>,
}

impl Rotation {
    /// A reloader for `credentials`; `None` unless they come from binding files.
    pub fn for_credentials(credentials: &XsuaaCredentials, clock: Clock) -> Option<Rotation> {
        let BindingSource::Files(folder) = &credentials.source else {
            return None;
        };
        Some(Rotation {
            name: credentials.name.clone(),
            folder: folder.clone(),
            clock,
            seen: tokio::sync::Mutex::new(Seen {
                current: credentials.clone(),
                digest: None,
            }),
            reads: AtomicU64::new(0),
        })
    }

    /// The binding folder being watched.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The binding's name.
    pub fn binding(&self) -> &str {
        &self.name
    }

    pub(super) fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Re-reads the binding and, when it holds new credentials that pass every check, swaps them
    /// into `idp`, the client that owns this rotation (see [`IdpClient::reload`]). Reloads run one
    /// at a time.
    pub(super) async fn reload(&self, idp: &IdpClient, trigger: Trigger) -> Reload {
        let reads_before = self.reads.load(Ordering::Acquire);
        let mut seen = self.seen.lock().await;
        if trigger == Trigger::Rejected && self.reads.load(Ordering::Acquire) != reads_before {
            return Reload::Coalesced;
        }
        self.reads.fetch_add(1, Ordering::AcqRel);
        let folder = self.folder.clone();
        let read = tokio::task::spawn_blocking(move || read_payload(&folder)).await;
        let mut fields = match read {
            Ok(Ok(fields)) => fields,
            Ok(Err(error)) => return self.unreadable(error.to_string()),
            Err(error) => return self.unreadable(error.to_string()),
        };
        let digest = digest(&fields);
        if trigger != Trigger::Signal && seen.digest.as_deref() == Some(digest.as_slice()) {
            return Reload::Unchanged;
        }
        seen.digest = Some(digest);
        // A key given apart from the binding (`XSUAA_PRIVATE_KEY`) is not in the files; keep it.
        if !fields.contains_key("key") {
            if let Some(key) = &seen.current.key {
                fields.insert("key".into(), Value::String(key.clone()));
            }
        }
        let source = BindingSource::Files(self.folder.clone());
        let candidate = match crate::config::credentials_from_map(&self.name, source, &fields) {
            Ok(candidate) => candidate,
            Err(errors) => {
                let reason = errors
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return self.refuse(idp, CredentialError::Binding(reason));
            }
        };
        if same_material(&seen.current, &candidate) {
            if trigger == Trigger::Signal {
                tracing::info!(binding = %self.name, "binding re-read on SIGHUP: credentials unchanged");
            }
            return Reload::Unchanged;
        }
        if let Err(error) = same_identity(&seen.current, &candidate) {
            return self.refuse(idp, error);
        }
        let now = i64::try_from(self.clock.now()).unwrap_or(i64::MAX);
        let certificate = match certificate::verify(&candidate, now) {
            Ok(certificate) => certificate,
            Err(error) => return self.refuse(idp, error),
        };
        if let Err(error) = idp.rotate(&candidate) {
            return self.refuse(idp, CredentialError::Tls(error.to_string()));
        }
        let generation = idp.status().reloads().generation;
        match &certificate {
            Some(info) => tracing::info!(
                binding = %self.name,
                generation,
                trigger = ?trigger,
                subject = %info.subject,
                issuer = %info.issuer,
                serial = %info.serial,
                not_after = %format_unix(info.not_after),
                "XSUAA client certificate rotated; new token requests use it"
            ),
            None => {
                tracing::info!(binding = %self.name, generation, trigger = ?trigger, "XSUAA client credentials rotated")
            }
        }
        seen.current = candidate;
        Reload::Rotated
    }

    fn refuse(&self, idp: &IdpClient, error: CredentialError) -> Reload {
        tracing::error!(
            binding = %self.name,
            folder = %self.folder.display(),
            reason = %error,
            "new XSUAA credentials refused; the current ones stay in use"
        );
        idp.status().refused(error.to_string());
        Reload::Refused(error)
    }

    fn unreadable(&self, reason: String) -> Reload {
        tracing::warn!(binding = %self.name, folder = %self.folder.display(), %reason, "cannot re-read the XSUAA binding; trying again later");
        Reload::Unreadable(reason)
    }
}

/// Reads the binding through one resolution of `..data`, so that a swap in the middle of the read
/// cannot pair a new certificate with an old key.
fn read_payload(folder: &Path) -> std::io::Result<Map<String, Value>> {
    let payload = match std::fs::read_link(folder.join("..data")) {
        Ok(target) => folder.join(target),
        Err(_) => folder.to_path_buf(),
    };
    crate::config::read_binding_files(&payload)
}

fn digest(fields: &Map<String, Value>) -> Vec<u8> {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort();
    for name in names {
        context.update(name.as_bytes());
        context.update(&[0]);
        context.update(fields[name].to_string().as_bytes());
        context.update(&[0]);
    }
    context.finish().as_ref().to_vec()
}

/// True when nothing the token client uses differs.
fn same_material(current: &XsuaaCredentials, candidate: &XsuaaCredentials) -> bool {
    current.certificate == candidate.certificate
        && current.key == candidate.key
        && current.clientsecret == candidate.clientsecret
        && current.certurl == candidate.certurl
        && current.url == candidate.url
        && current.clientid == candidate.clientid
}

/// Login URLs, token audiences and scopes were built for the identity at start; only the secret
/// material (certificate, key, secret, certurl) may change while running.
fn same_identity(current: &XsuaaCredentials, candidate: &XsuaaCredentials) -> Result<(), CredentialError> {
    for (field, old, new) in [
        ("clientid", &current.clientid, &candidate.clientid),
        ("url", &current.url, &candidate.url),
        ("uaadomain", &current.uaadomain, &candidate.uaadomain),
        ("xsappname", &current.xsappname, &candidate.xsappname),
    ] {
        if old != new {
            return Err(CredentialError::IdentityChanged {
                field,
                old: old.clone(),
                new: new.clone(),
            });
        }
    }
    Ok(())
}

// === tasks ===

/// Starts what keeps `idp`'s client certificate current: the expiry log (x509 credentials) and,
/// for binding files, the watcher (poll every `poll_interval` plus `SIGHUP`). Must run inside a
/// tokio runtime; the tasks end when `idp` is dropped.
pub fn start(idp: &Arc<IdpClient>, clock: Clock, expiry_warning: Duration, poll_interval: Duration) {
    if idp.is_x509() {
        tokio::spawn(monitor_expiry(
            Arc::downgrade(idp.status()),
            clock,
            expiry_warning,
            EXPIRY_LOG_PERIOD,
        ));
    }
    let Some(rotation) = idp.rotation() else {
        return;
    };
    tracing::info!(
        binding = %rotation.binding(),
        folder = %rotation.folder().display(),
        interval_ms = poll_interval.as_millis() as u64,
        "watching the XSUAA binding for rotated credentials (SIGHUP re-reads it at once)"
    );
    tokio::spawn(watch_binding(Arc::downgrade(idp), poll_interval, hangup_signal()));
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Option<Hangup> {
    // Registered before `start` returns, so a SIGHUP sent right after start-up is not lost.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; the binding is still polled");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<Hangup> {
    None
}

async fn next_hangup(signal: &mut Option<Hangup>) {
    #[cfg(unix)]
    if let Some(signal) = signal {
        if signal.recv().await.is_some() {
            return;
        }
    }
    let _ = signal;
    std::future::pending::<()>().await;
}

async fn watch_binding(idp: Weak<IdpClient>, interval: Duration, mut hangup: Option<Hangup>) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            _ = ticker.tick() => Trigger::Poll,
            () = next_hangup(&mut hangup) => Trigger::Signal,
        };
        let Some(idp) = idp.upgrade() else { break };
        idp.reload(trigger).await;
    }
}

/// Logs the certificate's details and expiry now, every `period`, and after each rotation, and
/// publishes each check on the status. Ends when the status is dropped.
pub async fn monitor_expiry(status: Weak<CredentialStatus>, clock: Clock, warning: Duration, period: Duration) {
    let Some(mut reloads) = status.upgrade().map(|status| status.subscribe_reloads()) else {
        return;
    };
    let mut generation = reloads.borrow_and_update().generation;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = reloads.changed() => {
                if changed.is_err() {
                    break;
                }
                // Refusals change the reload state too, but leave the certificate as it was.
                let current = reloads.borrow_and_update().generation;
                if current == generation {
                    continue;
                }
                generation = current;
            }
        }
        let Some(status) = status.upgrade() else { break };
        if let Some(check) = check_expiry(&status, clock.now(), warning) {
            status.expiry.send_replace(Some(check));
        }
    }
}

/// One expiry check of the certificate in `status`, logged at the level it deserves.
pub fn check_expiry(status: &CredentialStatus, now_unix: u64, warning: Duration) -> Option<ExpiryCheck> {
    let info = status.certificate()?;
    let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
    let seconds_left = info.seconds_left(now);
    let level = expiry_level(seconds_left, warning);
    let not_after = format_unix(info.not_after);
    let left = format_seconds(seconds_left);
    match level {
        ExpiryLevel::Valid => tracing::info!(
            subject = %info.subject, issuer = %info.issuer, serial = %info.serial, %not_after, %left,
            "XSUAA client certificate"
        ),
        ExpiryLevel::ExpiresSoon => tracing::warn!(
            subject = %info.subject, issuer = %info.issuer, serial = %info.serial, %not_after, %left,
            "XSUAA client certificate expires soon; rotate the binding"
        ),
        ExpiryLevel::Expired => tracing::error!(
            subject = %info.subject, issuer = %info.issuer, serial = %info.serial, %not_after,
            "XSUAA client certificate expired; token requests will fail until the binding is rotated"
        ),
    }
    Some(ExpiryCheck {
        level,
        seconds_left,
        checked_at: now_unix,
    })
}

#[cfg(test)]
mod tests;
