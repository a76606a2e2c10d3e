//! Multitenancy: `TENANT_HOST_PATTERN` names the tenant (the subscriber's subdomain) in the
//! request's host, and every login and token of that request goes to the tenant's XSUAA.

use std::sync::Arc;

use super::binding::XsuaaCredentials;
use super::env::Env;
use super::error::Error;

/// How tenants are told apart and where their XSUAA lives.
#[derive(Debug, Clone)]
pub struct Tenancy {
    /// `TENANT_HOST_PATTERN`: group 1 of a match on the request's host is the tenant.
    pub pattern: regex::Regex,
    /// `uaadomain` of the binding: a tenant's XSUAA is `<tenant>.<uaadomain>`.
    pub uaadomain: Arc<str>,
    /// The port of the binding's `url` and `certurl` when not the default (kept on tenant URLs).
    url_port: Option<u16>,
    certurl_port: Option<u16>,
    /// `certurl` without its first label (`authentication.cert.<landscape>`), for the tenant's
    /// certificate host; `None` for secret bindings.
    cert_domain: Option<Arc<str>>,
    /// Tells this configuration's memo entries from another's ([`Tenancy::tenant_of_host`]).
    id: u64,
}

/// Hosts a thread remembers the tenant of: a handful of tenants carry most traffic, and a
/// flood of other hosts only evicts entries.
const MEMO_SIZE: usize = 16;

/// (configuration id, host, tenant) of one host seen lately.
type Remembered = (u64, Box<str>, Option<Arc<str>>);

thread_local! {
    /// The next slot to replace, and the hosts seen lately: in place of a regex match with
    /// captures and an allocation per request.
    static MEMO: std::cell::RefCell<(usize, Vec<Remembered>)> = const { std::cell::RefCell::new((0, Vec::new())) };
}

impl Tenancy {
    /// The tenant named by `host` (the port is cut off), if the pattern matches and names one.
    pub fn tenant_of<'h>(&self, host: &'h str) -> Option<&'h str> {
        let host = strip_port(host);
        let tenant = self.pattern.captures(host)?.get(1)?.as_str();
        let valid =
            !tenant.is_empty() && tenant.len() <= 63 && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        valid.then_some(tenant)
    }

    /// [`Tenancy::tenant_of`] as a shared string, remembered per thread for the hosts seen
    /// lately.
    pub fn tenant_of_host(&self, host: &str) -> Option<Arc<str>> {
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if let Some((_, _, tenant)) = memo.1.iter().find(|(id, seen, _)| *id == self.id && **seen == *host) {
                return tenant.clone();
            }
            let tenant: Option<Arc<str>> = self.tenant_of(host).map(Arc::from);
            let entry = (self.id, Box::from(host), tenant.clone());
            if memo.1.len() < MEMO_SIZE {
                memo.1.push(entry);
            } else {
                let next = memo.0 % MEMO_SIZE;
                memo.1[next] = entry;
                memo.0 = next + 1;
            }
            tenant
        })
    }

    /// `https://<tenant>.<uaadomain>[:port]`: authorize, logout, userinfo and secret-based token
    /// requests of `tenant`.
    pub fn url(&self, tenant: &str) -> String {
        with_port(format!("https://{tenant}.{}", self.uaadomain), self.url_port)
    }

    /// The token endpoint of `tenant`: its certificate host for x509 credentials, else its URL.
    pub fn token_url(&self, tenant: &str) -> String {
        match &self.cert_domain {
            Some(domain) => format!(
                "{}/oauth/token",
                with_port(format!("https://{tenant}.{domain}"), self.certurl_port)
            ),
            None => format!("{}/oauth/token", self.url(tenant)),
        }
    }

    /// The token keys of zone `zid`: `https://<uaadomain>[:port]/token_keys?zid=<zid>`.
    pub fn keys_url(&self, zid: &str) -> String {
        let mut url = with_port(format!("https://{}", self.uaadomain), self.url_port);
        url.push_str("/token_keys?zid=");
        url.extend(percent_encoding::utf8_percent_encode(
            zid,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        url
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(inside, _)| inside.trim_start_matches('['));
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

fn with_port(mut url: String, port: Option<u16>) -> String {
    if let Some(port) = port {
        url.push(':');
        url.push_str(&port.to_string());
    }
    url
}

/// `TENANT_HOST_PATTERN` against the binding: a `tenantmode: shared` binding needs it (as in the
/// Node.js router), and it needs such a binding; `APPROUTER_URL` names one host and cannot serve
/// several tenants.
pub fn from_env(env: &Env, xsuaa: Option<&XsuaaCredentials>, errors: &mut Error) -> Option<Tenancy> {
    const NAME: &str = "TENANT_HOST_PATTERN";
    let shared = xsuaa.is_some_and(|xsuaa| xsuaa.tenantmode.as_deref() == Some("shared"));
    let Some(text) = env.get(NAME).filter(|text| !text.trim().is_empty()) else {
        if shared {
            errors.push(
                NAME,
                "the XSUAA binding has tenantmode shared: set TENANT_HOST_PATTERN (a regex whose first group \
                 is the tenant's subdomain in the host)",
            );
        }
        return None;
    };
    let pattern = match regex::Regex::new(text) {
        Ok(pattern) if pattern.captures_len() > 1 => pattern,
        Ok(_) => {
            errors.push(NAME, "needs a capture group: its first group is the tenant's subdomain");
            return None;
        }
        Err(error) => {
            errors.push(NAME, format!("not a valid regex: {error}"));
            return None;
        }
    };
    let Some(xsuaa) = xsuaa else {
        errors.push(
            NAME,
            "needs an XSUAA binding (tenants log in at their own XSUAA subdomain)",
        );
        return None;
    };
    if !shared {
        errors.push(
            NAME,
            format!(
                "needs an XSUAA binding with tenantmode shared; {:?} has {:?}",
                xsuaa.name,
                xsuaa.tenantmode.as_deref().unwrap_or("none")
            ),
        );
        return None;
    }
    if env.get("APPROUTER_URL").is_some() {
        errors.push(
            "APPROUTER_URL",
            "names one host, but TENANT_HOST_PATTERN serves each tenant on its own: unset one of them",
        );
    }
    let port_of = |url: &str| url::Url::parse(url).ok().and_then(|url| url.port());
    let uaadomain = xsuaa
        .uaadomain
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    if uaadomain.is_empty() || uaadomain.contains(['/', '?', '#']) {
        errors.push(
            format!("VCAP_SERVICES: {}.uaadomain", xsuaa.name),
            "is needed for tenant URLs and must be a host name",
        );
        return None;
    }
    let (uaadomain, url_port) = match uaadomain.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_string(), port.parse::<u16>().ok()),
        _ => (uaadomain, port_of(&xsuaa.url)),
    };
    let cert_domain = match (&xsuaa.certurl, xsuaa.is_x509()) {
        (Some(certurl), true) => {
            let host = url::Url::parse(certurl)
                .ok()
                .and_then(|url| url.host_str().map(str::to_string));
            match host.as_deref().and_then(|host| host.split_once('.')) {
                Some((_, domain)) if !domain.is_empty() => Some(Arc::from(domain)),
                _ => {
                    errors.push(
                        format!("VCAP_SERVICES: {}.certurl", xsuaa.name),
                        "must be https://<subdomain>.<certificate domain> to derive tenant certificate hosts",
                    );
                    return None;
                }
            }
        }
        _ => None,
    };
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Some(Tenancy {
        id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        pattern,
        uaadomain: Arc::from(uaadomain),
        url_port,
        certurl_port: xsuaa.certurl.as_deref().and_then(port_of),
        cert_domain,
    })
}

#[cfg(test)]
mod tests;
