//! The sink of errors: the one place where an error becomes an HTTP response (one status table,
//! generic bodies, the `errorPage` rules of xs-app.json) and a metrics label. Details go to the
//! log, never to the client.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::{Config, ErrorPageTarget};
use crate::metrics::{ErrorKind, Shed, UpstreamErrorKind};

/// Everything that can end a request early, from every phase.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Routing(#[from] crate::routing::Error),
    #[error(transparent)]
    Proxy(#[from] crate::proxy::Error),
    #[error(transparent)]
    Static(#[from] crate::static_files::Error),
    #[error(transparent)]
    Auth(#[from] crate::auth::Error),
    #[error(transparent)]
    Cors(#[from] crate::cors::Error),
    #[error(transparent)]
    Websocket(#[from] crate::proxy::websocket::Error),
    #[error(transparent)]
    Destination(#[from] crate::destination::DestinationError),
    #[error("subscription callback: {0}")]
    Subscription(#[from] crate::saas::Error),
    /// The request itself is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body is larger than `MAX_REQUEST_BODY`.
    #[error("request body larger than the limit")]
    PayloadTooLarge,
    /// The client did not send the whole request within `INCOMING_REQUEST_TIMEOUT`.
    #[error("request not received in time")]
    RequestTimeout,
    /// Too many requests in flight (`MAX_IN_FLIGHT`): shed rather than queued.
    #[error("too many requests in flight")]
    Overloaded,
    /// `SECURE_SESSION_COOKIE=true` and the request did not come over HTTPS.
    #[error("plain HTTP request refused: SECURE_SESSION_COOKIE is true")]
    InsecureRequest,
    /// `TENANT_HOST_PATTERN` names no tenant in the request's host.
    #[error("no tenant for host {0:?}")]
    UnknownTenantHost(String),
}

impl GatewayError {
    /// The status the client gets, classified by who is at fault.
    pub fn status(&self) -> StatusCode {
        use crate::proxy::Error as P;
        use crate::routing::Error as R;
        use crate::static_files::Error as S;
        match self {
            GatewayError::Routing(R::RouteNotFound) => StatusCode::NOT_FOUND,
            GatewayError::Routing(R::MethodNotAllowed { .. }) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Routing(R::UnknownDestination(_)) => StatusCode::NOT_FOUND,
            GatewayError::Routing(R::PathTraversal | R::EncodedSlash | R::NestedEncoding) => StatusCode::BAD_REQUEST,
            GatewayError::Proxy(P::UpstreamTimeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Proxy(P::InvalidUpstreamUri(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Proxy(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Static(S::NotFound) => StatusCode::NOT_FOUND,
            GatewayError::Static(S::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Static(S::Forbidden) => StatusCode::FORBIDDEN,
            GatewayError::Static(S::PreconditionFailed) => StatusCode::PRECONDITION_FAILED,
            GatewayError::Static(S::RangeNotSatisfiable { .. }) => StatusCode::RANGE_NOT_SATISFIABLE,
            GatewayError::Static(S::Io(_) | S::Template { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Auth(error) => error.status(),
            GatewayError::Cors(error) => error.status(),
            GatewayError::Websocket(error) => error.status(),
            GatewayError::Destination(error) => error.status(),
            GatewayError::Subscription(error) => error.status(),
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UnknownTenantHost(_) => StatusCode::NOT_FOUND,
            GatewayError::InsecureRequest => StatusCode::FORBIDDEN,
        }
    }

    /// What the error says about the system, for the metrics; `None` for errors that are the
    /// client's (counted by status class) or counted where they happen (token requests, key
    /// fetches, requests shed before the pipeline, login rate limits).
    ///
    /// Every variant is named, none matched by a wildcard: a new error does not compile until it
    /// is classified here.
    pub fn metric(&self) -> Option<ErrorKind> {
        use crate::auth::Error as A;
        use crate::cors::Error as C;
        use crate::proxy::websocket::Error as W;
        use crate::proxy::Error as P;
        use crate::routing::Error as R;
        use crate::static_files::Error as S;
        match self {
            GatewayError::Proxy(P::UpstreamTimeout(_)) | GatewayError::Websocket(W::UpstreamTimeout(_)) => {
                Some(ErrorKind::Upstream(UpstreamErrorKind::Timeout))
            }
            GatewayError::Proxy(P::UpstreamConnect { source, .. })
            | GatewayError::Websocket(W::UpstreamConnect { source, .. }) => {
                Some(ErrorKind::Upstream(if is_tls_failure(source.as_ref()) {
                    UpstreamErrorKind::Tls
                } else {
                    UpstreamErrorKind::Connect
                }))
            }
            GatewayError::Proxy(P::InvalidUpstreamUri(_)) => None,
            GatewayError::Websocket(
                W::Disabled
                | W::OriginMissing
                | W::OriginNotAllowed
                | W::OwnOrigin(_)
                | W::NotUpgradable
                | W::InvalidUpstreamUri(_),
            ) => None,
            GatewayError::Auth(A::Store(_)) => Some(ErrorKind::Store),
            // The token endpoint and key fetches are counted by `token_requests` and
            // `jwks_fetches`, the login rate limit by `requests_refused`.
            GatewayError::Auth(
                A::Unauthenticated
                | A::NotConfigured
                | A::StateMissing
                | A::StateInvalid
                | A::StateMismatch
                | A::CodeMissing
                | A::LoginRefused { .. }
                | A::TokenExchange(_)
                | A::TokenInvalid(_)
                | A::BadForwardedHeaders(_)
                | A::MissingScope
                | A::Csrf(_)
                | A::BasicChallenge
                | A::LogoutMethod
                | A::UnknownUserApiResource
                | A::ServiceToken(_)
                | A::TooManyLogins { .. },
            ) => None,
            GatewayError::PayloadTooLarge => Some(ErrorKind::Shed(Shed::BodyTooLarge)),
            // Counted as `in_flight` where the request is refused, before the pipeline.
            GatewayError::Overloaded => None,
            // The client's host: a 4xx, counted by status class.
            GatewayError::UnknownTenantHost(_) | GatewayError::InsecureRequest => None,
            GatewayError::Routing(
                R::RouteNotFound
                | R::MethodNotAllowed { .. }
                | R::UnknownDestination(_)
                | R::PathTraversal
                | R::EncodedSlash
                | R::NestedEncoding,
            ) => None,
            GatewayError::Static(
                S::NotFound
                | S::MethodNotAllowed
                | S::Forbidden
                | S::PreconditionFailed
                | S::RangeNotSatisfiable { .. }
                | S::Io(_)
                | S::Template { .. },
            ) => None,
            GatewayError::Cors(C::MalformedOrigin | C::OriginNotAllowed | C::MethodNotAllowed | C::OwnOrigin(_)) => {
                None
            }
            GatewayError::BadRequest(_) | GatewayError::RequestTimeout => None,
            // Counted by outcome where the Destination service is called.
            GatewayError::Destination(_) => None,
            // The caller's fault, counted by status class; key fetches by `jwks_fetches`.
            GatewayError::Subscription(_) => None,
        }
    }

    /// A forward that failed because the request body passed the limit, or did not arrive in
    /// time, is the client's fault: 413 or 408, not a destination failure.
    pub fn reclassify(self) -> GatewayError {
        if is_body_too_large(&self) {
            GatewayError::PayloadTooLarge
        } else if has_cause::<crate::body::RequestTimedOut>(&self) {
            GatewayError::RequestTimeout
        } else {
            self
        }
    }
}

/// True when `error`'s causes include the body limit tripping: the forward failed because the
/// client sent too much, not because the destination did something wrong.
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = cause.source();
    }
    false
}

/// True when `error`'s causes include an `E`.
fn has_cause<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.is::<E>() {
            return true;
        }
        current = cause.source();
    }
    false
}

/// True when a connection failure was a TLS failure (handshake, certificate), not a refused or
/// unreachable connection.
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.is::<rustls::Error>() {
            return true;
        }
        // io::Error's own `source` skips the error it wraps; look inside explicitly.
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                return true;
            }
        }
        current = cause.source();
    }
    // Errors that carry a TLS failure only in their text (a handshake refused by the peer).
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = current {
        let text = cause.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("handshake") || text.contains("tls") {
            return true;
        }
        current = cause.source();
    }
    false
}

/// Builds the response for `error`, applying `errorPage` rules. `path` is the request path (for the
/// redirect loop guard).
pub async fn respond(error: &GatewayError, config: &Config, path: &str) -> Response<Body> {
    let status = error.status();
    let mut response = match error_page(config, status, path).await {
        Some(response) => response,
        None => match error {
            GatewayError::Auth(auth) => match auth.public_message() {
                Some(message) => with_message(status, message),
                None => plain(status),
            },
            _ => plain(status),
        },
    };
    match error {
        GatewayError::Routing(crate::routing::Error::MethodNotAllowed { allow }) => {
            if let Ok(value) = HeaderValue::from_str(allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
        GatewayError::Static(crate::static_files::Error::MethodNotAllowed) => {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        // RFC 9110 §15.5.17: the current length, so the client can ask again.
        GatewayError::Static(crate::static_files::Error::RangeNotSatisfiable { length }) => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
        }
        GatewayError::Auth(auth) => auth.decorate(&mut response),
        GatewayError::Subscription(subscription) => subscription.decorate(&mut response),
        GatewayError::Overloaded => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The rest of the body may still be on its way: the connection cannot be reused.
        GatewayError::RequestTimeout => {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}

/// A small `text/plain` response whose body is the reason phrase, as the reference answers.
pub fn plain(status: StatusCode) -> Response<Body> {
    let text = status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(body::full(text.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    response
}

/// A `text/plain` response with the reason phrase and one sentence for the user.
pub fn with_message(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = plain(status);
    let text = format!("{}\n\n{message}\n", status.canonical_reason().unwrap_or("Error"));
    *response.body_mut() = body::full(text);
    response
}

async fn error_page(config: &Config, status: StatusCode, path: &str) -> Option<Response<Body>> {
    let rule = config
        .error_pages
        .iter()
        .find(|rule| rule.statuses.contains(&status.as_u16()))?;
    match &rule.target {
        ErrorPageTarget::File(file) => match tokio::fs::read(file).await {
            Ok(content) => {
                let mut response = Response::new(body::full(content));
                *response.status_mut() = status;
                let mime = mime_guess::from_path(file).first_or(mime_guess::mime::TEXT_HTML);
                if let Ok(value) = HeaderValue::from_str(mime.essence_str()) {
                    response.headers_mut().insert(header::CONTENT_TYPE, value);
                }
                Some(response)
            }
            Err(error) => {
                tracing::error!(file = %file.display(), %error, "error page file cannot be read");
                None
            }
        },
        // The loop guard: the error page itself failing must not redirect to itself forever.
        ErrorPageTarget::Redirect(target) if target != path => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::FOUND;
            let location = HeaderValue::from_str(target).ok()?;
            response.headers_mut().insert(header::LOCATION, location);
            Some(response)
        }
        ErrorPageTarget::Redirect(_) => None,
    }
}
