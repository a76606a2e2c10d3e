//! The Destination service client: "find destination" by name with a service token
//! ([`DestinationClient`]), its answer checked into a [`FoundDestination`] ([`parse`]), and a
//! bounded, single-flight cache of found destinations ([`cache`]).

pub mod cache;
pub mod parse;
pub mod resolve;
pub mod rotation;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls::RootCertStore;

pub use self::cache::{DestinationCache, DEFAULT_TTL};
pub use self::parse::{parse_destination, Authentication, FoundDestination, ProxyType};
pub use self::resolve::{DestinationServices, Find, Ready, Resolved};
use crate::body::{self, Body};
use crate::config::ServiceBinding;
use crate::connect::{Connector, Protocols, Trust};
use crate::idp::service_token::ServiceTokenError;

/// How long a find request may take unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers larger than this are refused.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// A name is one path segment: everything but the unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why a destination could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The service could not be reached, also on the one retry.
    #[error("cannot reach the destination service for {name}")]
    Unreachable {
        name: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No answer within the timeout.
    #[error("the destination service did not answer for {name} within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
    /// 401: the service refused the token.
    #[error("the destination service refused the token for {name} (401)")]
    Unauthorized { name: String },
    /// 403: the token may not read the destination.
    #[error("the destination service denied access to {name} (403)")]
    Forbidden { name: String },
    /// 404: no such destination.
    #[error("destination {name} not found (404)")]
    NotFound { name: String },
    /// 5xx from the service.
    #[error("the destination service failed for {name} with {status}")]
    ServiceFailed { name: String, status: StatusCode },
    /// Any other status.
    #[error("the destination service answered {status} for {name}")]
    UnexpectedStatus { name: String, status: StatusCode },
    /// The answer could not be read or is not a destination.
    #[error("destination {name}: malformed answer: {reason}")]
    Malformed { name: String, reason: String },
    /// A property of the destination is invalid.
    #[error("destination {name}: {property} {reason}")]
    Invalid {
        name: String,
        property: String,
        reason: String,
    },
    /// `authTokens[0]` reports an error, or the token the authentication needs is missing.
    #[error("destination {name}: {reason}")]
    AuthToken { name: String, reason: String },
    /// An `Authentication` the service does not define.
    #[error("destination {name}: unknown Authentication {authentication:?}")]
    UnsupportedAuthentication { name: String, authentication: String },
    /// A feature the router cannot use yet.
    #[error("destination {name}: not yet supported: {what}")]
    NotYetSupported { name: String, what: String },
    /// The service token for the find request could not be had.
    #[error("no token for the destination service")]
    Token(#[source] Arc<ServiceTokenError>),
    /// The connectivity proxy's token could not be had.
    #[error("no token for the connectivity proxy")]
    ConnectivityToken(#[source] Arc<ServiceTokenError>),
    /// A name from the request (`$N`, `*`) names a destination without
    /// `HTML5.DynamicDestination`.
    #[error("destination {name} may not be named by the request: HTML5.DynamicDestination is not true")]
    NotDynamic { name: String },
    /// The binding's `uri` or the request cannot be built.
    #[error("destination service request for {name} cannot be built: {reason}")]
    Request { name: String, reason: String },
}

impl DestinationError {
    /// The status the client gets: the service unreachable 503, slow 504, anything else about
    /// the destination 502 (the router's configuration or a service refusing it), a name from
    /// the request that may not be used 404.
    pub fn status(&self) -> StatusCode {
        match self {
            DestinationError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            DestinationError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            DestinationError::ServiceFailed { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DestinationError::NotDynamic { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `outcome` label of a failed find request.
    pub fn outcome(&self) -> &'static str {
        match self {
            DestinationError::Unreachable { .. } => "unreachable",
            DestinationError::Timeout { .. } => "timeout",
            DestinationError::Unauthorized { .. } | DestinationError::Forbidden { .. } => "refused",
            DestinationError::NotFound { .. } => "not_found",
            DestinationError::ServiceFailed { .. } | DestinationError::UnexpectedStatus { .. } => "failed",
            DestinationError::Token(_) | DestinationError::ConnectivityToken(_) => "token_failed",
            DestinationError::Malformed { .. }
            | DestinationError::Invalid { .. }
            | DestinationError::AuthToken { .. }
            | DestinationError::UnsupportedAuthentication { .. }
            | DestinationError::NotYetSupported { .. }
            | DestinationError::NotDynamic { .. }
            | DestinationError::Request { .. } => "invalid",
        }
    }
}

/// One find request.
#[derive(Clone, Copy)]
pub struct FindRequest<'a> {
    /// The destination's name.
    pub name: &'a str,
    /// `Authorization: Bearer` of the find call.
    pub token: &'a str,
    /// `x-correlationid`.
    pub correlation_id: &'a str,
    /// `x-user-token`: the user's token when the provider's token authorises the call.
    pub user_token: Option<&'a str>,
}

/// The client of one Destination service binding.
pub struct DestinationClient {
    client: Client<Connector, Body>,
    /// `{uri}/destination-configuration/v1/destinations/`.
    base: String,
    timeout: Duration,
    connectivity_bound: bool,
}

impl DestinationClient {
    /// A client for `binding`'s `uri`, trusting `roots`, each find within `timeout`;
    /// `connectivity_bound` says whether OnPremise destinations are usable.
    ///
    /// # Errors
    /// [`DestinationError::Request`] when the binding has no `uri` or TLS cannot be set up.
    pub fn new(
        binding: &ServiceBinding,
        roots: Arc<RootCertStore>,
        timeout: Duration,
        connectivity_bound: bool,
    ) -> Result<DestinationClient, DestinationError> {
        let unusable = |reason: String| DestinationError::Request {
            name: binding.name.clone(),
            reason,
        };
        let uri = binding
            .uri
            .as_deref()
            .ok_or_else(|| unusable("the binding has no uri".into()))?;
        let connector =
            Connector::new(Trust::Roots(roots), None, Protocols::Http1).map_err(|error| unusable(error.to_string()))?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.with_connect_timeout(timeout));
        Ok(DestinationClient {
            client,
            base: format!(
                "{}/destination-configuration/v1/destinations/",
                uri.trim_end_matches('/')
            ),
            timeout,
            connectivity_bound,
        })
    }

    /// `GET …/destinations/{name}`, tried once more when the connection breaks, the answer
    /// checked.
    ///
    /// # Errors
    /// See [`DestinationError`]: each status of the service has its own variant.
    pub async fn find(&self, find: FindRequest<'_>) -> Result<FoundDestination, DestinationError> {
        let (status, bytes) = match self.send(find).await {
            Err(DestinationError::Unreachable { .. }) => self.send(find).await?,
            other => other?,
        };
        let name = find.name.to_string();
        match status {
            StatusCode::OK => parse_destination(find.name, &bytes, self.connectivity_bound),
            StatusCode::UNAUTHORIZED => Err(DestinationError::Unauthorized { name }),
            StatusCode::FORBIDDEN => Err(DestinationError::Forbidden { name }),
            StatusCode::NOT_FOUND => Err(DestinationError::NotFound { name }),
            status if status.is_server_error() => Err(DestinationError::ServiceFailed { name, status }),
            status => Err(DestinationError::UnexpectedStatus { name, status }),
        }
    }

    /// The find URI for `name`.
    pub fn find_uri(&self, name: &str) -> String {
        format!("{}{}", self.base, utf8_percent_encode(name, SEGMENT))
    }

    async fn send(&self, find: FindRequest<'_>) -> Result<(StatusCode, Bytes), DestinationError> {
        let request = self.request(find)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| DestinationError::Unreachable {
                    name: find.name.to_string(),
                    source,
                })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|error| DestinationError::Malformed {
                    name: find.name.to_string(),
                    reason: format!("reading the answer: {error}"),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(DestinationError::Timeout {
                name: find.name.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    fn request(&self, find: FindRequest<'_>) -> Result<Request<Body>, DestinationError> {
        let unusable = |reason: &str| DestinationError::Request {
            name: find.name.to_string(),
            reason: reason.to_string(),
        };
        let uri = self
            .find_uri(find.name)
            .parse::<Uri>()
            .map_err(|_| unusable("not a URI"))?;
        let value = |text: &str| HeaderValue::try_from(text).map_err(|_| unusable("not a header value"));
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, value(&format!("Bearer {}", find.token))?)
            .header("x-correlationid", value(find.correlation_id)?);
        if let Some(user_token) = find.user_token {
            request = request.header("x-user-token", value(user_token)?);
        }
        request.body(body::empty()).map_err(|_| unusable("request"))
    }
}

#[cfg(test)]
mod tests;
