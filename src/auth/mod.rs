//! Authentication and authorization: login at XSUAA, sessions, tokens, CSRF and scopes.

use http::{Response, StatusCode};

use crate::body::Body;

/// Why a request is not (yet) allowed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The route needs a logged-in user and there is none; API calls get 401.
    #[error("authentication required")]
    Unauthenticated,
    /// The route needs an identity provider that is not configured.
    #[error("identity provider not configured")]
    NotConfigured,
}

impl Error {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Adds the headers this error needs to `response`.
    pub fn decorate(&self, _response: &mut Response<Body>) {}
}
