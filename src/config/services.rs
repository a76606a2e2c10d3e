//! The `destination` and `connectivity` service bindings: found by tag or label in
//! `VCAP_SERVICES`, or by `type` under `SERVICE_BINDING_ROOT`, with x509 or secret credentials.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::binding::{self, credential_text, BindingSource};
use super::env::Env;
use super::error::Error;

/// A service the router calls with tokens of its own binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// The Destination service (`tag`/`label`/`type` `destination`).
    Destination,
    /// The Connectivity service (`connectivity`): the on-premise proxy.
    Connectivity,
}

impl ServiceKind {
    /// The tag, label and binding `type` that name the service.
    pub fn tag(self) -> &'static str {
        match self {
            ServiceKind::Destination => "destination",
            ServiceKind::Connectivity => "connectivity",
        }
    }
}

/// How a service binding authenticates at its token endpoint.
#[derive(Clone)]
pub enum ServiceCredential {
    /// Mutual TLS with the binding's certificate at `certurl`; no secret is sent.
    X509 {
        /// PEM chain of the client certificate.
        certificate: String,
        /// PEM private key.
        key: String,
    },
    /// The client secret in the token request's body, at `url`.
    Secret(String),
}

/// A checked `destination` or `connectivity` binding.
#[derive(Clone)]
pub struct ServiceBinding {
    /// Which service.
    pub kind: ServiceKind,
    /// The instance's name (`name` in `VCAP_SERVICES`, the folder name for binding files).
    pub name: String,
    /// Where it was found.
    pub source: BindingSource,
    /// `client_id` of every token request.
    pub clientid: String,
    /// Certificate or secret.
    pub credential: ServiceCredential,
    /// The token endpoint, `{certurl or url}/oauth/token` (`token_service_url` before `url` for
    /// connectivity).
    pub token_url: String,
    /// `uaadomain`, for tenant token hosts.
    pub uaadomain: Option<String>,
    /// `xsappname` of the service's own application: what a subscription declares as its
    /// dependency on this service.
    pub xsappname: Option<String>,
    /// The service's REST base (`uri`); required for the Destination service.
    pub uri: Option<String>,
    /// The on-premise proxy (`onpremise_proxy_host` and `onpremise_proxy_http_port`, else the
    /// deprecated `onpremise_proxy_port`); required for connectivity.
    pub proxy: Option<(String, u16)>,
}

impl std::fmt::Debug for ServiceBinding {
    // Secrets and keys never reach a log line through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBinding")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("source", &self.source)
            .field("clientid", &self.clientid)
            .field("xsappname", &self.xsappname)
            .field("x509", &self.is_x509())
            .field("token_url", &self.token_url)
            .field("uri", &self.uri)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl ServiceBinding {
    /// True when token requests use mutual TLS.
    pub fn is_x509(&self) -> bool {
        matches!(self.credential, ServiceCredential::X509 { .. })
    }
}

/// The service bindings besides XSUAA, and how the router uses them.
#[derive(Debug, Clone, Default)]
pub struct ServiceBindings {
    /// The Destination service, when bound.
    pub destination: Option<ServiceBinding>,
    /// The Connectivity service, when bound.
    pub connectivity: Option<ServiceBinding>,
    /// How destinations are looked up at the Destination service.
    pub lookup: LookupSettings,
}

/// Settings of destination look-ups.
#[derive(Debug, Clone)]
pub struct LookupSettings {
    /// `DESTINATION_HOST_PATTERN`: group 1 of a match on the request's host names the destination
    /// of a `"destination": "*"` route.
    pub host_pattern: Option<regex::Regex>,
    /// `OUTGOING_REQUEST_OPTIONS.destination.timeout` (ms): the limit of one find request (the
    /// reference waits without limit; 0 or unset means the default).
    pub timeout: Duration,
    /// `DESTINATION_CACHE_TTL` (s): how long a destination without a token of its own is reused,
    /// so that a changed destination is seen within this time.
    pub cache_ttl: Duration,
}

impl Default for LookupSettings {
    fn default() -> LookupSettings {
        LookupSettings {
            host_pattern: None,
            timeout: DEFAULT_LOOKUP_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

/// The default limit of one find request.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default lifetime of a found destination without a token of its own.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

impl ServiceBindings {
    /// Each bound service.
    pub fn iter(&self) -> impl Iterator<Item = &ServiceBinding> {
        self.destination.iter().chain(self.connectivity.iter())
    }
}

/// Finds the destination and connectivity bindings; problems go to `errors`.
pub fn find_services(env: &Env, errors: &mut Error) -> ServiceBindings {
    ServiceBindings {
        destination: find_service(env, ServiceKind::Destination, errors),
        connectivity: find_service(env, ServiceKind::Connectivity, errors),
        lookup: lookup_settings(env, errors),
    }
}

fn lookup_settings(env: &Env, errors: &mut Error) -> LookupSettings {
    let mut settings = LookupSettings::default();
    if let Some(text) = env.get("DESTINATION_HOST_PATTERN") {
        match regex::Regex::new(text) {
            Ok(regex) if regex.captures_len() > 1 => settings.host_pattern = Some(regex),
            Ok(_) => errors.push(
                "DESTINATION_HOST_PATTERN",
                "needs a capture group: its first group names the destination",
            ),
            Err(error) => errors.push("DESTINATION_HOST_PATTERN", format!("not a valid regex: {error}")),
        }
    }
    if let Some(timeout) = super::env::outgoing_timeout(env, "destination", errors) {
        settings.timeout = timeout;
    }
    if let Some(text) = env.get("DESTINATION_CACHE_TTL") {
        if let Some(seconds) = super::env::positive_integer("DESTINATION_CACHE_TTL", text, errors) {
            settings.cache_ttl = Duration::from_secs(seconds);
        }
    }
    settings
}

/// `binding` as its files say now (a rotated certificate), or `None` for a binding of
/// `VCAP_SERVICES`, which does not change while the process runs.
///
/// # Errors
/// The folder cannot be read, or its credentials are no longer a valid binding.
pub fn reread(binding: &ServiceBinding) -> Option<Result<ServiceBinding, Error>> {
    let BindingSource::Files(folder) = &binding.source else {
        return None;
    };
    let mut errors = Error::default();
    let credentials = match binding::read_binding_files(folder) {
        Ok(credentials) => credentials,
        Err(error) => {
            errors.push(
                folder.display().to_string(),
                format!("cannot read the binding: {error}"),
            );
            return Some(Err(errors));
        }
    };
    let parsed = parse(
        binding.kind,
        &binding.name,
        binding.source.clone(),
        &credentials,
        &mut errors,
    );
    Some(match parsed {
        Some(parsed) if errors.is_empty() => Ok(parsed),
        _ => Err(errors),
    })
}

/// Finds the one binding of `kind`: binding files first (as for XSUAA), then `VCAP_SERVICES`.
/// Two bindings of the kind in one place is an error naming both.
pub fn find_service(env: &Env, kind: ServiceKind, errors: &mut Error) -> Option<ServiceBinding> {
    let found = match env.get("SERVICE_BINDING_ROOT") {
        Some(root) if !root.is_empty() => from_files(Path::new(root), kind.tag(), errors),
        _ => None,
    };
    let (name, source, credentials) = match found {
        Some(found) => found,
        None => from_vcap(env, kind.tag(), errors)?,
    };
    parse(kind, &name, source, &credentials, errors)
}

/// A found binding: its name, where it was found, and its credentials.
pub(super) type Found = (String, BindingSource, Map<String, Value>);

/// The one instance of `VCAP_SERVICES` whose label or a tag is `tag`.
pub(super) fn from_vcap(env: &Env, tag: &str, errors: &mut Error) -> Option<Found> {
    // A malformed VCAP_SERVICES is reported by the XSUAA look-up already.
    let mut ignored = Error::default();
    let services = binding::vcap_services(env, &mut ignored)?;
    let matching: Vec<_> = binding::vcap_instances(&services)
        .into_iter()
        .filter(|(label, instance)| *label == tag || binding::has_tag(instance.get("tags"), tag))
        .collect();
    let (_, instance) = one_of(
        &matching,
        |(_, instance)| binding::instance_name(instance, tag),
        "VCAP_SERVICES",
        tag,
        errors,
    )?;
    let name = binding::instance_name(instance, tag);
    let credentials = binding::instance_credentials(&name, instance, errors)?;
    Some((name, BindingSource::VcapServices, credentials))
}

/// The one binding folder under `root` whose `type` is `tag`.
pub(super) fn from_files(root: &Path, tag: &str, errors: &mut Error) -> Option<Found> {
    let mut ignored = Error::default();
    let folders = binding::binding_folders(root, &mut ignored)?;
    let matching: Vec<_> = folders
        .into_iter()
        .filter(|folder| binding::binding_type(folder).as_deref() == Some(tag))
        .collect();
    let folder = one_of(
        &matching,
        |folder| binding::file_name(folder),
        "SERVICE_BINDING_ROOT",
        tag,
        errors,
    )?;
    let name = binding::file_name(folder);
    match binding::read_binding_files(folder) {
        Ok(credentials) => Some((name, BindingSource::Files(folder.clone()), credentials)),
        Err(error) => {
            errors.push(
                format!("SERVICE_BINDING_ROOT: {name}"),
                format!("cannot read binding files: {error}"),
            );
            None
        }
    }
}

/// The single match; none is `None`, several an error naming each.
fn one_of<'a, T>(
    matching: &'a [T],
    name: impl Fn(&T) -> String,
    place: &str,
    tag: &str,
    errors: &mut Error,
) -> Option<&'a T> {
    match matching {
        [] => None,
        [one] => Some(one),
        several => {
            let names: Vec<String> = several.iter().map(|m| format!("{:?}", name(m))).collect();
            errors.push(
                place,
                format!(
                    "{} {tag} bindings ({}): bind exactly one",
                    several.len(),
                    names.join(", ")
                ),
            );
            None
        }
    }
}

fn parse(
    kind: ServiceKind,
    name: &str,
    source: BindingSource,
    credentials: &Map<String, Value>,
    errors: &mut Error,
) -> Option<ServiceBinding> {
    let path = source.key_path(name);
    let text = |key: &str| credential_text(credentials, key);
    let before = errors.problems.len();
    let url = |key: &str, required: bool, errors: &mut Error| -> Option<String> {
        let value = text(key);
        match &value {
            None if required => errors.push(format!("{path}.{key}"), "is required"),
            Some(value) if !is_absolute_http(value) => errors.push(
                format!("{path}.{key}"),
                format!("must be an absolute http(s) URL, got {value:?}"),
            ),
            _ => {}
        }
        value.map(|value| value.trim_end_matches('/').to_string())
    };
    let clientid = text("clientid");
    if clientid.is_none() {
        errors.push(format!("{path}.clientid"), "is required");
    }
    let (certificate, key, secret) = (text("certificate"), text("key"), text("clientsecret"));
    let credential = match (certificate, key, secret) {
        (Some(certificate), Some(key), _) => Some(ServiceCredential::X509 { certificate, key }),
        (Some(_), None, _) => {
            errors.push(format!("{path}.key"), "is required with certificate");
            None
        }
        (None, _, Some(secret)) => Some(ServiceCredential::Secret(secret)),
        (None, _, None) => {
            errors.push(&path, "needs clientsecret or certificate and key");
            None
        }
    };
    let token_base = match &credential {
        Some(ServiceCredential::X509 { .. }) => url("certurl", true, errors),
        _ if kind == ServiceKind::Connectivity && text("token_service_url").is_some() => {
            url("token_service_url", true, errors)
        }
        _ => url("url", true, errors),
    };
    let uri = url("uri", kind == ServiceKind::Destination, errors);
    let proxy = match kind {
        ServiceKind::Destination => None,
        ServiceKind::Connectivity => proxy(credentials, &path, errors),
    };
    if errors.problems.len() != before {
        return None;
    }
    Some(ServiceBinding {
        kind,
        name: name.to_string(),
        source,
        clientid: clientid?,
        credential: credential?,
        token_url: format!("{}/oauth/token", token_base?),
        uaadomain: text("uaadomain"),
        xsappname: text("xsappname"),
        uri,
        proxy,
    })
}

/// The connectivity proxy: host, then the current port name before the deprecated one.
fn proxy(credentials: &Map<String, Value>, path: &str, errors: &mut Error) -> Option<(String, u16)> {
    let host = credentials
        .get("onpremise_proxy_host")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|host| !host.is_empty());
    if host.is_none() {
        errors.push(format!("{path}.onpremise_proxy_host"), "is required");
    }
    let key = ["onpremise_proxy_http_port", "onpremise_proxy_port"]
        .into_iter()
        .find(|key| credentials.contains_key(*key));
    let port = match key {
        None => {
            errors.push(
                format!("{path}.onpremise_proxy_http_port"),
                "is required (or the deprecated onpremise_proxy_port)",
            );
            None
        }
        Some(key) => {
            let port = match &credentials[key] {
                Value::Number(number) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
                Value::String(text) => text.trim().parse::<u16>().ok(),
                _ => None,
            }
            .filter(|port| *port != 0);
            if port.is_none() {
                errors.push(format!("{path}.{key}"), "must be a port number (1-65535)");
            }
            port
        }
    };
    Some((host?.to_string(), port?))
}

/// True for an `http` or `https` URL with a host.
fn is_absolute_http(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()))
}

#[cfg(test)]
mod tests;
