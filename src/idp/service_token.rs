//! Tokens for a service binding (Destination, Connectivity): client credentials and the
//! jwt-bearer exchange of a user's login token, at the binding's token endpoint over the pooled
//! token client of [`super::xsuaa`]. Each token is cached until shortly before it expires, and
//! concurrent callers for one key wait for one request.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{StatusCode, Uri};
use rustls::RootCertStore;
use serde::Deserialize;

use super::single_flight::SingleFlight;
use super::xsuaa::{self, IdpError, TokenEndpoint};
use super::Clock;
use crate::config::{ServiceBinding, ServiceCredential};
use crate::connect::{Connector, Protocols, Trust};

/// Tokens kept at most, client and user tokens together; past it, expired and idle entries go.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// A cached token is renewed this long before it expires (at most half its lifetime).
const RENEW_BEFORE: u64 = 60;
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Why a service token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ServiceTokenError {
    /// The binding's certificate or key is unusable.
    #[error("service binding credentials unusable")]
    Credentials(#[source] crate::tls::Error),
    /// The binding's token URL is not a URI.
    #[error("service binding token URL {0:?} is not a URI")]
    TokenUrl(String),
    /// The token endpoint could not be reached, timed out, or refused the request.
    #[error("token request failed")]
    Request(#[source] IdpError),
    /// A success answer that is not a JSON object of the token response's fields.
    #[error("token response is not valid JSON: {0}")]
    Malformed(String),
    /// A success answer without `access_token`.
    #[error("token response has no access_token")]
    MissingAccessToken,
    /// A success answer without a usable `expires_in`.
    #[error("token response has no expires_in")]
    MissingExpiresIn,
}

impl ServiceTokenError {
    /// The status the token endpoint answered with, when it refused the request.
    pub fn refused_status(&self) -> Option<StatusCode> {
        match self {
            ServiceTokenError::Request(IdpError::Refused { status, .. }) => Some(*status),
            _ => None,
        }
    }
}

/// A token and how long it lasts from when it was issued.
#[derive(Clone)]
pub struct ServiceToken {
    /// The bearer token.
    pub access_token: Arc<str>,
    /// `expires_in` of the answer.
    pub expires_in: Duration,
    /// Unix second after which it is renewed rather than handed out.
    renew_at: u64,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// Seconds it stays in the cache from `now_unix`.
    pub fn seconds_left(&self, now_unix: u64) -> u64 {
        self.renew_at.saturating_sub(now_unix)
    }
}

/// What a token is cached by: the binding's own, or one per user token (by its SHA-256, so the
/// cache holds no user token).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    /// The binding's own token, in the provider's zone or a tenant's (multitenancy).
    Client(Option<Box<str>>),
    User([u8; 32]),
}

/// The token client of one service binding.
pub struct ServiceTokens {
    /// Replaced as a whole when the binding's certificate rotates: requests from then on open
    /// connections with the new one.
    endpoint: ArcSwap<TokenEndpoint>,
    roots: Arc<RootCertStore>,
    timeout: Duration,
    clock: Clock,
    cache: SingleFlight<Key, ServiceToken>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl ServiceTokens {
    /// A client for `binding`'s token endpoint, trusting `roots`; requests time out after
    /// `timeout`.
    ///
    /// # Errors
    /// When the certificate, key or token URL cannot be used.
    pub fn new(
        binding: &ServiceBinding,
        roots: Arc<RootCertStore>,
        timeout: Duration,
    ) -> Result<ServiceTokens, ServiceTokenError> {
        Ok(ServiceTokens {
            endpoint: ArcSwap::from_pointee(endpoint(binding, roots.clone())?),
            roots,
            timeout,
            clock: Clock::System,
            cache: SingleFlight::new(DEFAULT_CAPACITY),
            metrics: crate::metrics::Metrics::disabled(),
        })
    }

    /// Uses `binding`'s credentials (a rotated certificate) for the token requests from now on;
    /// connections opened with the old ones are no longer used. Cached tokens stay valid.
    ///
    /// # Errors
    /// When the certificate, key or token URL cannot be used; the previous credentials stay.
    pub fn set_binding(&self, binding: &ServiceBinding) -> Result<(), ServiceTokenError> {
        self.endpoint.store(Arc::new(endpoint(binding, self.roots.clone())?));
        Ok(())
    }

    /// Reads "now" from `clock` (tokio's in paused-time tests).
    pub fn with_clock(mut self, clock: Clock) -> ServiceTokens {
        self.clock = clock;
        self
    }

    /// Counts the token requests in `metrics` (`approuter_token_requests_total`, grants
    /// `service_client_credentials` and `service_jwt_bearer`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> ServiceTokens {
        self.metrics = metrics;
        self
    }

    /// Keeps at most `capacity` tokens.
    pub fn with_capacity(mut self, capacity: usize) -> ServiceTokens {
        self.cache = SingleFlight::new(capacity);
        self
    }

    /// The binding's own token (`grant_type=client_credentials`).
    ///
    /// # Errors
    /// See [`ServiceTokenError`].
    pub async fn client_token(&self) -> Result<ServiceToken, ServiceTokenError> {
        self.client_token_in(None).await
    }

    /// The binding's own token in `tenant`'s zone (at the tenant's token endpoint: the token
    /// host's first label replaced by the tenant), or the provider's for `None`.
    ///
    /// # Errors
    /// See [`ServiceTokenError`].
    pub async fn client_token_in(&self, tenant: Option<&str>) -> Result<ServiceToken, ServiceTokenError> {
        self.cached(
            Key::Client(tenant.map(Box::from)),
            tenant,
            &[("grant_type", "client_credentials")],
        )
        .await
    }

    /// The token exchanged for the user's login token (`grant_type=…:jwt-bearer`,
    /// `assertion=<user_token>`), cached per user token.
    ///
    /// # Errors
    /// See [`ServiceTokenError`].
    pub async fn user_token(&self, user_token: &str) -> Result<ServiceToken, ServiceTokenError> {
        self.user_token_in(None, user_token).await
    }

    /// [`ServiceTokens::user_token`] at `tenant`'s token endpoint: a user's token is exchanged in
    /// the zone that issued it.
    ///
    /// # Errors
    /// See [`ServiceTokenError`].
    pub async fn user_token_in(
        &self,
        tenant: Option<&str>,
        user_token: &str,
    ) -> Result<ServiceToken, ServiceTokenError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, user_token.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        self.cached(
            Key::User(hash),
            tenant,
            &[("grant_type", JWT_BEARER), ("assertion", user_token)],
        )
        .await
    }

    /// Forgets the binding's token in `tenant`'s zone (the tenant unsubscribed).
    pub fn forget_tenant(&self, tenant: &str) {
        self.cache
            .retain(|key| !matches!(key, Key::Client(Some(cached)) if **cached == *tenant));
    }

    /// Tokens cached now.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    async fn cached(
        &self,
        key: Key,
        tenant: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Result<ServiceToken, ServiceTokenError> {
        self.cache
            .get_or_fetch(key, &self.clock, || async {
                let token = self.fetch(tenant, fields).await?;
                let until = token.renew_at;
                Ok((token, until))
            })
            .await
    }

    async fn fetch(&self, tenant: Option<&str>, fields: &[(&str, &str)]) -> Result<ServiceToken, ServiceTokenError> {
        let grant = match fields.first() {
            Some(&(_, JWT_BEARER)) => "service_jwt_bearer",
            _ => "service_client_credentials",
        };
        let started = tokio::time::Instant::now();
        let result = self.fetch_unrecorded(tenant, fields).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ServiceTokenError::Request(IdpError::Refused { .. })) => "refused",
            Err(_) => "error",
        };
        self.metrics.token_request(grant, outcome, started.elapsed());
        result
    }

    async fn fetch_unrecorded(
        &self,
        tenant: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Result<ServiceToken, ServiceTokenError> {
        let endpoint = self.endpoint.load_full();
        let url = match tenant {
            Some(tenant) => tenant_url(&endpoint.url, tenant)?,
            None => endpoint.url.clone(),
        };
        let (status, bytes) = xsuaa::post_token_to(&endpoint, &url, fields, self.timeout)
            .await
            .map_err(ServiceTokenError::Request)?;
        if !status.is_success() {
            return Err(ServiceTokenError::Request(xsuaa::refused(status, &bytes)));
        }
        parse_token(&bytes, self.clock.now())
    }
}

/// `url` with the first label of its host replaced by `tenant`: the provider's
/// `https://<provider>.authentication.cert.<landscape>/oauth/token` becomes the tenant's.
fn tenant_url(url: &Uri, tenant: &str) -> Result<Uri, ServiceTokenError> {
    let unusable = || ServiceTokenError::TokenUrl(format!("{url} for tenant {tenant}"));
    let authority = url.authority().ok_or_else(unusable)?;
    let (_, domain) = authority.host().split_once('.').ok_or_else(unusable)?;
    let port = authority.port_u16().map(|port| format!(":{port}")).unwrap_or_default();
    let path = url.path_and_query().map_or("/oauth/token", |pq| pq.as_str());
    format!("https://{tenant}.{domain}{port}{path}")
        .parse::<Uri>()
        .map_err(|_| unusable())
}

/// The token endpoint of `binding`: its certificate as the client identity, or its secret.
fn endpoint(binding: &ServiceBinding, roots: Arc<RootCertStore>) -> Result<TokenEndpoint, ServiceTokenError> {
    let (identity, clientsecret) = match &binding.credential {
        ServiceCredential::X509 { certificate, key } => {
            let chain = crate::tls::certificates(certificate).map_err(ServiceTokenError::Credentials)?;
            let key = crate::tls::private_key(key).map_err(ServiceTokenError::Credentials)?;
            (Some((chain, key)), None)
        }
        ServiceCredential::Secret(secret) => (None, Some(secret.clone())),
    };
    let x509 = identity.is_some();
    let connector =
        Connector::new(Trust::Roots(roots), identity, Protocols::Http1).map_err(ServiceTokenError::Credentials)?;
    let url = binding
        .token_url
        .parse::<Uri>()
        .map_err(|_| ServiceTokenError::TokenUrl(binding.token_url.clone()))?;
    Ok(TokenEndpoint {
        client: xsuaa::build(connector),
        url,
        clientid: binding.clientid.clone(),
        clientsecret,
        x509,
    })
}

/// A token endpoint's success answer: `access_token` and `expires_in` (a number, or a string of
/// digits) are required.
///
/// # Errors
/// [`ServiceTokenError::Malformed`], [`ServiceTokenError::MissingAccessToken`],
/// [`ServiceTokenError::MissingExpiresIn`].
pub fn parse_token(bytes: &[u8], now_unix: u64) -> Result<ServiceToken, ServiceTokenError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| ServiceTokenError::Malformed(error.to_string()))?;
    if !value.is_object() {
        return Err(ServiceTokenError::Malformed("not an object".into()));
    }
    let answer: Answer =
        serde_json::from_value(value).map_err(|error| ServiceTokenError::Malformed(error.to_string()))?;
    let access_token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or(ServiceTokenError::MissingAccessToken)?;
    let expires_in = match answer.expires_in {
        Some(serde_json::Value::Number(number)) => number.as_u64(),
        Some(serde_json::Value::String(text)) => text.trim().parse::<u64>().ok(),
        _ => None,
    }
    .ok_or(ServiceTokenError::MissingExpiresIn)?;
    let margin = RENEW_BEFORE.min(expires_in / 2);
    Ok(ServiceToken {
        access_token: access_token.into(),
        expires_in: Duration::from_secs(expires_in),
        renew_at: now_unix.saturating_add(expires_in - margin),
    })
}

#[cfg(test)]
mod tests;
