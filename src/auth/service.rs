//! Service-to-approuter: a request with `x-approuter-authorization: Bearer <jwt>` (or `Basic`,
//! exchanged for a token by the password grant) is served as the token's user for that request
//! alone, without a session; the token is validated as a login's is, and under multitenancy it
//! must be of the host's tenant.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use http::header::HeaderValue;
use http::request::Parts;

use super::{Auth, Error, Origin};
use crate::idp::jwt::{self, JwtError};
use crate::idp::xsuaa::IdpError;
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
    /// A scheme other than `Bearer` and `Basic`, or `Basic` without `user:password`.
    #[error(
        "x-approuter-authorization must be Bearer <token> or Basic <user:password>; other schemes are not supported"
    )]
    UnsupportedScheme,
    /// The identity provider refused the password grant for `Basic` credentials.
    #[error("the identity provider refused the user's password")]
    PasswordRefused,
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
            TokenError::UnsupportedScheme
            | TokenError::PasswordRefused
            | TokenError::OtherTenant { .. }
            | TokenError::Invalid(_) => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// Password-grant tokens for `Basic` callers, as the reference caches them: by tenant, user and
/// password, until shortly before they expire. Keyed by an HMAC with a key of this process, so
/// the table holds no password.
pub(super) struct PasswordTokens {
    key: aws_lc_rs::hmac::Key,
    tokens: Mutex<HashMap<[u8; 32], (String, u64)>>,
}

/// Password-grant tokens kept at most.
const PASSWORD_TOKENS_CAPACITY: usize = 10_000;
/// A kept token is used until this long before it expires, as the reference does.
const PASSWORD_TOKEN_MARGIN_SECS: u64 = 120;

impl PasswordTokens {
    pub(super) fn new() -> PasswordTokens {
        PasswordTokens {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &crate::util::random_bytes::<32>()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn key_of(&self, tenant: &str, user: &str, password: &str) -> [u8; 32] {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.key);
        // Lengths first, so that no two triples share an encoding.
        for part in [tenant, user, password] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }

    fn get(&self, key: &[u8; 32], now: u64) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(token, _)| token.clone())
    }

    fn put(&self, key: [u8; 32], token: &str, until: u64, now: u64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.len() >= PASSWORD_TOKENS_CAPACITY {
            tokens.retain(|_, (_, kept_until)| now < *kept_until);
        }
        if tokens.len() < PASSWORD_TOKENS_CAPACITY {
            tokens.insert(key, (token.to_string(), until));
        }
    }
}

/// What `x-approuter-authorization` carries.
#[derive(Debug, PartialEq, Eq)]
enum Credentials<'a> {
    Bearer(&'a str),
    Basic { user: String, password: String },
}

impl Auth {
    /// The user of a service-to-approuter request: the `Bearer` token of `value` (or the token
    /// the password grant gives for `Basic` credentials), validated (signature by its zone's keys,
    /// pinned algorithms, expiry, audience), of the host's tenant under multitenancy. The session
    /// it yields lives for this request only.
    ///
    /// # Errors
    /// [`Error::ServiceToken`] naming why the token is refused; [`Error::TooManyLogins`] for a
    /// client past `LOGIN_RATE_LIMIT` failed passwords; [`Error::TokenExchange`] when the identity
    /// provider cannot answer the password grant.
    pub(super) async fn service_user(
        &self,
        parts: &Parts,
        value: &HeaderValue,
        origin: &Origin<'_>,
    ) -> Result<Session, Error> {
        let tenant = origin.tenant;
        let token = match credentials(value)? {
            Credentials::Bearer(token) => token.to_string(),
            Credentials::Basic { user, password } => {
                Box::pin(self.password_token(parts, origin, &user, &password)).await?
            }
        };
        let token = token.as_str();
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
        // A token the validator would refuse before fetching keys must not spend the budget.
        jwt::checked_header(token).map_err(TokenError::Invalid)?;
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

impl Auth {
    /// The access token of a `Basic` caller: kept from an earlier request, else from the
    /// password grant at the tenant's token endpoint. A refused password counts against the
    /// client's address as a failed login does (`LOGIN_RATE_LIMIT`), so that the header cannot
    /// be used to guess passwords faster than the login allows.
    async fn password_token(
        &self,
        parts: &Parts,
        origin: &Origin<'_>,
        user: &str,
        password: &str,
    ) -> Result<String, Error> {
        let key = self.password_tokens.key_of(origin.tenant.unwrap_or(""), user, password);
        if let Some(token) = self.password_tokens.get(&key, self.clock.now()) {
            return Ok(token);
        }
        let client = self.login_client(parts, origin);
        self.check_login_rate(client)?;
        let token_url = self.token_url(origin.tenant);
        let grant = self.idp.password_at(token_url.as_deref(), user, password);
        match self.token_request("password", grant).await {
            Ok(tokens) => {
                let now = self.clock.now();
                if let Some(lifetime) = tokens
                    .expires_in
                    .filter(|lifetime| *lifetime > PASSWORD_TOKEN_MARGIN_SECS)
                {
                    let until = now + lifetime - PASSWORD_TOKEN_MARGIN_SECS;
                    self.password_tokens.put(key, &tokens.access_token, until, now);
                }
                Ok(tokens.access_token)
            }
            Err(IdpError::Refused { status, .. }) if status.is_client_error() => {
                if let (Some((limiter, _)), Some(client)) = (&self.login_limit, client) {
                    limiter.charge(client);
                }
                Err(TokenError::PasswordRefused.into())
            }
            Err(error) => Err(Error::TokenExchange(error)),
        }
    }
}

/// The credentials of `Bearer <token>` or `Basic <base64 user:password>` (the scheme in any case,
/// as RFC 9110 has it).
fn credentials(value: &HeaderValue) -> Result<Credentials<'_>, TokenError> {
    let text = value.to_str().map_err(|_| TokenError::Malformed)?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or(TokenError::UnsupportedScheme)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return match rest {
            "" => Err(TokenError::Malformed),
            token => Ok(Credentials::Bearer(token)),
        };
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(TokenError::UnsupportedScheme);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(TokenError::UnsupportedScheme)?;
    let (user, password) = decoded.split_once(':').ok_or(TokenError::UnsupportedScheme)?;
    if user.is_empty() {
        return Err(TokenError::UnsupportedScheme);
    }
    Ok(Credentials::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_basic_credentials_are_taken() {
        let basic = |user: &str, password: &str| {
            Some(Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            })
        };
        let rows: &[(&str, Option<Credentials<'_>>)] = &[
            ("Bearer a.b.c", Some(Credentials::Bearer("a.b.c"))),
            ("bearer  a.b.c ", Some(Credentials::Bearer("a.b.c"))),
            ("Basic dXNlcjpwdw==", basic("user", "pw")),
            ("basic dXNlcjpwOnc=", basic("user", "p:w")),
            ("Basic dXNlcg==", None),
            ("Basic OnB3", None),
            ("Basic !!", None),
            ("Token a.b.c", None),
            ("a.b.c", None),
            ("Bearer ", None),
        ];
        for (value, expected) in rows {
            let value = HeaderValue::from_str(value).unwrap();
            assert_eq!(credentials(&value).ok(), *expected, "{value:?}");
        }
    }

    #[test]
    fn password_tokens_are_kept_until_shortly_before_expiry() {
        let tokens = PasswordTokens::new();
        let key = tokens.key_of("acme", "jane", "secret");
        assert_ne!(key, tokens.key_of("acme", "jane", "secret2"));
        assert_ne!(key, tokens.key_of("acmej", "ane", "secret"));
        assert_eq!(tokens.get(&key, 100), None);
        tokens.put(key, "token", 200, 100);
        assert_eq!(tokens.get(&key, 199).as_deref(), Some("token"));
        assert_eq!(tokens.get(&key, 200), None);
    }
}
