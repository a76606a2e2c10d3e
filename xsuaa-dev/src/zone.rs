//! Identity zones (tenants): each with its host names, users, signing keys
//! and destinations, and how a request's `Host` picks one in multi-zone mode.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use anyhow::{bail, Context as _};
use http::request::Parts;
use serde_json::Value;

use crate::config::{Config, TenantConfig, User};
use crate::destination::Destination;
use crate::jwt::{self, KeyRing};
use crate::state::Listener;
use crate::util::lock;

/// The `uaadomain` in multi-zone mode: zone hosts are `<subdomain>.auth.localhost`,
/// which resolve to loopback without DNS (RFC 6761 section 6.3).
pub(crate) const UAA_DOMAIN: &str = "auth.localhost";

/// The domain of the mTLS hosts in multi-zone mode: `<subdomain>.auth.cert.localhost`.
pub(crate) const CERT_DOMAIN: &str = "auth.cert.localhost";

/// One identity zone.
pub(crate) struct Zone {
    /// `identityzone` / `ext_attr.zdn`.
    pub(crate) subdomain: String,
    pub(crate) zone_id: String,
    /// The zone's `url` (no trailing slash): the issuer's base.
    pub(crate) url: String,
    pub(crate) cert_url: String,
    /// Never empty: the first user is the one /oauth/authorize logs in.
    pub(crate) users: Vec<User>,
    /// Only this zone's tokens verify with these keys.
    pub(crate) keys: Mutex<KeyRing>,
    /// Destinations by name; tests change the provider's while the server runs.
    pub(crate) destinations: Mutex<BTreeMap<String, Destination>>,
}

/// The listener ports and mode the zone URLs are built from.
pub(crate) struct Hosts {
    pub(crate) multi_zone: bool,
    pub(crate) url_port: u16,
    pub(crate) cert_port: u16,
}

impl Hosts {
    /// `url` and `certurl` of the zone with this subdomain.
    pub(crate) fn urls(&self, subdomain: &str) -> (String, String) {
        if self.multi_zone {
            (
                format!("https://{subdomain}.{UAA_DOMAIN}:{}", self.url_port),
                format!("https://{subdomain}.{CERT_DOMAIN}:{}", self.cert_port),
            )
        } else {
            (
                format!("https://127.0.0.1:{}", self.url_port),
                format!("https://127.0.0.1:{}", self.cert_port),
            )
        }
    }
}

impl Zone {
    /// A zone with a fresh key ring whose key ids start with `kid_prefix`.
    pub(crate) fn new(
        hosts: &Hosts,
        subdomain: &str,
        zone_id: &str,
        users: Vec<User>,
        destinations: BTreeMap<String, Destination>,
        kid_prefix: &str,
    ) -> anyhow::Result<Self> {
        let (url, cert_url) = hosts.urls(subdomain);
        Ok(Self {
            subdomain: subdomain.to_string(),
            zone_id: zone_id.to_string(),
            url,
            cert_url,
            users,
            keys: Mutex::new(KeyRing::new(kid_prefix).context("generating a zone's signing key")?),
            destinations: Mutex::new(destinations),
        })
    }

    /// The subscriber zones of a configuration, after the provider zone.
    pub(crate) fn tenants(config: &Config, hosts: &Hosts) -> anyhow::Result<Vec<Self>> {
        config
            .tenants
            .iter()
            .map(|tenant| {
                let users = if tenant.users.is_empty() {
                    vec![TenantConfig::default_user(&tenant.subdomain)]
                } else {
                    tenant.users.clone()
                };
                let zone_id = tenant.zone_id.as_deref().unwrap_or_default();
                let prefix = format!("xsuaa-dev-{}-key", tenant.subdomain);
                Self::new(
                    hosts,
                    &tenant.subdomain,
                    zone_id,
                    users,
                    tenant.destinations.clone(),
                    &prefix,
                )
            })
            .collect()
    }

    /// The user /oauth/authorize logs in.
    pub(crate) fn login_user(&self) -> &User {
        // Zones are built with at least one user.
        &self.users[0]
    }

    /// Verifies a token as one issued in this zone: signature by one of its
    /// keys, not expired, its issuer and zone id.
    pub(crate) fn verify(&self, token: &str) -> Option<Value> {
        jwt::verify_ours(&lock(&self.keys), &self.url, &self.zone_id, token)
    }
}

/// Refuses zone configurations that would make hosts or zone ids ambiguous.
pub(crate) fn check_tenants(config: &Config) -> anyhow::Result<()> {
    let mut subdomains = HashSet::from([config.provider_subdomain.as_str()]);
    let mut zone_ids = HashSet::from([config.zone_id.as_str()]);
    if !is_label(&config.provider_subdomain) {
        bail!(
            "provider subdomain {:?} is not one DNS label",
            config.provider_subdomain
        );
    }
    for tenant in &config.tenants {
        let Some(zone_id) = tenant.zone_id.as_deref() else {
            bail!(
                "zone {:?} has users or destinations but was not added with Builder::tenant",
                tenant.subdomain
            );
        };
        if !is_label(&tenant.subdomain) {
            bail!("tenant subdomain {:?} is not one DNS label", tenant.subdomain);
        }
        if !subdomains.insert(&tenant.subdomain) {
            bail!("subdomain {:?} is used by two zones", tenant.subdomain);
        }
        if !zone_ids.insert(zone_id) {
            bail!("zone id {zone_id:?} is used by two zones");
        }
    }
    Ok(())
}

/// Lower-case letters, digits and inner hyphens, as in a subaccount subdomain.
fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What the host of a request names in multi-zone mode.
pub(crate) enum HostZone<'a> {
    /// A zone's host on this listener.
    Zone(&'a Zone),
    /// The bare domain (`auth.localhost`, or `auth.cert.localhost` on the
    /// mTLS listener): only `/token_keys?zid=` is served there.
    Domain,
    /// Any other host: a subdomain that is no zone, or not a zone host at all.
    Unknown,
}

/// The request's host name without port, lower case: `Host`, else the
/// HTTP/2 `:authority`.
pub(crate) fn request_host(parts: &Parts) -> Option<String> {
    let raw = match parts.headers.get(http::header::HOST) {
        Some(value) => value.to_str().ok()?,
        None => parts.uri.authority()?.as_str(),
    };
    Some(strip_port(raw).to_ascii_lowercase())
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Picks the zone whose host name (for this listener) the request carries.
pub(crate) fn of_host<'a>(zones: &'a [Zone], listener: Listener, host: Option<&str>) -> HostZone<'a> {
    let domain = match listener {
        Listener::CertUrl => CERT_DOMAIN,
        Listener::Url | Listener::Destination => UAA_DOMAIN,
    };
    let Some(host) = host else {
        return HostZone::Unknown;
    };
    if host == domain {
        return HostZone::Domain;
    }
    let subdomain = host
        .strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|label| !label.contains('.'));
    match subdomain.and_then(|sub| zones.iter().find(|zone| zone.subdomain == sub)) {
        Some(zone) => HostZone::Zone(zone),
        None => HostZone::Unknown,
    }
}
