//! Authentication: login at XSUAA (authorization-code flow with state and PKCE, code exchange over
//! mutual TLS), server-side sessions, token validation and refresh.

mod cookies;
pub mod jwt;
pub mod login;
pub mod session;
pub mod xsuaa;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use tokio::time::Instant;

use self::jwt::{Claims, JwtError, Validator};
use self::login::CookieFlags;
use self::session::{LoginAttempt, Session, SessionId, SessionStore, StoreError, User};
use self::xsuaa::{IdpClient, IdpError};
use crate::body::Body;
use crate::config::{AuthSettings, Route, XsuaaCredentials};
use crate::proxy::headers::cookie;

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
            _ => return None,
        })
    }

    /// Adds the headers this error needs to `response`.
    pub fn decorate(&self, response: &mut Response<Body>) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
    }
}

/// Where "now" comes from: the system clock, or tokio's clock (so paused-time tests can move it).
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    Tokio { start_unix: u64, origin: Instant },
}

impl Clock {
    /// A clock that follows tokio's time, starting at the current Unix time.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            start_unix: system_now(),
            origin: Instant::now(),
        }
    }

    /// Unix seconds.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => system_now(),
            Clock::Tokio { start_unix, origin } => start_unix + origin.elapsed().as_secs(),
        }
    }
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The outcome of the authenticate phase.
pub enum Outcome {
    /// A logged-in user.
    User { id: SessionId, session: Arc<Session> },
    /// The request is answered here (the redirect to the login).
    Respond(Response<Body>),
}

/// How the client reached us, for cookies and the redirect URI.
pub struct Origin<'a> {
    /// `http` or `https` as the connection says.
    pub scheme: &'a str,
}

/// Everything login needs, built once per binding.
pub struct Auth {
    pub credentials: XsuaaCredentials,
    pub settings: AuthSettings,
    pub idp: IdpClient,
    pub validator: Validator,
    pub store: Arc<dyn SessionStore>,
    pub clock: Clock,
    refresh_locks: Box<[tokio::sync::Mutex<()>]>,
    login_callback: String,
}

/// A session ends this long before its access token expires, so no backend ever gets a token that
/// expires in flight.
const EXPIRY_MARGIN_SECS: u64 = 30;

impl Auth {
    /// Builds the login machinery for `credentials`.
    pub fn new(
        credentials: XsuaaCredentials,
        settings: AuthSettings,
        login_callback: String,
        idp: IdpClient,
        store: Arc<dyn SessionStore>,
        clock: Clock,
    ) -> Auth {
        let validator = Validator::new(&credentials.clientid, &credentials.xsappname, &credentials.uaadomain);
        Auth {
            credentials,
            settings,
            idp,
            validator,
            store,
            clock,
            refresh_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            login_callback,
        }
    }

    /// True when `parts` is the login callback.
    pub fn is_callback(&self, parts: &Parts) -> bool {
        parts.method == http::Method::GET && parts.uri.path() == self.login_callback
    }

    fn flags<'a>(&'a self, headers: &HeaderMap, origin: &Origin<'_>) -> CookieFlags<'a> {
        let https = origin.scheme == "https"
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        CookieFlags {
            secure: self.settings.secure_cookie.unwrap_or(https),
            same_site: &self.settings.same_site,
        }
    }

    /// The session of this request, if any (refreshed when due), without starting a login.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot answer: the caller fails closed.
    pub async fn current_session(&self, headers: &HeaderMap) -> Result<Option<(SessionId, Arc<Session>)>, Error> {
        let Some(id) = cookie(headers, &self.settings.session_cookie).and_then(SessionId::parse) else {
            return Ok(None);
        };
        let Some(session) = self.store.load(&id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if now < session.refresh_at {
            return Ok(Some((id, session)));
        }
        match self.refresh(&id, &session).await {
            Ok(fresh) => Ok(Some((id, fresh))),
            Err(error) => {
                if now + EXPIRY_MARGIN_SECS < session.expires_at {
                    tracing::warn!(error = %error, "token refresh failed; using the current token while it lasts");
                    Ok(Some((id, session)))
                } else {
                    tracing::info!(error = %error, "token refresh failed and the token expired; session ended");
                    self.store.remove(&id).await?;
                    Ok(None)
                }
            }
        }
    }

    /// The authenticate phase for a protected route.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for API calls without a session, [`Error::Store`] when the store
    /// is down.
    pub async fn authenticate(&self, parts: &Parts, route: &Route, origin: &Origin<'_>) -> Result<Outcome, Error> {
        if let Some((id, session)) = self.current_session(&parts.headers).await? {
            return Ok(Outcome::User { id, session });
        }
        if !login::is_navigation(&parts.method, &parts.headers) {
            return Err(Error::Unauthenticated);
        }
        self.start_login(parts, route, origin).await.map(Outcome::Respond)
    }

    async fn start_login(&self, parts: &Parts, route: &Route, origin: &Origin<'_>) -> Result<Response<Body>, Error> {
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
        };
        let state = login::random_token();
        let url = login::authorize_url(
            &self.credentials.url,
            &self.credentials.clientid,
            &attempt,
            &state,
            route.identity_provider.as_deref(),
        );
        self.store.put_attempt(&state, attempt).await?;
        Ok(login::redirect_response(
            &url,
            self.settings.preserve_fragment,
            &binding_name,
            &binding,
            self.settings.login_attempt_ttl.as_secs(),
            &self.flags(&parts.headers, origin),
        ))
    }

    /// The exact redirect URI: the configured external URL, else the forwarded or direct origin.
    fn redirect_uri(&self, headers: &HeaderMap, origin: &Origin<'_>) -> Result<String, Error> {
        if let Some(url) = &self.settings.external_url {
            return Ok(format!("{url}{}", self.login_callback));
        }
        let scheme = match headers.get("x-forwarded-proto").map(|v| v.to_str()) {
            Some(Ok(proto)) => match proto
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "https" => "https",
                "http" => "http",
                _ => return Err(Error::BadForwardedHeaders("x-forwarded-proto must be http or https")),
            },
            Some(Err(_)) => return Err(Error::BadForwardedHeaders("x-forwarded-proto must be http or https")),
            None => origin.scheme,
        };
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|v| v.to_str().ok())
            .map(|h| h.split(',').next().unwrap_or("").trim())
            .ok_or(Error::BadForwardedHeaders("no Host header"))?;
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'));
        if !valid_host {
            return Err(Error::BadForwardedHeaders("invalid host"));
        }
        Ok(format!("{scheme}://{host}{}", self.login_callback))
    }

    /// The login callback: state checks, code exchange, token validation, a new session.
    ///
    /// # Errors
    /// One [`Error`] per failed check; never a redirect back to the login (no loops).
    pub async fn callback(&self, parts: &Parts, origin: &Origin<'_>) -> Result<Response<Body>, Error> {
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
        if !same_browser {
            return Err(Error::StateMismatch);
        }
        if let Some(error) = param("error") {
            let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return Err(Error::LoginRefused { error });
        }
        let code = param("code").filter(|c| !c.is_empty()).ok_or(Error::CodeMissing)?;
        let tokens = self
            .idp
            .exchange_code(code, &attempt.redirect_uri, &attempt.code_verifier)
            .await
            .map_err(Error::TokenExchange)?;
        let claims = self
            .validator
            .validate(&self.idp, &tokens.access_token, self.clock.now())
            .await?;
        let session = self.session_from(tokens.access_token, tokens.refresh_token, &claims, None);
        // A new id at every login: a planted cookie never becomes a logged-in session.
        if let Some(old) = cookie(&parts.headers, &self.settings.session_cookie).and_then(SessionId::parse) {
            let _ = self.store.remove(&old).await;
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
            &binding_name,
            &self.flags(&parts.headers, origin),
        ))
    }

    fn session_from(
        &self,
        access_token: String,
        refresh_token: Option<String>,
        claims: &Claims,
        previous: Option<&Session>,
    ) -> Session {
        let now = self.clock.now();
        let expires_at = claims.exp.unwrap_or(now);
        let lifetime = expires_at.saturating_sub(now);
        let window = self.settings.refresh_before_expiry.as_secs();
        let refresh_at = if refresh_token.is_none() || window == 0 {
            expires_at.saturating_sub(EXPIRY_MARGIN_SECS)
        } else if lifetime > window {
            expires_at - window
        } else {
            // Short-lived tokens refresh half-way, so a refresh failure still leaves time.
            now + lifetime / 2
        };
        let tenant = claims
            .ext_attr
            .as_ref()
            .and_then(|ext| ext.get("zdn"))
            .and_then(|v| v.as_str())
            .map(String::from);
        Session {
            user: User {
                name: claims
                    .user_name
                    .clone()
                    .or_else(|| claims.email.clone())
                    .unwrap_or_default(),
                email: claims.email.clone(),
                given_name: claims.given_name.clone(),
                family_name: claims.family_name.clone(),
                user_id: claims.user_id.clone(),
                origin: claims.origin.clone(),
                zone_id: claims.zid.clone(),
                tenant,
                scopes: claims.scope.as_ref().map(|s| s.to_vec()).unwrap_or_default(),
            },
            access_token,
            refresh_token,
            expires_at,
            refresh_at,
            csrf_secret: previous.and_then(|p| p.csrf_secret.clone()),
            backend_cookies: previous.map(|p| p.backend_cookies.clone()).unwrap_or_default(),
        }
    }

    /// Refreshes the tokens of a session; one refresh per session at a time, and whoever waited
    /// uses the refreshed session instead of refreshing again.
    async fn refresh(&self, id: &SessionId, session: &Arc<Session>) -> Result<Arc<Session>, Error> {
        let index = id.as_bytes()[0] as usize % self.refresh_locks.len();
        let _guard = self.refresh_locks[index].lock().await;
        if let Some(current) = self.store.load(id).await? {
            if current.refresh_at > self.clock.now() {
                return Ok(current);
            }
        }
        let refresh_token = session.refresh_token.as_deref().ok_or(Error::Unauthenticated)?;
        let started = Instant::now();
        let tokens = self.idp.refresh(refresh_token).await.map_err(Error::TokenExchange)?;
        let claims = self
            .validator
            .validate(&self.idp, &tokens.access_token, self.clock.now())
            .await?;
        let refresh_token = tokens.refresh_token.or_else(|| session.refresh_token.clone());
        let fresh = Arc::new(self.session_from(tokens.access_token, refresh_token, &claims, Some(session)));
        self.store.save(id, fresh.clone()).await?;
        tracing::debug!(millis = started.elapsed().as_millis() as u64, "token refreshed");
        Ok(fresh)
    }

    /// Idle timeout of sessions.
    pub fn idle_timeout(&self) -> Duration {
        self.settings.login_attempt_ttl
    }
}
