//! The login at XSUAA: the start (state, PKCE, the browser binding, the redirect), the callback
//! (single-use state bound to the browser, code exchange, a new session), and the per-address
//! limit on failed callbacks.

use std::sync::Arc;

use http::request::Parts;
use http::{Response, StatusCode};

use super::{login, Auth, Error, Origin};
use crate::body::Body;
use crate::cookies::{cookie, cookie_bytes};
use crate::idp::xsuaa::IdpError;
use crate::limits;
use crate::metrics::Shed;
use crate::session::{LoginAttempt, SessionId};

impl Auth {
    /// The client address the login limit counts against; `None` when there is no limit or no peer
    /// (a request built in-process).
    pub(super) fn login_client(&self, parts: &Parts, origin: &Origin<'_>) -> Option<std::net::IpAddr> {
        let (Some((_, hops)), Some(peer)) = (&self.login_limit, origin.peer) else {
            return None;
        };
        Some(limits::client_addr(peer, &parts.headers, *hops))
    }

    /// Refuses a client that has failed too many logins lately; takes nothing.
    pub(super) fn check_login_rate(&self, client: Option<std::net::IpAddr>) -> Result<(), Error> {
        let (Some((limiter, _)), Some(client)) = (&self.login_limit, client) else {
            return Ok(());
        };
        limiter.check(client).map_err(|retry_after| {
            self.metrics.shed(Shed::LoginRateLimit);
            Error::TooManyLogins { retry_after }
        })
    }

    /// Counts a failed callback against the client, when the failure is one a client can cause.
    fn charge_failed_login(&self, client: Option<std::net::IpAddr>, error: &Error) {
        if let (Some((limiter, _)), Some(client)) = (&self.login_limit, client) {
            if is_client_failure(error) {
                limiter.charge(client);
            }
        }
    }

    pub(super) async fn start_login(
        &self,
        parts: &Parts,
        idp: Option<&str>,
        origin: &Origin<'_>,
    ) -> Result<Response<Body>, Error> {
        // A start costs the address nothing (a crowd behind one address must be able to log in);
        // only an address that keeps failing callbacks is turned away before anything is stored.
        self.check_login_rate(self.login_client(parts, origin))?;
        let binding_name = login::binding_cookie(&self.settings.session_cookie);
        // Reuse the browser's binding nonce so that several tabs can log in at once.
        let binding = cookie(&parts.headers, &binding_name)
            .filter(|value| {
                value.len() == 43
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(String::from)
            .unwrap_or_else(login::random_token);
        let return_to = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .and_then(login::safe_return_path)
            .unwrap_or("/")
            .to_string();
        let attempt = LoginAttempt {
            browser_binding: binding.clone(),
            code_verifier: login::random_token(),
            redirect_uri: self.redirect_uri(&parts.headers, origin)?,
            return_to,
            tenant: origin.tenant.map(String::from),
        };
        let state = login::random_token();
        let url = login::authorize_url(
            &self.idp_url(origin.tenant),
            &self.credentials.clientid,
            &attempt,
            &state,
            idp.map(|origin| {
                let parameter = match self.settings.idp_as_login_hint {
                    true => login::IdpParameter::LoginHint,
                    false => login::IdpParameter::Idp,
                };
                (origin, parameter)
            }),
        );
        self.store.put_attempt(&state, attempt).await?;
        self.metrics.login_started();
        Ok(login::redirect_response(
            &url,
            self.settings.preserve_fragment,
            &binding_name,
            &binding,
            self.settings.login_attempt_ttl.as_secs(),
            &self.flags(&parts.headers, origin),
        ))
    }

    /// The login callback: state checks, code exchange, token validation, a new session.
    ///
    /// # Errors
    /// One [`Error`] per failed check; never a redirect back to the login (no loops).
    pub async fn callback(&self, parts: &Parts, origin: &Origin<'_>) -> Result<Response<Body>, Error> {
        let client = self.login_client(parts, origin);
        // Before the state is taken: a refused callback leaves the attempt usable after the wait.
        self.check_login_rate(client)?;
        let result = self.complete_login(parts, origin).await;
        match &result {
            Ok(_) => self.metrics.login_completed(),
            Err(error) => {
                self.metrics.login_failed(login_failure(error));
                self.charge_failed_login(client, error);
            }
        }
        result
    }

    async fn complete_login(&self, parts: &Parts, origin: &Origin<'_>) -> Result<Response<Body>, Error> {
        let query: Vec<(String, String)> = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let state = param("state").filter(|s| !s.is_empty()).ok_or(Error::StateMissing)?;
        // Taken out first: a state is single-use even when a later check fails.
        let attempt = self.store.take_attempt(state).await?.ok_or(Error::StateInvalid)?;
        let binding_name = login::binding_cookie(&self.settings.session_cookie);
        let presented = cookie(&parts.headers, &binding_name).unwrap_or("");
        let same_browser: bool =
            aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), attempt.browser_binding.as_bytes())
                .is_ok();
        // A login started on one tenant's host ends there: its code is that tenant's.
        if !same_browser || attempt.tenant.as_deref() != origin.tenant {
            return Err(Error::StateMismatch);
        }
        if let Some(error) = param("error") {
            let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return Err(Error::LoginRefused { error });
        }
        let code = param("code").filter(|c| !c.is_empty()).ok_or(Error::CodeMissing)?;
        let token_url = self.token_url(origin.tenant);
        let exchange = self.idp.exchange_code_at(
            token_url.as_deref(),
            code,
            &attempt.redirect_uri,
            &attempt.code_verifier,
        );
        let tokens = self
            .token_request("authorization_code", exchange)
            .await
            .map_err(Error::TokenExchange)?;
        let claims = self.claims_of(&tokens).await?;
        let session = self.session_from(tokens.access_token, tokens.refresh_token, &claims, None);
        if !self.session_fits(&session, origin.tenant) {
            // The tenant's endpoint issued a token of another zone: never a session here.
            return Err(Error::TokenInvalid(crate::idp::jwt::JwtError::WrongZone(
                claims.zid.clone().unwrap_or_default(),
            )));
        }
        // A new id at every login: a planted cookie never becomes a logged-in session. Another
        // tenant's session named by the cookie is not this login's to end.
        if let Some(old) = cookie_bytes(&parts.headers, &self.settings.session_cookie).and_then(SessionId::parse) {
            let ours = match self.tenancy {
                None => true,
                Some(_) => {
                    matches!(self.store.load(&old).await, Ok(Some(old)) if self.session_fits(&old, origin.tenant))
                }
            };
            if ours {
                let _ = self.store.remove(&old).await;
            }
        }
        let id = SessionId::generate();
        self.store.save(&id, Arc::new(session)).await?;
        let mut location = attempt.return_to.clone();
        if let Some(fragment) = cookie(&parts.headers, login::FRAGMENT_COOKIE).and_then(login::safe_fragment) {
            location.push_str(&fragment);
        }
        tracing::info!(return_to = %attempt.return_to, "login completed");
        Ok(login::success_response(
            &location,
            &self.settings.session_cookie,
            &id.to_cookie_value(),
            &self.flags(&parts.headers, origin),
        ))
    }
}

/// True for the callback failures a client can cause, and so the ones `LOGIN_RATE_LIMIT` counts:
/// a missing, unknown, replayed or foreign state, a refusal by the identity provider, a code it
/// does not accept. An identity provider or session store that cannot answer, our client
/// credentials refused, or a token that fails our checks, is not the client's doing and does not
/// count against its address.
fn is_client_failure(error: &Error) -> bool {
    match error {
        Error::StateMissing
        | Error::StateInvalid
        | Error::StateMismatch
        | Error::CodeMissing
        | Error::LoginRefused { .. } => true,
        // 400 (`invalid_grant`): the code; a 401 would be our own client credentials.
        Error::TokenExchange(exchange) => {
            matches!(exchange, IdpError::Refused { status, .. } if *status == StatusCode::BAD_REQUEST)
        }
        _ => false,
    }
}

/// The `reason` label of a failed login callback.
fn login_failure(error: &Error) -> &'static str {
    match error {
        Error::StateMissing => "state_missing",
        Error::StateInvalid => "state_invalid",
        Error::StateMismatch => "state_mismatch",
        Error::CodeMissing => "code_missing",
        Error::LoginRefused { .. } => "refused_by_idp",
        Error::TokenExchange(_) => "token_exchange",
        Error::TokenInvalid(_) => "token_invalid",
        Error::Store(_) => "store",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::StoreError;

    #[test]
    fn only_failures_a_client_can_cause_count_against_its_address() {
        let refused = |status: StatusCode| {
            Error::TokenExchange(IdpError::Refused {
                status,
                error: "e".into(),
                description: String::new(),
            })
        };
        let cases: Vec<(&str, Error, bool)> = vec![
            ("no state", Error::StateMissing, true),
            ("unknown or replayed state", Error::StateInvalid, true),
            ("another browser's state", Error::StateMismatch, true),
            ("no code", Error::CodeMissing, true),
            (
                "refused by the IdP",
                Error::LoginRefused {
                    error: "access_denied".into(),
                },
                true,
            ),
            ("a code the IdP does not accept", refused(StatusCode::BAD_REQUEST), true),
            (
                "our client credentials refused",
                refused(StatusCode::UNAUTHORIZED),
                false,
            ),
            ("IdP failing", refused(StatusCode::INTERNAL_SERVER_ERROR), false),
            (
                "IdP too slow",
                Error::TokenExchange(IdpError::Timeout(std::time::Duration::from_secs(1))),
                false,
            ),
            (
                "IdP answer garbled",
                Error::TokenExchange(IdpError::BadAnswer("x".into())),
                false,
            ),
            (
                "store down",
                Error::Store(StoreError::Unavailable("down".into())),
                false,
            ),
            ("already limited", Error::TooManyLogins { retry_after: 1 }, false),
        ];
        for (case, error, counts) in cases {
            assert_eq!(is_client_failure(&error), counts, "{case}");
        }
    }
}
