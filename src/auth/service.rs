//! Service-to-approuter: a request with `x-approuter-authorization: Bearer <jwt>` is served as the
//! token's user for that request alone, without a session; the token is validated as a login's
//! is, and under multitenancy it must be of the host's tenant.

use std::sync::Mutex;
use std::time::Duration;

use http::header::HeaderValue;
use tokio::time::Instant;

use super::{Auth, Error};
use crate::idp::jwt::{self, JwtError};
use crate::session::Session;

/// The request header that carries the caller's token.
pub const HEADER: &str = "x-approuter-authorization";

/// Identity zones whose keys the router does not hold yet that tokens may make it fetch, per
/// minute: a token names its zone before its signature is checked, so without a bound any caller
/// could make the router ask the identity provider for keys of zone after zone.
pub const NEW_ZONES_PER_MINUTE: u32 = 20;

/// Why a service-to-approuter token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT (400, as the reference answers).
    #[error("x-approuter-authorization is not a JWT")]
    Malformed,
    /// `Basic` (the reference's password grant) or another scheme.
    #[error("x-approuter-authorization supports Bearer tokens only; other schemes are not supported")]
    NotBearer,
    /// The token's `ext_attr.zdn` is not the tenant the host names.
    #[error("token of tenant {token:?} on the host of tenant {host:?}")]
    OtherTenant { token: String, host: String },
    /// Too many new zones lately ([`NEW_ZONES_PER_MINUTE`]).
    #[error("keys of identity zone {0:?} not fetched: too many new zones this minute")]
    NewZoneLimit(String),
    /// Signature, algorithm, expiry, audience or zone.
    #[error("token rejected: {0}")]
    Invalid(#[source] JwtError),
}

impl TokenError {
    /// The status the refusal answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            TokenError::Malformed | TokenError::Invalid(JwtError::Malformed) => http::StatusCode::BAD_REQUEST,
            TokenError::Invalid(JwtError::KeysUnavailable(_)) => http::StatusCode::BAD_GATEWAY,
            TokenError::NewZoneLimit(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            TokenError::NotBearer | TokenError::OtherTenant { .. } | TokenError::Invalid(_) => {
                http::StatusCode::UNAUTHORIZED
            }
        }
    }
}

/// A token bucket of key fetches for zones not seen yet, shared by all callers.
pub(super) struct NewZones {
    bucket: Mutex<(f64, Instant)>,
}

impl NewZones {
    pub(super) fn new() -> NewZones {
        NewZones {
            bucket: Mutex::new((f64::from(NEW_ZONES_PER_MINUTE), Instant::now())),
        }
    }

    /// Takes one fetch from the budget; false when it is spent.
    fn take(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, updated) = &mut *bucket;
        let capacity = f64::from(NEW_ZONES_PER_MINUTE);
        let refill = updated.elapsed().as_secs_f64() * capacity / Duration::from_secs(60).as_secs_f64();
        *tokens = (*tokens + refill).min(capacity);
        *updated = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Auth {
    /// The user of a service-to-approuter request: the `Bearer` token of `value`, validated
    /// (signature by its zone's keys, pinned algorithms, expiry, audience), of the host's
    /// `tenant` under multitenancy. The session it yields lives for this request only.
    ///
    /// # Errors
    /// [`Error::ServiceToken`] naming why the token is refused.
    pub(super) async fn service_user(&self, value: &HeaderValue, tenant: Option<&str>) -> Result<Session, Error> {
        let token = bearer(value)?;
        let payload = jwt::unverified_payload(token).map_err(|_| TokenError::Malformed)?;
        // The zone rules come before any key fetch: a token of another tenant costs nothing. A
        // host without a tenant never reaches here under multitenancy; should one, it is refused.
        if self.tenancy.is_some() {
            let zdn = payload
                .get("ext_attr")
                .and_then(|ext| ext.get("zdn"))
                .and_then(|zdn| zdn.as_str())
                .unwrap_or("");
            if tenant.is_none_or(|tenant| tenant != zdn) {
                return Err(TokenError::OtherTenant {
                    token: zdn.to_string(),
                    host: tenant.unwrap_or("").to_string(),
                }
                .into());
            }
        }
        let zid = payload.get("zid").and_then(|zid| zid.as_str()).unwrap_or("");
        if self.validator.needs_keys(zid) && !self.new_zones.take() {
            return Err(TokenError::NewZoneLimit(zid.to_string()).into());
        }
        let claims = self
            .validator
            .validate(&self.idp, token, self.clock.now())
            .await
            .map_err(TokenError::Invalid)?;
        Ok(self.session_from(token.to_string(), None, &claims, None))
    }
}

/// The token of `Bearer <token>` (the scheme in any case, as RFC 9110 has it).
fn bearer(value: &HeaderValue) -> Result<&str, TokenError> {
    let text = value.to_str().map_err(|_| TokenError::Malformed)?.trim();
    let (scheme, token) = text.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::NotBearer);
    }
    match token.trim() {
        "" => Err(TokenError::Malformed),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_tokens_are_taken() {
        let rows: &[(&str, Option<&str>)] = &[
            ("Bearer a.b.c", Some("a.b.c")),
            ("bearer  a.b.c ", Some("a.b.c")),
            ("Basic dXNlcjpwdw==", None),
            ("Token a.b.c", None),
            ("a.b.c", None),
            ("Bearer ", None),
        ];
        for (value, expected) in rows {
            let value = HeaderValue::from_str(value).unwrap();
            assert_eq!(bearer(&value).ok(), *expected, "{value:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn new_zones_are_bounded_per_minute() {
        let zones = NewZones::new();
        for _ in 0..NEW_ZONES_PER_MINUTE {
            assert!(zones.take());
        }
        assert!(!zones.take());
        tokio::time::advance(Duration::from_secs(60 / u64::from(NEW_ZONES_PER_MINUTE))).await;
        assert!(zones.take());
        assert!(!zones.take());
    }
}
