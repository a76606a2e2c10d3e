//! Response building and the OAuth error type; the only place that turns an
//! error into an HTTP response.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// The response type of every handler.
pub(crate) type Resp = Response<Full<Bytes>>;

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &Value) -> Resp {
    response(status, "application/json;charset=UTF-8", body.to_string())
}

/// A JSON response that caches must not keep (tokens, token errors).
pub(crate) fn json_no_store(status: StatusCode, body: &Value) -> Resp {
    let mut resp = json(status, body);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A small HTML page; the text is escaped.
pub(crate) fn html(status: StatusCode, title: &str, text: &str) -> Resp {
    let body = format!(
        "<!DOCTYPE html><html><head><title>{t}</title></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    );
    response(status, "text/html;charset=UTF-8", body)
}

/// 302 to `location`; a location that is not a valid header value (never the
/// case for serialized URLs) becomes a 500 rather than a panic.
pub(crate) fn redirect(location: &str) -> Resp {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut resp = response(StatusCode::FOUND, "text/html;charset=UTF-8", "");
            resp.headers_mut().insert(LOCATION, value);
            resp
        }
        Err(_) => html(StatusCode::INTERNAL_SERVER_ERROR, "Error", "invalid redirect location"),
    }
}

/// 404 for unknown paths.
pub(crate) fn not_found() -> Resp {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "error_description": "no such endpoint"}),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An OAuth 2.0 error answer (RFC 6749 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("unsupported grant type: {grant_type}"),
        )
    }

    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", description)
    }

    pub(crate) fn into_response(self) -> Resp {
        json_no_store(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
        )
    }
}

impl From<aws_lc_rs::error::Unspecified> for OAuthError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Self::server_error("random number generation failed")
    }
}

impl From<jsonwebtoken::errors::Error> for OAuthError {
    fn from(_: jsonwebtoken::errors::Error) -> Self {
        Self::server_error("token signing failed")
    }
}
