//! The client for XSUAA: token requests over mutual TLS to `certurl` (client id in the body, no
//! secret) or with the client secret to `url`, and plain GETs for keys and user info. Connections
//! are pooled, so a thousand logins cost a handful of TLS handshakes.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use serde::Deserialize;

use super::rotation::{certificate, CredentialStatus, Reload, Rotation, Trigger};
use super::Clock;
use crate::body::{self, Body};
use crate::config::XsuaaCredentials;
use crate::connect::{Connector, Protocols, Trust};

/// Answers larger than this from the identity provider are refused.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a request to the identity provider failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("cannot reach the identity provider at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the identity provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the identity provider refused the request with {status}: {error} {description}")]
    Refused {
        status: StatusCode,
        error: String,
        description: String,
    },
    #[error("unexpected answer from the identity provider: {0}")]
    BadAnswer(String),
    #[error("client credentials unusable: {0}")]
    Credentials(#[from] crate::tls::Error),
}

impl IdpError {
    /// True when the identity provider rejected our client identity (a rotated or revoked
    /// certificate, a changed secret): worth one retry after re-reading the binding.
    pub fn is_client_rejected(&self) -> bool {
        match self {
            IdpError::Refused { error, .. } => error == "invalid_client" || error == "unauthorized",
            IdpError::Connect { source, .. } => {
                let text = error_chain(source);
                text.contains("certificate") || text.contains("alert")
            }
            _ => false,
        }
    }
}

/// The answer of the token endpoint.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

pub(super) type HttpsClient = Client<Connector, Body>;

/// The token endpoint for one set of credentials; replaced whole when credentials rotate.
pub(super) struct TokenEndpoint {
    pub(super) client: HttpsClient,
    pub(super) url: Uri,
    pub(super) clientid: String,
    pub(super) clientsecret: Option<String>,
    pub(super) x509: bool,
}

/// Everything the router sends to XSUAA.
pub struct IdpClient {
    token: ArcSwap<TokenEndpoint>,
    plain: HttpsClient,
    roots: Arc<RootCertStore>,
    timeout: Duration,
    status: Arc<CredentialStatus>,
    /// Re-reads rotated binding files (credentials from files only): polled by the watcher
    /// task, and at once when the identity provider rejects our client.
    rotation: Option<Rotation>,
    /// Backend connectors that present this client's certificate (`forwardAuthCertificates`);
    /// a rotation sets the new one on each.
    certificate_connectors: Vec<Connector>,
}

impl IdpClient {
    /// A client for `credentials`, trusting `roots`.
    ///
    /// # Errors
    /// When the certificate or key cannot be used.
    pub fn new(
        credentials: &XsuaaCredentials,
        roots: Arc<RootCertStore>,
        timeout: Duration,
    ) -> Result<IdpClient, IdpError> {
        let plain = Connector::new(Trust::Roots(roots.clone()), None, Protocols::Http1)?;
        Ok(IdpClient {
            token: ArcSwap::from_pointee(token_endpoint(credentials, &roots)?),
            plain: build(plain),
            roots,
            timeout,
            status: Arc::new(CredentialStatus::new(certificate_info(credentials))),
            rotation: Rotation::for_credentials(credentials, Clock::System),
            certificate_connectors: Vec::new(),
        })
    }

    /// Keeps `connectors` presenting this client's certificate: each rotation sets the new one
    /// on them, for the connections they open from then on.
    pub fn with_certificate_connectors(mut self, connectors: Vec<Connector>) -> IdpClient {
        self.certificate_connectors = connectors;
        self
    }

    /// The client certificate's details, expiry and reload history.
    pub fn status(&self) -> &Arc<CredentialStatus> {
        &self.status
    }

    /// True when the client authenticates with a certificate (mutual TLS), not a secret.
    pub fn is_x509(&self) -> bool {
        self.token.load().x509
    }

    /// Checks new certificates against `clock` (tokio's in paused-time tests).
    pub fn with_clock(mut self, clock: Clock) -> IdpClient {
        if let Some(rotation) = &mut self.rotation {
            rotation.set_clock(clock);
        }
        self
    }

    /// What re-reads the binding; `None` unless the credentials come from binding files.
    pub fn rotation(&self) -> Option<&Rotation> {
        self.rotation.as_ref()
    }

    /// Re-reads the binding (credentials from files only) and, when it holds new credentials that
    /// pass every check, swaps them in; reloads run one at a time.
    pub async fn reload(&self, trigger: Trigger) -> Reload {
        match &self.rotation {
            Some(rotation) => rotation.reload(self, trigger).await,
            None => Reload::Unchanged,
        }
    }

    /// Replaces the client identity (a rotated certificate); requests in flight finish on the old
    /// connections, new ones use a new pool.
    ///
    /// # Errors
    /// When the new certificate or key cannot be used; the old identity stays.
    pub fn rotate(&self, credentials: &XsuaaCredentials) -> Result<(), IdpError> {
        let endpoint = token_endpoint(credentials, &self.roots)?;
        let identity = match (&credentials.certificate, &credentials.key) {
            (Some(certificate), Some(key)) if !self.certificate_connectors.is_empty() => {
                Some((crate::tls::certificates(certificate)?, crate::tls::private_key(key)?))
            }
            _ => None,
        };
        // Every backend connector's configuration is built before any is changed: a rotation
        // takes effect everywhere or nowhere.
        let prepared = match identity {
            Some((chain, key)) => self
                .certificate_connectors
                .iter()
                .map(|connector| connector.prepare_identity(Some((chain.clone(), key.clone_key()))))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        prepared.into_iter().for_each(crate::connect::PreparedIdentity::install);
        self.token.store(Arc::new(endpoint));
        self.status.rotated(certificate_info(credentials));
        Ok(())
    }

    /// `grant_type=authorization_code`.
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, IdpError> {
        self.exchange_code_at(None, code, redirect_uri, verifier).await
    }

    /// [`IdpClient::exchange_code`] at `token_url` (a tenant's token endpoint) when given.
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn exchange_code_at(
        &self,
        token_url: Option<&str>,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, IdpError> {
        self.token_request_at(
            token_url,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// `grant_type=refresh_token`.
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, IdpError> {
        self.refresh_at(None, refresh_token).await
    }

    /// [`IdpClient::refresh`] at `token_url` (a tenant's token endpoint) when given.
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn refresh_at(&self, token_url: Option<&str>, refresh_token: &str) -> Result<TokenResponse, IdpError> {
        self.token_request_at(
            token_url,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)],
        )
        .await
    }

    /// `grant_type=password` (basic routes).
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn password(&self, username: &str, password: &str) -> Result<TokenResponse, IdpError> {
        self.password_at(None, username, password).await
    }

    /// [`IdpClient::password`] at `token_url` (a tenant's token endpoint) when given.
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn password_at(
        &self,
        token_url: Option<&str>,
        username: &str,
        password: &str,
    ) -> Result<TokenResponse, IdpError> {
        self.token_request_at(
            token_url,
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// A token request; when the identity provider rejects our client (a certificate revoked
    /// after rotation), the binding is re-read and the request tried once more if the credentials
    /// changed meanwhile. Client authentication precedes the grant check at the token endpoint, so
    /// a rejected code exchange has not used up its code.
    async fn token_request_at(
        &self,
        token_url: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Result<TokenResponse, IdpError> {
        let url = match token_url {
            Some(url) => Some(
                url.parse::<Uri>()
                    .map_err(|_| IdpError::BadAnswer(format!("token URL {url:?} is not a URI")))?,
            ),
            None => None,
        };
        let url = url.as_ref();
        let endpoint = self.token.load_full();
        let error = match self.token_request_on(&endpoint, url, fields).await {
            Err(error) if error.is_client_rejected() => error,
            other => return other,
        };
        self.reload(Trigger::Rejected).await;
        let current = self.token.load_full();
        if Arc::ptr_eq(&current, &endpoint) {
            return Err(error);
        }
        tracing::info!(%error, "token request rejected with the previous client credentials; retrying with the current ones");
        self.token_request_on(&current, url, fields).await
    }

    async fn token_request_on(
        &self,
        endpoint: &TokenEndpoint,
        url: Option<&Uri>,
        fields: &[(&str, &str)],
    ) -> Result<TokenResponse, IdpError> {
        let url = url.unwrap_or(&endpoint.url);
        let (status, bytes) = post_token_to(endpoint, url, fields, self.timeout).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|error| IdpError::BadAnswer(format!("token response: {error}")))
    }

    /// GET a JSON document (keys, user info), optionally with a bearer token.
    ///
    /// # Errors
    /// See [`IdpError`].
    pub async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<serde_json::Value, IdpError> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| IdpError::BadAnswer("token is not a valid header value".into()))?;
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request
            .body(body::empty())
            .map_err(|error| IdpError::BadAnswer(format!("{url}: {error}")))?;
        let (status, bytes) = self.send(&self.plain, request).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|error| IdpError::BadAnswer(format!("{url}: {error}")))
    }

    async fn send(&self, client: &HttpsClient, request: Request<Body>) -> Result<(StatusCode, Bytes), IdpError> {
        send(client, request, self.timeout).await
    }
}

/// One request and its whole answer (at most [`MAX_ANSWER_BYTES`]) within `timeout`.
pub(super) async fn send(
    client: &HttpsClient,
    request: Request<Body>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), IdpError> {
    let url = request.uri().to_string();
    let exchange = async {
        let response = client.request(request).await.map_err(|source| IdpError::Connect {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| IdpError::BadAnswer(format!("reading the answer: {error}")))?
            .to_bytes();
        Ok((status, bytes))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(IdpError::Timeout(timeout)),
    }
}

/// The certificate details of x509 credentials; secret credentials have none.
fn certificate_info(credentials: &XsuaaCredentials) -> Option<certificate::CertificateInfo> {
    let pem = credentials.certificate.as_ref().filter(|_| credentials.is_x509())?;
    match certificate::inspect(pem) {
        Ok(info) => Some(info),
        Err(error) => {
            tracing::warn!(%error, "client certificate details unavailable");
            None
        }
    }
}

/// Posts a token request to `url` (the endpoint's own, or a tenant's token endpoint) with the
/// endpoint's client and credentials.
pub(super) async fn post_token_to(
    endpoint: &TokenEndpoint,
    url: &Uri,
    fields: &[(&str, &str)],
    timeout: Duration,
) -> Result<(StatusCode, Bytes), IdpError> {
    let form = token_form(endpoint, fields);
    let request = Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(body::full(form))
        .map_err(|error| IdpError::BadAnswer(error.to_string()))?;
    send(&endpoint.client, request, timeout).await
}

/// The form body: grant fields, `client_id`, and the secret only for secret credentials.
fn token_form(endpoint: &TokenEndpoint, fields: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(fields);
    form.append_pair("client_id", &endpoint.clientid);
    if !endpoint.x509 {
        if let Some(secret) = &endpoint.clientsecret {
            form.append_pair("client_secret", secret);
        }
    }
    form.finish()
}

fn token_endpoint(credentials: &XsuaaCredentials, roots: &Arc<RootCertStore>) -> Result<TokenEndpoint, IdpError> {
    let x509 = credentials.is_x509();
    let identity = match (&credentials.certificate, &credentials.key, x509) {
        (Some(certificate), Some(key), true) => {
            Some((crate::tls::certificates(certificate)?, crate::tls::private_key(key)?))
        }
        _ => None,
    };
    let connector = Connector::new(Trust::Roots(roots.clone()), identity, Protocols::Http1)?;
    let url = credentials
        .token_url()
        .parse::<Uri>()
        .map_err(|error| IdpError::BadAnswer(format!("token URL: {error}")))?;
    Ok(TokenEndpoint {
        client: build(connector),
        url,
        clientid: credentials.clientid.clone(),
        clientsecret: credentials.clientsecret.clone(),
        x509,
    })
}

pub(super) fn build(connector: Connector) -> HttpsClient {
    let https = connector.with_connect_timeout(Duration::from_secs(5));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(16)
        .build(https)
}

pub(super) fn refused(status: StatusCode, bytes: &[u8]) -> IdpError {
    #[derive(Deserialize, Default)]
    struct OAuthError {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let parsed: OAuthError = serde_json::from_slice(bytes).unwrap_or_default();
    let clean = |text: String| -> String { text.chars().filter(|c| !c.is_control()).take(200).collect() };
    IdpError::Refused {
        status,
        error: clean(parsed.error),
        description: clean(parsed.error_description),
    }
}

/// The whole cause chain of an error as one line (TLS causes sit deep in it).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
