//! The SaaS registry's subscription callbacks: the services a subscription depends on, and a
//! tenant's subscription (its application URL) and unsubscription, for tokens of the provider's
//! zone that carry `<xsappname>.Callback`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use serde::Deserialize;

use crate::body::{self, Body};
use crate::config::saas::SaasRegistry;
use crate::config::tenancy::Tenancy;
use crate::config::{ServiceBindings, XsuaaCredentials};
use crate::idp::jwt::{Audience, Claims, JwtError, Validator};
use crate::idp::xsuaa::IdpClient;
use crate::idp::Clock;
use crate::metrics::Metrics;
use crate::origin::WebOrigin;

/// The largest subscription body read (the SaaS registry sends well under 1 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a callback is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Authorization header")]
    MissingToken,
    #[error("Authorization is not a bearer token")]
    NotBearer,
    #[error("token refused: {0}")]
    TokenInvalid(JwtError),
    #[error("token keys unavailable: {0}")]
    KeysUnavailable(JwtError),
    #[error("token lacks scope {0}")]
    MissingScope(String),
    #[error("no such callback")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods the callback answers.
        allow: &'static str,
    },
    #[error("subscription body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("subscription body unreadable")]
    BodyUnreadable,
    #[error("subscription body is not a JSON object")]
    BodyNotJson,
    #[error("subscription body has no subscribedSubdomain")]
    MissingSubdomain,
    #[error("subscribedSubdomain is not a DNS label")]
    BadSubdomain,
    #[error("the request's host names no tenant to replace")]
    HostWithoutTenant,
}

impl Error {
    /// The status the SaaS registry gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MissingToken | Error::NotBearer | Error::TokenInvalid(_) => StatusCode::UNAUTHORIZED,
            Error::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::MissingScope(_) => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyUnreadable
            | Error::BodyNotJson
            | Error::MissingSubdomain
            | Error::BadSubdomain
            | Error::HostWithoutTenant => StatusCode::BAD_REQUEST,
        }
    }

    /// The headers the refusal carries: the bearer challenge, the methods allowed.
    pub fn decorate(&self, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        match self {
            Error::MissingToken | Error::NotBearer | Error::TokenInvalid(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
    }
}

/// What a path under the callbacks asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback<'p> {
    /// `getDependencies`.
    Dependencies,
    /// `onSubscription` of this tenant id.
    Tenant(&'p str),
    /// Something else under the callbacks' paths.
    Unknown,
}

/// The subscription callbacks of a `saas-registry` binding.
pub struct Subscriptions {
    registry: SaasRegistry,
    /// Tokens of the provider's zone only: a subscriber's admin must not subscribe tenants.
    validator: Validator,
    idp: Arc<IdpClient>,
    clock: Clock,
    /// `<xsappname>.Callback`.
    scope: String,
    /// The `getDependencies` answer, built once.
    dependencies: Bytes,
}

/// The part of the SaaS registry's subscription body the router reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    #[serde(default)]
    subscribed_subdomain: Option<String>,
    #[serde(default)]
    subscribed_tenant_id: Option<String>,
    #[serde(default)]
    subscribed_subaccount_id: Option<String>,
}

impl Subscriptions {
    /// The callbacks of `registry`, checking tokens against the XSUAA binding `xsuaa` (keys at
    /// `idp`); `None` when the binding names no zone (`identityzoneid`), since a validator for
    /// any zone would let subscribers' tokens in.
    pub fn new(
        registry: &SaasRegistry,
        xsuaa: &XsuaaCredentials,
        services: &ServiceBindings,
        idp: Arc<IdpClient>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Option<Subscriptions> {
        let zone = xsuaa.identityzoneid.clone()?;
        let mut validator = Validator::new(&xsuaa.clientid, &xsuaa.xsappname, &xsuaa.keys_host()).with_zone(Some(zone));
        validator.set_metrics(metrics);
        let dependencies: Vec<serde_json::Value> = services
            .iter()
            .filter_map(|service| {
                let Some(xsappname) = &service.xsappname else {
                    tracing::warn!(
                        service = service.kind.tag(),
                        binding = %service.name,
                        "the binding has no xsappname: subscriptions will not depend on it"
                    );
                    return None;
                };
                Some(serde_json::json!({
                    "xsappname": xsappname,
                    "appId": xsappname,
                    "appName": service.kind.tag(),
                }))
            })
            .collect();
        let dependencies = serde_json::to_vec(&dependencies).unwrap_or_else(|_| b"[]".to_vec());
        Some(Subscriptions {
            registry: registry.clone(),
            validator,
            idp,
            clock,
            scope: format!("{}.Callback", xsuaa.xsappname),
            dependencies: Bytes::from(dependencies),
        })
    }

    /// Which callback `path` is for; `None` for paths outside the callbacks.
    pub fn callback<'p>(&self, path: &'p str) -> Option<Callback<'p>> {
        let registry = &self.registry;
        if let Some(rest) = path.strip_prefix(registry.tenants_path.as_str()) {
            return match rest.strip_prefix('/') {
                Some(id) if !id.is_empty() && !id.contains('/') => Some(Callback::Tenant(id)),
                Some(_) => Some(Callback::Unknown),
                None if rest.is_empty() => Some(Callback::Unknown),
                None => None,
            };
        }
        let rest = path.strip_prefix(registry.dependencies_path.as_str())?;
        match rest {
            "" => Some(Callback::Dependencies),
            _ if rest.starts_with('/') => Some(Callback::Unknown),
            _ => None,
        }
    }

    /// The caller's token: a valid bearer token of the provider's zone with the callback scope
    /// (in `scope`, or in `authorities` as client-credentials tokens have it).
    ///
    /// # Errors
    /// No or another kind of credential, a token that does not validate (401), the scope missing
    /// (403), keys that cannot be fetched (503).
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<Claims, Error> {
        let value = headers.get(header::AUTHORIZATION).ok_or(Error::MissingToken)?;
        let value = value.to_str().map_err(|_| Error::NotBearer)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(Error::NotBearer)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Error::NotBearer);
        }
        let claims = self
            .validator
            .validate(&self.idp, token, self.clock.now())
            .await
            .map_err(|error| match error {
                JwtError::KeysUnavailable(_) => Error::KeysUnavailable(error),
                error => Error::TokenInvalid(error),
            })?;
        let has = |list: &Option<Audience>| list.as_ref().is_some_and(|list| list.to_vec().contains(&self.scope));
        if !has(&claims.scope) && !has(&claims.authorities) {
            return Err(Error::MissingScope(self.scope.clone()));
        }
        Ok(claims)
    }

    /// `getDependencies`: the Destination and Connectivity services bound, by their `xsappname`,
    /// so that each subscriber gets its own subscription to them.
    pub fn dependencies(&self) -> Response<Body> {
        let mut response = Response::new(body::full(self.dependencies.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        no_store(&mut response);
        response
    }

    /// A subscription of tenant `tenant_id` (`body` as the SaaS registry sent it): the tenant's
    /// application URL, `origin` (how the router was reached) with the provider's tenant in its
    /// host replaced by the subscriber's subdomain.
    ///
    /// # Errors
    /// A body that is not JSON or lacks a valid `subscribedSubdomain`; a host that names no tenant.
    pub fn subscribe(
        &self,
        tenancy: &Tenancy,
        origin: &WebOrigin,
        tenant_id: &str,
        body: &[u8],
    ) -> Result<Response<Body>, Error> {
        let subscription: Subscription = serde_json::from_slice(body).map_err(|_| Error::BodyNotJson)?;
        let subdomain = subscription.subscribed_subdomain.ok_or(Error::MissingSubdomain)?;
        if !is_dns_label(&subdomain) {
            return Err(Error::BadSubdomain);
        }
        let url = tenant_url(tenancy, origin, &subdomain.to_ascii_lowercase())?;
        tracing::info!(
            tenant_id = %truncated(tenant_id),
            subscribed_tenant_id = subscription.subscribed_tenant_id.as_deref().map(truncated),
            subaccount = subscription.subscribed_subaccount_id.as_deref().map(truncated),
            subdomain = %subdomain,
            url = %url,
            "tenant subscribed"
        );
        let mut response = Response::new(body::full(url));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        no_store(&mut response);
        Ok(response)
    }

    /// The subdomain an unsubscription names in its body (`subscribedSubdomain`), when it is a
    /// DNS label: the tenant whose sessions and cached tokens end.
    pub fn unsubscribed_subdomain(body: &[u8]) -> Option<String> {
        let subscription: Subscription = serde_json::from_slice(body).ok()?;
        subscription
            .subscribed_subdomain
            .filter(|subdomain| is_dns_label(subdomain))
    }

    /// The answer to an unsubscription of `tenant_id`; the caller has ended the tenant's sessions
    /// and dropped its cached tokens and destinations.
    pub fn unsubscribe(&self, tenant_id: &str) -> Response<Body> {
        tracing::info!(tenant_id = %truncated(tenant_id), "tenant unsubscribed");
        let mut response = Response::new(body::empty());
        no_store(&mut response);
        response
    }
}

/// `origin` with the tenant `TENANT_HOST_PATTERN` finds in its host replaced by `subdomain`.
fn tenant_url(tenancy: &Tenancy, origin: &WebOrigin, subdomain: &str) -> Result<String, Error> {
    let captures = tenancy.pattern.captures(&origin.host).ok_or(Error::HostWithoutTenant)?;
    let provider = captures
        .get(1)
        .filter(|group| !group.is_empty())
        .ok_or(Error::HostWithoutTenant)?;
    let host = format!(
        "{}{subdomain}{}",
        &origin.host[..provider.start()],
        &origin.host[provider.end()..]
    );
    let url = WebOrigin {
        scheme: origin.scheme.clone(),
        host,
        port: origin.port,
    };
    Ok(url.to_string())
}

/// A DNS label (RFC 1123): 1 to 63 letters, digits and inner hyphens; what a subaccount's
/// subdomain is, and all that may be put into a host name.
fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// At most 64 characters of a value the caller chose, for the log.
fn truncated(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn no_store(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_dns_labels() {
        for good in ["acme", "a", "acme-corp", "x1", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in [
            "",
            "-acme",
            "acme-",
            "ac.me",
            "ac me",
            "acme/x",
            "äcme",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
