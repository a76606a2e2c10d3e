//! CSRF protection for protected routes: a per-session token fetched with `x-csrf-token: fetch`
//! and required on every state-changing request, compared in constant time; plus an
//! `Origin`/`Sec-Fetch-Site` check that the reference lacks (`CSRF_ORIGIN_CHECK=false` turns it off).

use http::header::{HeaderMap, HeaderName};
use http::Method;

use super::login::random_token;
use crate::session::Session;

/// How many names [`METHOD_OVERRIDES`] has.
const OVERRIDES: usize = 3;

/// Request headers some frameworks read as "the real method"; their presence makes a GET count as
/// state-changing.
// Constant names: a `&str` lookup would parse and hash the name on every request.
const METHOD_OVERRIDES: [HeaderName; OVERRIDES] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// The CSRF token header, in both directions.
pub const X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// What the CSRF phase decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Pass,
    /// A token fetch: answer with this token; `true` when the session must be saved (new token).
    Fetch { token: String, new: bool },
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrfError {
    #[error("csrf token missing or invalid")]
    TokenMismatch,
    #[error("cross-site request refused ({0})")]
    CrossSite(&'static str),
}

/// True for methods that change state (everything but GET and HEAD), counting method overrides.
pub fn is_state_changing(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return true;
    }
    // One pass over the fields instead of a lookup for each override name (most requests have
    // none). The first value of each name counts, as a lookup returns it; a value that is not text
    // counts as a method that changes state.
    let mut seen = [false; OVERRIDES];
    headers.iter().any(|(name, value)| {
        let Some(index) = METHOD_OVERRIDES.iter().position(|known| known == name) else {
            return false;
        };
        if std::mem::replace(&mut seen[index], true) {
            return false;
        }
        let method = value.as_bytes().trim_ascii();
        !method.eq_ignore_ascii_case(b"GET") && !method.eq_ignore_ascii_case(b"HEAD")
    })
}

/// Checks one request. `own_origin` is `scheme://host[:port]` of the router as the browser sees it.
///
/// # Errors
/// [`CsrfError`] for a missing/wrong token or a cross-site request.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    session: &Session,
    own_origin: Option<&str>,
    origin_check: bool,
) -> Result<Decision, CsrfError> {
    check_request(
        is_state_changing(method, headers),
        headers,
        session,
        own_origin,
        origin_check,
    )
}

/// [`check`] for a caller that already knows whether the request changes state.
///
/// # Errors
/// [`CsrfError`] for a missing/wrong token or a cross-site request.
pub fn check_request(
    state_changing: bool,
    headers: &HeaderMap,
    session: &Session,
    own_origin: Option<&str>,
    origin_check: bool,
) -> Result<Decision, CsrfError> {
    if !state_changing {
        let fetch = headers
            .get(X_CSRF_TOKEN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("fetch"));
        if !fetch {
            return Ok(Decision::Pass);
        }
        return Ok(match &session.csrf_secret {
            Some(token) => Decision::Fetch {
                token: token.clone(),
                new: false,
            },
            None => Decision::Fetch {
                token: random_token(),
                new: true,
            },
        });
    }
    if origin_check {
        check_origin(headers, own_origin)?;
    }
    let presented = headers.get(X_CSRF_TOKEN).map(|v| v.as_bytes()).unwrap_or(b"");
    let expected = session.csrf_secret.as_deref().map(str::as_bytes);
    match expected {
        Some(expected) if aws_lc_rs::constant_time::verify_slices_are_equal(presented, expected).is_ok() => {
            Ok(Decision::Pass)
        }
        _ => Err(CsrfError::TokenMismatch),
    }
}

fn check_origin(headers: &HeaderMap, own_origin: Option<&str>) -> Result<(), CsrfError> {
    if let Some(site) = headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") {
            return Err(CsrfError::CrossSite("Sec-Fetch-Site: cross-site"));
        }
    }
    match headers.get(http::header::ORIGIN).map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok("null")) => Err(CsrfError::CrossSite("Origin: null")),
        Some(Ok(origin)) => match own_origin {
            Some(own) if origin.eq_ignore_ascii_case(own) => Ok(()),
            Some(_) => Err(CsrfError::CrossSite("foreign Origin")),
            None => Ok(()),
        },
        Some(Err(_)) => Err(CsrfError::CrossSite("malformed Origin")),
    }
}

#[cfg(test)]
mod tests;
