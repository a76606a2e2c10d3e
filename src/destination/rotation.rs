//! Rotation of the Destination and Connectivity bindings' certificates: bindings of files (which
//! the kubelet rewrites in place) are re-read every poll interval, and a new certificate that
//! fits its key and is valid now replaces the old one for the token requests that follow.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::DestinationServices;
use crate::config::{ServiceBinding, ServiceBindings, ServiceCredential};
use crate::idp::rotation::certificate;

/// Watches every binding of `bindings` that comes from files, as long as `services` lives. Must
/// run inside a tokio runtime.
pub fn watch(services: &Arc<DestinationServices>, bindings: &ServiceBindings, interval: Duration) {
    for binding in bindings.iter() {
        if crate::config::reread_service(binding).is_none() {
            continue;
        }
        tracing::info!(
            service = binding.kind.tag(),
            binding = %binding.name,
            interval_ms = interval.as_millis() as u64,
            "watching the service binding for rotated credentials"
        );
        tokio::spawn(poll(Arc::downgrade(services), binding.clone(), interval));
    }
}

async fn poll(services: Weak<DestinationServices>, mut current: ServiceBinding, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(services) = services.upgrade() else {
            return;
        };
        let Some(read) = crate::config::reread_service(&current) else {
            return;
        };
        let name = current.name.clone();
        let service = current.kind.tag();
        let fresh = match read {
            Ok(fresh) => fresh,
            Err(errors) => {
                tracing::warn!(service, binding = %name, %errors, "rotated binding unusable; the previous credentials stay");
                continue;
            }
        };
        if same_credential(&fresh.credential, &current.credential) {
            continue;
        }
        if let Err(reason) = usable(&fresh.credential) {
            tracing::warn!(service, binding = %name, %reason, "rotated certificate refused; the previous one stays");
            continue;
        }
        match services.set_binding(&fresh) {
            Ok(()) => {
                tracing::info!(service, binding = %name, "service binding credentials rotated");
                current = fresh;
            }
            Err(error) => {
                tracing::warn!(service, binding = %name, error = %crate::idp::xsuaa::error_chain(&error), "rotated credentials unusable; the previous ones stay");
            }
        }
    }
}

fn same_credential(a: &ServiceCredential, b: &ServiceCredential) -> bool {
    match (a, b) {
        (
            ServiceCredential::X509 { certificate, key },
            ServiceCredential::X509 {
                certificate: other_certificate,
                key: other_key,
            },
        ) => certificate == other_certificate && key == other_key,
        (ServiceCredential::Secret(a), ServiceCredential::Secret(b)) => a == b,
        _ => false,
    }
}

/// A certificate must fit its key and be valid now; a half-written pair (the certificate
/// rewritten, the key not yet) is refused until the next poll.
fn usable(credential: &ServiceCredential) -> Result<(), String> {
    let ServiceCredential::X509 { certificate, key } = credential else {
        return Ok(());
    };
    certificate::check_key(certificate, key).map_err(|error| error.to_string())?;
    let info = certificate::inspect(certificate).map_err(|error| error.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    certificate::check_validity(&info, now).map_err(|error| error.to_string())
}
