//! Cross-origin resource sharing (`cors` of xs-app.json, then the `CORS` variable): preflights are
//! answered here, before routing; actual requests carry the allow headers on whatever response
//! they get; a disallowed or malformed origin, or a method the rule does not allow, gets 403.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response};

use crate::body::{self, Body};
use crate::config::{Config, CorsRule};
use crate::origin::{OwnOriginError, WebOrigin};

/// Why a cross-origin request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Origin` is not a serialised origin (`null`, a path, another scheme).
    #[error("malformed Origin header")]
    MalformedOrigin,
    /// The origin is not in the rule's `allowedOrigin`.
    #[error("origin not allowed by CORS")]
    OriginNotAllowed,
    /// The (requested) method is not in the rule's `allowedMethods`.
    #[error("method not allowed by CORS")]
    MethodNotAllowed,
    /// The router's own origin cannot be told from the forwarded headers.
    #[error("cannot determine the router's origin: {0}")]
    OwnOrigin(#[from] OwnOriginError),
}

impl Error {
    /// The status of the response.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Error::OwnOrigin(_) => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::FORBIDDEN,
        }
    }
}

/// What the CORS phase decided.
pub enum Decision {
    /// A preflight, answered here.
    Respond(Response<Body>),
    /// Go on; these headers go onto the response, whatever it is (errors included, so that the
    /// browser lets the page read a 401 or 404).
    Continue(ResponseHeaders),
}

/// The CORS headers of an actual request's response.
#[derive(Debug, Default)]
pub struct ResponseHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ResponseHeaders {
    /// Puts the headers onto a response; ours replace a backend's own CORS headers, `Vary` is
    /// added to.
    pub fn apply(&self, target: &mut HeaderMap) {
        if self.headers.is_empty() {
            return;
        }
        for (name, value) in &self.headers {
            target.insert(name.clone(), value.clone());
        }
        target.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The CORS phase: finds the first rule for the request's URL (and host) and applies it to a
/// request with an `Origin` other than the router's own.
///
/// # Errors
/// [`Error::MalformedOrigin`], [`Error::OriginNotAllowed`], [`Error::MethodNotAllowed`] (403) and
/// [`Error::OwnOrigin`] (400, an invalid `X-Forwarded-Proto`).
pub fn check(config: &Config, parts: &Parts, scheme: &str) -> Result<Decision, Error> {
    let pass = || Ok(Decision::Continue(ResponseHeaders::default()));
    if config.cors.is_empty() {
        return pass();
    }
    let Some(origin_value) = parts.headers.get(header::ORIGIN) else {
        return pass();
    };
    let url = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let custom = parts
        .headers
        .get("x-custom-host")
        .filter(|_| config.auth.external_reverse_proxy);
    let host = custom
        .or_else(|| parts.headers.get("x-forwarded-host"))
        .or_else(|| parts.headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(rule) = config.cors.iter().find(|rule| {
        rule.uri_pattern.is_match(url) && rule.host_pattern.as_ref().is_none_or(|pattern| pattern.is_match(host))
    }) else {
        return pass();
    };
    let origin = origin_value
        .to_str()
        .ok()
        .and_then(WebOrigin::parse)
        .ok_or(Error::MalformedOrigin)?;
    if origin == config.own_origin(&parts.headers, scheme)? {
        return pass();
    }
    if !rule.allowed_origins.matches(&origin) {
        return Err(Error::OriginNotAllowed);
    }
    let requested = parts.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
    match requested {
        Some(requested) if parts.method == Method::OPTIONS => {
            let method = Method::from_bytes(requested.as_bytes()).map_err(|_| Error::MethodNotAllowed)?;
            if !rule.allowed_methods.contains(&method) {
                return Err(Error::MethodNotAllowed);
            }
            Ok(Decision::Respond(preflight(rule, origin_value, requested)))
        }
        _ => {
            if !rule.allowed_methods.contains(&parts.method) {
                return Err(Error::MethodNotAllowed);
            }
            let mut headers = vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin(rule, origin_value))];
            if rule.allow_credentials {
                headers.push((
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
            if let Some(expose) = &rule.expose_headers {
                headers.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()));
            }
            Ok(Decision::Continue(ResponseHeaders { headers }))
        }
    }
}

/// The answer to a preflight: 200 with the requested method only and the configured headers.
fn preflight(rule: &CorsRule, origin: &HeaderValue, requested: &HeaderValue) -> Response<Body> {
    let mut response = Response::new(body::empty());
    let headers = response.headers_mut();
    if rule.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin(rule, origin));
    if let Some(max_age) = &rule.max_age {
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, requested.clone());
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, rule.allowed_headers.clone());
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

fn allow_origin(rule: &CorsRule, origin: &HeaderValue) -> HeaderValue {
    if rule.any_origin {
        HeaderValue::from_static("*")
    } else {
        origin.clone()
    }
}
