//! Authentication: login at XSUAA (authorization-code flow with state and PKCE, code exchange over
//! mutual TLS), server-side sessions, token validation and refresh.

pub mod backend_cookies;
mod cookies;
pub mod csrf;
pub mod jwt;
pub mod login;
pub mod logout;
pub mod redis_store;
pub mod rotation;
pub mod session;
pub mod user_api;
pub mod xsuaa;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
use crate::metrics::{Metrics, Shed};
use crate::proxy::headers::{cookie, cookie_bytes};
use crate::server::limits::{self, RateLimiter};

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
    /// The user info could not be fetched for `/attributes`.
    #[error("user info: {0}")]
    UserInfo(#[source] IdpError),
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
            Error::UserInfo(_) => StatusCode::BAD_GATEWAY,
            Error::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            _ => {}
        }
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
    /// A logged-in user; `set_cookie` is a new session cookie to send (basic routes).
    User {
        id: SessionId,
        session: Arc<Session>,
        set_cookie: Option<HeaderValue>,
    },
    /// The request is answered here (the redirect to the login).
    Respond(Response<Body>),
}

/// How the client reached us, for cookies and the redirect URI.
pub struct Origin<'a> {
    /// `http` or `https` as the connection says.
    pub scheme: &'a str,
    /// The connection's peer, for the login rate limit (`None`: not limited).
    pub peer: Option<std::net::IpAddr>,
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
    /// Logins, token requests and key fetches are counted here.
    pub metrics: Arc<Metrics>,
    /// `LOGIN_RATE_LIMIT`: failed logins per client address, and how to find the client's address.
    login_limit: Option<(RateLimiter, usize)>,
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
        let validator = Validator::new(&credentials.clientid, &credentials.xsappname, &credentials.uaadomain)
            .with_zone(credentials.identityzoneid.clone());
        Auth {
            credentials,
            settings,
            idp,
            validator,
            store,
            clock,
            refresh_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            login_callback,
            metrics: Metrics::disabled(),
            login_limit: None,
        }
    }

    /// The client certificate as operations see it: details, reloads, last expiry check
    /// (see [`rotation::CredentialStatus`]).
    pub fn credential_status(&self) -> &Arc<rotation::CredentialStatus> {
        self.idp.status()
    }

    /// Seconds until the client certificate in use expires, negative once expired; `None` for
    /// secret credentials.
    pub fn certificate_expiry(&self) -> Option<i64> {
        self.idp.status().seconds_to_expiry(self.clock.now())
    }

    /// Records logins, token requests and key fetches into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Auth {
        self.validator.set_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// Allows `per_minute` failed login callbacks per client address (`None`: unlimited); an
    /// address past it gets 429 for its login starts and callbacks until its budget refills.
    /// Successful logins and login starts cost nothing. `forwarded_hops` trusted proxies in front
    /// say who the client is (see [`limits::client_addr`]).
    pub fn with_login_rate_limit(mut self, per_minute: Option<u32>, forwarded_hops: usize) -> Auth {
        self.login_limit = per_minute.map(|limit| (RateLimiter::new(limit), forwarded_hops));
        self
    }

    /// The client address the login limit counts against; `None` when there is no limit or no peer
    /// (a request built in-process).
    fn login_client(&self, parts: &Parts, origin: &Origin<'_>) -> Option<std::net::IpAddr> {
        let (Some((_, hops)), Some(peer)) = (&self.login_limit, origin.peer) else {
            return None;
        };
        Some(limits::client_addr(peer, &parts.headers, *hops))
    }

    /// Refuses a client that has failed too many logins lately; takes nothing.
    fn check_login_rate(&self, client: Option<std::net::IpAddr>) -> Result<(), Error> {
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

    /// One token endpoint request, counted by grant and outcome and timed.
    async fn token_request<T>(
        &self,
        grant: &'static str,
        request: impl std::future::Future<Output = Result<T, IdpError>>,
    ) -> Result<T, IdpError> {
        let started = Instant::now();
        let result = request.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(IdpError::Refused { .. }) => "refused",
            Err(_) => "error",
        };
        self.metrics.token_request(grant, outcome, started.elapsed());
        result
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
        let Some(id) = cookie_bytes(headers, &self.settings.session_cookie).and_then(SessionId::parse) else {
            return Ok(None);
        };
        // A store in this process answers without a boxed future.
        let loaded = match self.store.load_now(&id) {
            Some(loaded) => loaded?,
            None => self.store.load(&id).await?,
        };
        let Some(session) = loaded else {
            return Ok(None);
        };
        let now = self.clock.now();
        if now < session.refresh_at {
            return Ok(Some((id, session)));
        }
        match Box::pin(self.refresh(&id, &session)).await {
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
    pub async fn authenticate(
        &self,
        parts: &Parts,
        route: &Route,
        origin: &Origin<'_>,
        idp_hint: Option<&str>,
    ) -> Result<Outcome, Error> {
        if let Some((id, session)) = self.current_session(&parts.headers).await? {
            return Ok(Outcome::User {
                id,
                session,
                set_cookie: None,
            });
        }
        if route.authentication == crate::config::AuthenticationType::Basic {
            return Box::pin(self.basic_login(parts, origin)).await;
        }
        if !login::is_navigation(&parts.method, &parts.headers) {
            return Err(Error::Unauthenticated);
        }
        let idp = idp_hint.or(route.identity_provider.as_deref());
        Box::pin(self.start_login(parts, idp, origin))
            .await
            .map(Outcome::Respond)
    }

    /// `authenticationType: basic`: the password grant with the credentials of the `Authorization`
    /// header, then a session like any other login.
    async fn basic_login(&self, parts: &Parts, origin: &Origin<'_>) -> Result<Outcome, Error> {
        use base64::Engine;
        let credentials = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(Error::BasicChallenge)?;
        let (username, password) = credentials.split_once(':').ok_or(Error::BasicChallenge)?;
        let tokens = match self
            .token_request("password", self.idp.password(username, password))
            .await
        {
            Ok(tokens) => tokens,
            Err(IdpError::Refused { status, .. }) if status.is_client_error() => return Err(Error::BasicChallenge),
            Err(error) => return Err(Error::TokenExchange(error)),
        };
        let claims = self
            .validator
            .validate(&self.idp, &tokens.access_token, self.clock.now())
            .await?;
        let session = Arc::new(self.session_from(tokens.access_token, tokens.refresh_token, &claims, None));
        let id = SessionId::generate();
        self.store.save(&id, session.clone()).await?;
        let cookie = cookies::CookieSpec {
            name: &self.settings.session_cookie,
            value: &id.to_cookie_value(),
            max_age: None,
            http_only: true,
            secure: self.flags(&parts.headers, origin).secure,
            same_site: &self.settings.same_site,
        }
        .header();
        Ok(Outcome::User {
            id,
            session,
            set_cookie: Some(cookie),
        })
    }

    /// `scheme://host[:port]` of the router as the browser sees it.
    pub fn own_origin(&self, headers: &HeaderMap, origin: &Origin<'_>) -> Result<String, Error> {
        let uri = self.redirect_uri(headers, origin)?;
        Ok(uri
            .strip_suffix(self.login_callback.as_str())
            .unwrap_or(&uri)
            .to_string())
    }

    /// The CSRF phase for a protected route with `csrfProtection`.
    ///
    /// # Errors
    /// [`Error::Csrf`] (403) or [`Error::Store`] when a new token cannot be saved.
    pub async fn csrf(
        &self,
        parts: &Parts,
        id: &SessionId,
        session: &Arc<Session>,
        origin: &Origin<'_>,
    ) -> Result<Option<String>, Error> {
        let decision = self.csrf_decision(parts, session, origin)?;
        self.settle_csrf(id, session, decision).await
    }

    /// The CSRF check without the store: [`csrf::Decision::Pass`] for the common read, which then
    /// needs nothing else.
    ///
    /// # Errors
    /// [`Error::Csrf`] (403).
    pub fn csrf_decision(
        &self,
        parts: &Parts,
        session: &Session,
        origin: &Origin<'_>,
    ) -> Result<csrf::Decision, Error> {
        let state_changing = csrf::is_state_changing(&parts.method, &parts.headers);
        // The origin is only compared on state-changing requests; reads skip building it.
        let own = if state_changing {
            self.own_origin(&parts.headers, origin).ok()
        } else {
            None
        };
        Ok(csrf::check_request(
            state_changing,
            &parts.headers,
            session,
            own.as_deref(),
            self.settings.csrf_origin_check,
        )?)
    }

    /// The token a decision hands out, saved in the session first when it is new.
    ///
    /// # Errors
    /// [`Error::Store`] when a new token cannot be saved.
    pub async fn settle_csrf(
        &self,
        id: &SessionId,
        session: &Arc<Session>,
        decision: csrf::Decision,
    ) -> Result<Option<String>, Error> {
        match decision {
            csrf::Decision::Pass => Ok(None),
            csrf::Decision::Fetch { token, new } => {
                if new {
                    let mut updated = Session::clone(session);
                    updated.csrf_secret = Some(token.clone());
                    // `update`, not `save`: a logout meanwhile must not be undone.
                    self.store.update(id, Arc::new(updated)).await?;
                }
                Ok(Some(token))
            }
        }
    }

    /// Ends the session of this request (if any) and answers as the reference does.
    ///
    /// # Errors
    /// [`Error::LogoutMethod`], [`Error::Csrf`], [`Error::Store`].
    pub async fn logout(
        &self,
        parts: &Parts,
        origin: &Origin<'_>,
        config: &Arc<crate::config::Config>,
        upstream: &crate::proxy::Upstream,
    ) -> Result<Response<Body>, Error> {
        let Some(logout_config) = &config.logout else {
            return Err(Error::LogoutMethod);
        };
        let post = logout_config.method == crate::config::LogoutMethod::Post;
        let current = match cookie_bytes(&parts.headers, &self.settings.session_cookie).and_then(SessionId::parse) {
            Some(id) => self.store.load(&id).await?.map(|session| (id, session)),
            None => None,
        };
        let fetch = parts
            .headers
            .get(crate::auth::csrf::X_CSRF_TOKEN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("fetch"));
        match (&parts.method, post) {
            (&http::Method::GET, false) => {}
            (&http::Method::GET, true) if fetch => {
                // The token fetch for a POST logout: 200, empty, with the session's token.
                let mut response = Response::new(crate::body::empty());
                if let Some((id, session)) = &current {
                    if let Some(token) = self.csrf(parts, id, session, origin).await? {
                        if let Ok(value) = HeaderValue::from_str(&token) {
                            response.headers_mut().insert(crate::auth::csrf::X_CSRF_TOKEN, value);
                        }
                    }
                }
                return Ok(response);
            }
            (&http::Method::POST, true) => {
                if logout_config.csrf_protection {
                    if let Some((id, session)) = &current {
                        self.csrf(parts, id, session, origin).await?;
                    }
                }
            }
            _ => return Err(Error::LogoutMethod),
        }
        if let Some((id, _)) = &current {
            if let Some(session) = self.store.remove(id).await? {
                logout::spawn_backend_logout(config.clone(), upstream.clone(), session);
            }
            tracing::info!("logout: session ended");
        }
        let flags = self.flags(&parts.headers, origin);
        let deletion = cookies::deletion(&self.settings.session_cookie, flags.secure, flags.same_site);
        let skip = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .any(|(key, value)| key == "skip-redirect" && (value.is_empty() || value == "true"));
        if skip {
            return Ok(logout::respond(None, post, deletion));
        }
        let own = self.own_origin(&parts.headers, origin)?;
        let target = logout::idp_logout_url(
            &self.credentials.url,
            &self.credentials.clientid,
            logout_config.page.as_deref(),
            &own,
            parts.uri.query(),
        );
        Ok(logout::respond(Some(&target), post, deletion))
    }

    /// Answers a user API request for the logged-in `session`.
    ///
    /// # Errors
    /// [`Error::UnknownUserApiResource`] or [`Error::UserInfo`].
    pub async fn user_api(&self, url: &str, session: &Session) -> Result<Response<Body>, Error> {
        match user_api::resource(url) {
            Some(user_api::Resource::CurrentUser) => Ok(user_api::respond(&user_api::current_user(session))),
            Some(user_api::Resource::Attributes) => {
                let userinfo_url = format!("{}/userinfo", self.credentials.url);
                let info = self
                    .idp
                    .get_json(&userinfo_url, Some(session.access_token.as_str()))
                    .await
                    .map_err(Error::UserInfo)?;
                Ok(user_api::respond(&user_api::attributes(session, info)))
            }
            None => Err(Error::UnknownUserApiResource),
        }
    }

    async fn start_login(
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
        };
        let state = login::random_token();
        let url = login::authorize_url(&self.credentials.url, &self.credentials.clientid, &attempt, &state, idp);
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

    /// The exact redirect URI: the configured external URL, else the forwarded or direct origin.
    fn redirect_uri(&self, headers: &HeaderMap, origin: &Origin<'_>) -> Result<String, Error> {
        if let Some(url) = &self.settings.external_url {
            return Ok(format!("{url}{}", self.login_callback));
        }
        let trust_forwarded = self.settings.trust_forwarded_headers;
        let own =
            crate::origin::own_origin(headers, origin.scheme, None, trust_forwarded).map_err(|error| match error {
                crate::origin::OwnOriginError::ForwardedProto => {
                    Error::BadForwardedHeaders("x-forwarded-proto must be http or https")
                }
                crate::origin::OwnOriginError::Host => Error::BadForwardedHeaders("invalid host"),
            })?;
        Ok(format!("{own}{}", self.login_callback))
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
        if !same_browser {
            return Err(Error::StateMismatch);
        }
        if let Some(error) = param("error") {
            let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return Err(Error::LoginRefused { error });
        }
        let code = param("code").filter(|c| !c.is_empty()).ok_or(Error::CodeMissing)?;
        let exchange = self
            .idp
            .exchange_code(code, &attempt.redirect_uri, &attempt.code_verifier);
        let tokens = self
            .token_request("authorization_code", exchange)
            .await
            .map_err(Error::TokenExchange)?;
        let claims = self
            .validator
            .validate(&self.idp, &tokens.access_token, self.clock.now())
            .await?;
        let session = self.session_from(tokens.access_token, tokens.refresh_token, &claims, None);
        // A new id at every login: a planted cookie never becomes a logged-in session.
        if let Some(old) = cookie_bytes(&parts.headers, &self.settings.session_cookie).and_then(SessionId::parse) {
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
            access_token: access_token.into(),
            refresh_token,
            expires_at,
            refresh_at,
            csrf_secret: previous.and_then(|p| p.csrf_secret.clone()),
            backend_cookies: previous.map(|p| p.backend_cookies.clone()).unwrap_or_default(),
        }
    }

    /// Refreshes the tokens of a session; one refresh per session at a time, in this process (a
    /// mutex) and across the instances sharing the store (the store's lock). Whoever waited uses
    /// the refreshed session instead of refreshing again.
    async fn refresh(&self, id: &SessionId, _seen: &Arc<Session>) -> Result<Arc<Session>, Error> {
        if self.settings.refresh_before_expiry.is_zero() {
            // `JWT_REFRESH=0` turns refreshing off: the session ends with its token.
            return Err(Error::Unauthenticated);
        }
        let index = id.as_bytes()[0] as usize % self.refresh_locks.len();
        let _guard = self.refresh_locks[index].lock().await;
        // While another instance holds the lock, poll the session until that refresh shows up. The
        // IdP timeout bounds that refresh; a holder that died loses its lease and the lock is taken
        // over here. The session is re-read after taking the lock: the holder may just have finished.
        let deadline = Instant::now() + self.settings.idp_timeout + std::time::Duration::from_secs(2);
        let mut pause = std::time::Duration::from_millis(10);
        let mut fleet_lock = None;
        let session = loop {
            let current = self.store.load(id).await?.ok_or(Error::Unauthenticated)?;
            if current.refresh_at > self.clock.now() {
                return Ok(current);
            }
            if fleet_lock.is_some() {
                break current;
            }
            match self.store.lock_refresh(id).await? {
                Some(lock) => fleet_lock = Some(lock),
                None if Instant::now() >= deadline => {
                    return Err(Error::Store(StoreError::Unavailable(
                        "token refresh by another instance did not finish in time".into(),
                    )))
                }
                None => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
            }
        };
        let session = &session;
        let refresh_token = session.refresh_token.as_deref().ok_or(Error::Unauthenticated)?;
        let started = Instant::now();
        let tokens = self
            .token_request("refresh_token", self.idp.refresh(refresh_token))
            .await
            .map_err(Error::TokenExchange)?;
        let claims = self
            .validator
            .validate(&self.idp, &tokens.access_token, self.clock.now())
            .await?;
        let refresh_token = tokens.refresh_token.or_else(|| session.refresh_token.clone());
        let fresh = Arc::new(self.session_from(tokens.access_token, refresh_token, &claims, Some(session)));
        if !self.store.update(id, fresh.clone()).await? {
            // Logged out (or expired) while the refresh ran: it stays ended.
            return Err(Error::Unauthenticated);
        }
        tracing::debug!(millis = started.elapsed().as_millis() as u64, "token refreshed");
        Ok(fresh)
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
