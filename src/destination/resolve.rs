//! Destinations of the Destination service made ready for a request: found with the token the
//! request calls for, checked against how the route named them, turned into the [`Destination`]
//! the proxy sends to and the headers that go with it, and cached per (user, name).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use rustls::RootCertStore;

use super::{Authentication, DestinationCache, DestinationClient, DestinationError, FindRequest, FoundDestination};
use super::{ProxyType, DEFAULT_TIMEOUT};
use crate::config::{Destination, ServiceBindings};
use crate::idp::service_token::{ServiceTokenError, ServiceTokens};
use crate::idp::Clock;
use crate::metrics::Metrics;

/// How long a backend may take when the destination sets no `HTML5.Timeout` (the reference's).
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Destinations kept at most.
const CAPACITY: usize = 10_000;
/// The header that carries the user to an on-premise system (principal propagation).
const CONNECTIVITY_AUTHENTICATION: HeaderName = HeaderName::from_static("sap-connectivity-authentication");
const LOCATION_ID: HeaderName = HeaderName::from_static("sap-connectivity-scc-location_id");

/// A found destination, ready for requests: the same for every request of its cache key.
pub struct Resolved {
    /// What the Destination service said.
    pub found: FoundDestination,
    /// Where requests go, in the form the proxy takes.
    pub destination: Destination,
    /// Set on every request after the header policy ran: the credentials of
    /// `authTokens[0].http_header`, `sap-client`, the Cloud Connector location.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Resolved {
    /// Checks what the router cannot send yet and builds the request's parts of `found`;
    /// `client_certificate` says whether the XSUAA binding has a certificate for
    /// `HTML5.ForwardAuthCertificates`.
    ///
    /// # Errors
    /// [`DestinationError::NotYetSupported`] or [`DestinationError::Invalid`], naming the property.
    pub fn new(found: FoundDestination, client_certificate: bool) -> Result<Resolved, DestinationError> {
        let not_yet = |what: &str| DestinationError::NotYetSupported {
            name: found.name.clone(),
            what: what.to_string(),
        };
        let invalid = |property: &str, reason: &str| DestinationError::Invalid {
            name: found.name.clone(),
            property: property.to_string(),
            reason: reason.to_string(),
        };
        if !found.trust_store.is_empty() {
            return Err(not_yet("TrustStoreLocation (a trust store of the destination)"));
        }
        if found.strict_connection_mode {
            // A separate pool changes nothing a backend can see; connections are pooled as usual.
            tracing::debug!(destination = %found.name, "HTML5.StrictConnectionMode: connections are pooled as for every destination");
        }
        let on_premise = found.proxy_type == ProxyType::OnPremise;
        // Never sent without the certificate, as the Node.js router would.
        if found.forward_auth_certificates && !client_certificate && !on_premise {
            return Err(invalid(
                "HTML5.ForwardAuthCertificates",
                "needs the XSUAA binding's client certificate, but the binding has none \
                 (credential-type x509 gives it one)",
            ));
        }
        if on_premise && found.url.scheme() != "http" {
            return Err(invalid(
                "URL",
                "must be http:// for ProxyType OnPremise: the connectivity proxy refuses https \
                 (the Cloud Connector speaks TLS to the system)",
            ));
        }
        let url = &found.url;
        let scheme = match url.scheme() {
            "https" => http::uri::Scheme::HTTPS,
            _ => http::uri::Scheme::HTTP,
        };
        let host = url.host_str().unwrap_or_default();
        let authority_text = match url.port() {
            Some(port) => format!("{}:{port}", bracketed(host)),
            None => bracketed(host),
        };
        let authority = authority_text
            .parse::<http::uri::Authority>()
            .map_err(|_| invalid("URL", "has no usable host"))?;
        let host_header =
            HeaderValue::try_from(authority_text.as_str()).map_err(|_| invalid("URL", "has no usable host"))?;
        let destination = Destination {
            name: found.name.clone(),
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').to_string(),
            proxy: None,
            forward_auth_token: found.forward_auth_token,
            // Plain HTTP to the on-premise proxy: there is no TLS to present it in.
            forward_auth_certificates: found.forward_auth_certificates && !on_premise,
            strict_ssl: !found.trust_all,
            timeout: found.timeout.unwrap_or(DEFAULT_BACKEND_TIMEOUT),
            set_x_forwarded_headers: found.set_x_forwarded_headers,
            preserve_host_header: found.preserve_host_header,
            host_header,
            on_premise,
        };
        let mut headers = Vec::new();
        if let Some((name, value)) = &found.auth_header {
            // The service's own principal-propagation header is sent only where the user is
            // propagated ([`DestinationServices::resolve`]).
            if *name != CONNECTIVITY_AUTHENTICATION {
                headers.push((name.clone(), value.clone()));
            }
        }
        if let Some(client) = &found.sap_client {
            headers.push((HeaderName::from_static("sap-client"), client.clone()));
        }
        if let (true, Some(location)) = (on_premise, &found.cloud_connector_location_id) {
            headers.push((LOCATION_ID, location.clone()));
        }
        Ok(Resolved {
            found,
            destination,
            headers,
        })
    }
}

fn bracketed(host: &str) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.to_string(),
    }
}

/// One destination to find, and for whom.
#[derive(Clone, Copy)]
pub struct Find<'a> {
    pub name: &'a str,
    /// The name came from the request (`$N`, `*`): `HTML5.DynamicDestination` is required.
    pub dynamic: bool,
    /// The login token of the user, `None` on a public route.
    pub user: Option<&'a str>,
    /// The user's (or, without one, the host's) tenant; `None`: the provider.
    pub tenant: Option<&'a str>,
    /// The route's `preferLocal`.
    pub prefer_local: bool,
    pub correlation_id: &'a str,
}

/// A destination for one request: the cached part and the headers of this request.
pub struct Ready {
    pub resolved: Arc<Resolved>,
    /// Every header the destination adds, `resolved.headers` first.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The Destination service and the Connectivity service, each when bound, as the requests use
/// them.
pub struct DestinationServices {
    /// The Destination service's client and token client, when bound.
    lookup: Option<(DestinationClient, ServiceTokens)>,
    connectivity: Option<ServiceTokens>,
    cache: DestinationCache<Resolved>,
    metrics: Arc<Metrics>,
    /// The XSUAA binding has a client certificate (`HTML5.ForwardAuthCertificates`).
    client_certificate: bool,
}

impl DestinationServices {
    /// The clients for `services`, or `None` when neither service is bound.
    ///
    /// # Errors
    /// When a binding's credentials or URLs cannot be used.
    pub fn new(
        services: &ServiceBindings,
        roots: Arc<RootCertStore>,
        token_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Option<DestinationServices>, DestinationError> {
        if services.destination.is_none() && services.connectivity.is_none() {
            return Ok(None);
        }
        let token_error = |error: ServiceTokenError| DestinationError::Token(Arc::new(error));
        let settings = &services.lookup;
        let timeout = match settings.timeout.is_zero() {
            true => DEFAULT_TIMEOUT,
            false => settings.timeout,
        };
        let lookup = match &services.destination {
            Some(binding) => Some((
                DestinationClient::new(binding, roots.clone(), timeout, services.connectivity.is_some())?,
                ServiceTokens::new(binding, roots.clone(), token_timeout)
                    .map_err(token_error)?
                    .with_metrics(metrics.clone()),
            )),
            None => None,
        };
        let connectivity = match &services.connectivity {
            Some(binding) => Some(
                ServiceTokens::new(binding, roots, token_timeout)
                    .map_err(token_error)?
                    .with_metrics(metrics.clone()),
            ),
            None => None,
        };
        Ok(Some(DestinationServices {
            lookup,
            connectivity,
            cache: DestinationCache::new(CAPACITY, settings.cache_ttl, Clock::System),
            metrics,
            client_certificate: false,
        }))
    }

    /// These services, with `client_certificate` saying whether the XSUAA binding has a
    /// certificate to present for `HTML5.ForwardAuthCertificates`.
    pub fn with_client_certificate(mut self, client_certificate: bool) -> DestinationServices {
        self.client_certificate = client_certificate;
        self
    }

    /// Checks that the Destination service's token can be had now (the readiness check).
    ///
    /// # Errors
    /// Why not.
    pub async fn check_token(&self) -> Result<(), DestinationError> {
        if let Some((_, tokens)) = &self.lookup {
            tokens
                .client_token()
                .await
                .map_err(|error| DestinationError::Token(Arc::new(error)))?;
        }
        if let Some(connectivity) = &self.connectivity {
            connectivity
                .client_token()
                .await
                .map_err(|error| DestinationError::ConnectivityToken(Arc::new(error)))?;
        }
        Ok(())
    }

    /// `Proxy-Authorization` for a request through the on-premise proxy: the Connectivity
    /// binding's client-credentials token.
    ///
    /// # Errors
    /// [`DestinationError::ConnectivityToken`], or [`DestinationError::Invalid`] when no
    /// Connectivity service is bound.
    pub async fn proxy_authorization(
        &self,
        name: &str,
        tenant: Option<&str>,
    ) -> Result<(HeaderName, HeaderValue), DestinationError> {
        let connectivity = self.connectivity.as_ref().ok_or_else(|| DestinationError::Invalid {
            name: name.to_string(),
            property: "ProxyType".into(),
            reason: "OnPremise needs a connectivity binding".into(),
        })?;
        // The tenant's own token: the proxy reaches the tenant's Cloud Connector.
        let token = connectivity
            .client_token_in(tenant)
            .await
            .map_err(|error| DestinationError::ConnectivityToken(Arc::new(error)))?;
        Ok((header::PROXY_AUTHORIZATION, bearer(&token.access_token)?))
    }

    /// Uses `binding`'s rotated credentials for its service's token requests from now on.
    ///
    /// # Errors
    /// When they cannot be used; the previous ones stay.
    pub fn set_binding(&self, binding: &crate::config::ServiceBinding) -> Result<(), ServiceTokenError> {
        match binding.kind {
            crate::config::ServiceKind::Destination => match &self.lookup {
                Some((_, tokens)) => tokens.set_binding(binding),
                None => Ok(()),
            },
            crate::config::ServiceKind::Connectivity => match &self.connectivity {
                Some(connectivity) => connectivity.set_binding(binding),
                None => Ok(()),
            },
        }
    }

    /// Forgets what is cached for `tenant`: its destinations and the services' tokens in its zone.
    pub fn forget_tenant(&self, tenant: &str) {
        self.cache.forget_tenant(tenant);
        if let Some((_, tokens)) = &self.lookup {
            tokens.forget_tenant(tenant);
        }
        if let Some(connectivity) = &self.connectivity {
            connectivity.forget_tenant(tenant);
        }
    }

    /// Destinations cached now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The destination `name` for a request of `user` (the login token; `None` on a public
    /// route) of `tenant` (multitenancy; `None`: the provider): found with the user's token
    /// exchanged in the user's zone, or the binding's own token in the tenant's zone.
    /// `dynamic`: the name came from the request, which only `HTML5.DynamicDestination` allows,
    /// checked on cached destinations too.
    ///
    /// # Errors
    /// See [`DestinationError`]; nothing is cached from a failure.
    pub async fn resolve(&self, find: Find<'_>) -> Result<Ready, DestinationError> {
        let Find {
            name,
            dynamic,
            user,
            tenant,
            prefer_local,
            correlation_id,
        } = find;
        // `preferLocal`: the provider's destination, whatever the request's tenant.
        let lookup_tenant = if prefer_local { None } else { tenant };
        let token_error = |error: ServiceTokenError| DestinationError::Token(Arc::new(error));
        let (client, tokens) = self.lookup.as_ref().ok_or_else(|| DestinationError::Request {
            name: name.to_string(),
            reason: "no destination service is bound".into(),
        })?;
        let resolved = self
            .cache
            .get_or_find(lookup_tenant, user, name, || async {
                let token = match (user, prefer_local) {
                    (Some(user), false) => tokens.user_token_in(tenant, user).await,
                    (_, true) => tokens.client_token_in(None).await,
                    (None, false) => tokens.client_token_in(tenant).await,
                }
                .map_err(token_error)?;
                // With the provider's token, the user travels as `X-user-token` (exchanged in
                // the user's zone), as the service's contract has it.
                let user_token = match (user, prefer_local) {
                    (Some(user), true) => Some(tokens.user_token_in(tenant, user).await.map_err(token_error)?),
                    _ => None,
                };
                let found = client
                    .find(FindRequest {
                        name,
                        token: &token.access_token,
                        correlation_id,
                        user_token: user_token.as_ref().map(|token| &*token.access_token),
                    })
                    .await;
                self.metrics.destination_lookup(match &found {
                    Ok(_) => "found",
                    Err(error) => error.outcome(),
                });
                Resolved::new(found?, self.client_certificate)
            })
            .await?;
        if dynamic && !resolved.found.dynamic {
            return Err(DestinationError::NotDynamic { name: name.to_string() });
        }
        let mut headers = resolved.headers.clone();
        if resolved.destination.on_premise {
            headers.push(self.proxy_authorization(name, lookup_tenant).await?);
            if let Some(user) = user.filter(|_| resolved.found.authentication == Authentication::PrincipalPropagation) {
                let value = match &resolved.found.auth_header {
                    Some((key, value)) if *key == CONNECTIVITY_AUTHENTICATION => value.clone(),
                    _ => bearer(
                        &tokens
                            .user_token_in(tenant, user)
                            .await
                            .map_err(token_error)?
                            .access_token,
                    )?,
                };
                headers.push((CONNECTIVITY_AUTHENTICATION, value));
            }
        }
        Ok(Ready { resolved, headers })
    }
}

fn bearer(token: &str) -> Result<HeaderValue, DestinationError> {
    HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| DestinationError::Token(Arc::new(ServiceTokenError::MissingAccessToken)))
}
