//! Why a request is not (yet) allowed, and the status and headers each reason answers with.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::csrf;
use crate::body::Body;
use crate::idp::jwt::JwtError;
use crate::idp::xsuaa::IdpError;
use crate::session::StoreError;

/// Why a request is not (yet) allowed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The route needs a logged-in user and there is none; API calls get 401.
    #[error("authentication required")]
    Unauthenticated,
    /// The route needs an identity provider that is not configured.
    #[error("identity provider not configured")]
    NotConfigured,
    #[error("login callback without state")]
    StateMissing,
    #[error("login state unknown, expired or already used")]
    StateInvalid,
    #[error("login state belongs to another browser")]
    StateMismatch,
    #[error("login callback without code")]
    CodeMissing,
    #[error("the identity provider refused the login: {error}")]
    LoginRefused { error: String },
    #[error("code exchange failed: {0}")]
    TokenExchange(#[source] IdpError),
    #[error("access token rejected: {0}")]
    TokenInvalid(#[from] JwtError),
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the login redirect: {0}")]
    BadForwardedHeaders(&'static str),
    /// The user lacks every scope the route asks for.
    #[error("missing scope for this route")]
    MissingScope,
    #[error(transparent)]
    Csrf(#[from] csrf::CsrfError),
    /// A basic-authentication route without (valid) credentials.
    #[error("basic authentication required")]
    BasicChallenge,
    /// The logout endpoint was called with the wrong method.
    #[error("logout method not allowed")]
    LogoutMethod,
    /// The user API was asked for something it does not have.
    #[error("unknown user API resource")]
    UnknownUserApiResource,
    /// A service-to-approuter token was refused.
    #[error("service-to-approuter: {0}")]
    ServiceToken(#[from] super::service::TokenError),
    /// Too many failed login callbacks from one client address (`LOGIN_RATE_LIMIT`).
    #[error("too many failed logins from this address; retry in {retry_after} s")]
    TooManyLogins { retry_after: u64 },
}

impl Error {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Error::StateMissing | Error::CodeMissing | Error::BadForwardedHeaders(_) => StatusCode::BAD_REQUEST,
            Error::StateInvalid | Error::StateMismatch => StatusCode::UNAUTHORIZED,
            Error::LoginRefused { error } if error == "access_denied" => StatusCode::FORBIDDEN,
            Error::LoginRefused { .. } => StatusCode::UNAUTHORIZED,
            Error::TokenExchange(IdpError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Error::TokenExchange(_) => StatusCode::BAD_GATEWAY,
            Error::TokenInvalid(JwtError::KeysUnavailable(_)) => StatusCode::BAD_GATEWAY,
            Error::TokenInvalid(_) => StatusCode::UNAUTHORIZED,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::MissingScope | Error::Csrf(_) => StatusCode::FORBIDDEN,
            Error::BasicChallenge => StatusCode::UNAUTHORIZED,
            Error::LogoutMethod => StatusCode::METHOD_NOT_ALLOWED,
            Error::UnknownUserApiResource => StatusCode::NOT_FOUND,
            Error::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::ServiceToken(error) => error.status(),
        }
    }

    /// A sentence for the person in front of the browser; never internals.
    pub fn public_message(&self) -> Option<&'static str> {
        Some(match self {
            Error::StateMissing | Error::StateInvalid | Error::StateMismatch | Error::CodeMissing => {
                "The login could not be completed: it expired, was already used, or was started in another browser. Please open the application again."
            }
            Error::LoginRefused { .. } => "The identity provider did not log you in.",
            Error::TokenExchange(_) | Error::TokenInvalid(_) => {
                "The login could not be completed because the identity provider could not be reached or answered unexpectedly. Please try again later."
            }
            Error::Store(_) | Error::NotConfigured => "Sign-in is temporarily unavailable. Please try again later.",
            Error::MissingScope => "You do not have the required scopes to access this resource.",
            Error::TooManyLogins { .. } => "Too many failed sign-in attempts from your network. Please wait a minute and try again.",
            _ => return None,
        })
    }

    /// Adds the headers this error needs to `response`.
    pub fn decorate(&self, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        match self {
            Error::Csrf(_) => {
                headers.insert(crate::auth::csrf::X_CSRF_TOKEN, HeaderValue::from_static("Required"));
            }
            Error::BasicChallenge => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"approuter\""),
                );
            }
            Error::LogoutMethod => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            }
            Error::TooManyLogins { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Error::ServiceToken(super::service::TokenError::NewZoneLimit(_)) => {
                // The budget gains one fetch in this many seconds.
                let seconds = 60 / u64::from(super::service::NEW_ZONES_PER_MINUTE.max(1));
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            Error::ServiceToken(error) if error.status() == StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
    }
}
