//! The login and authorization flow: the authenticate phase (session cookie, token refresh,
//! basic routes), the login at XSUAA (authorize redirect with state and PKCE, callback), logout,
//! CSRF, scopes, the user API and backend session cookies. Tokens come from [`crate::idp`],
//! sessions live in [`crate::session`].

mod authenticate;
pub mod backend_cookies;
mod callback;
pub mod csrf;
mod error;
pub mod login;
pub mod logout;
pub mod service;
pub mod user_api;

use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue};
use http::request::Parts;
use http::Response;
use tokio::time::Instant;

pub use self::error::Error;
use crate::body::Body;
use crate::config::{AuthSettings, XsuaaCredentials};
use crate::cookies::CookieFlags;
use crate::idp::jwt::{Claims, Validator};
use crate::idp::rotation::{self, CredentialStatus};
use crate::idp::xsuaa::{IdpClient, IdpError, TokenResponse};
use crate::idp::Clock;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::session::{Session, SessionId, SessionStore};

/// The outcome of the authenticate phase.
pub enum Outcome {
    /// A logged-in user; `set_cookie` is a new session cookie to send (basic routes).
    User {
        id: SessionId,
        session: Arc<Session>,
        set_cookie: Option<HeaderValue>,
    },
    /// A service-to-approuter caller ([`service::HEADER`]): the token's user for this request
    /// only, with no session behind it.
    Caller(Arc<Session>),
    /// The request is answered here (the redirect to the login).
    Respond(Response<Body>),
}

/// How the client reached us, for cookies and the redirect URI.
pub struct Origin<'a> {
    /// `http` or `https` as the connection says.
    pub scheme: &'a str,
    /// The connection's peer, for the login rate limit (`None`: not limited).
    pub peer: Option<std::net::IpAddr>,
    /// The tenant the request's host names (`TENANT_HOST_PATTERN`); `None` without
    /// multitenancy.
    pub tenant: Option<&'a str>,
}

/// Everything login needs, built once per binding.
pub struct Auth {
    pub credentials: XsuaaCredentials,
    pub settings: AuthSettings,
    pub idp: Arc<IdpClient>,
    pub validator: Validator,
    pub store: Arc<dyn SessionStore>,
    pub clock: Clock,
    refresh_locks: Box<[tokio::sync::Mutex<()>]>,
    login_callback: String,
    /// Logins, token requests and key fetches are counted here.
    pub metrics: Arc<Metrics>,
    /// `LOGIN_RATE_LIMIT`: failed logins per client address, and how to find the client's address.
    login_limit: Option<(RateLimiter, usize)>,
    /// `TENANT_HOST_PATTERN`: each tenant logs in at its own XSUAA subdomain.
    tenancy: Option<crate::config::tenancy::Tenancy>,
    /// When each tenant's sessions were last ended (unsubscribed), as the store said lately:
    /// asked again after [`ENDED_FRESH`].
    ended: std::sync::Mutex<std::collections::HashMap<Box<str>, TenantEnd>>,
    /// Key fetches for zones first named by service-to-approuter tokens, bounded per minute.
    new_zones: crate::limits::Budget,
    /// Tokens of `Basic` service-to-approuter callers, until shortly before they expire.
    password_tokens: service::PasswordTokens,
}

/// When a tenant's sessions were last ended (Unix milliseconds, if ever lately), and when the
/// store was asked.
type TenantEnd = (Option<u64>, Instant);

/// How long what the store said about a tenant's end is taken as true: other instances see an
/// unsubscription within this time.
const ENDED_FRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// Tenants remembered at most in [`Auth::ended`].
const ENDED_CAPACITY: usize = 10_000;

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
        let validator = Validator::new(&credentials.clientid, &credentials.xsappname, &credentials.keys_host())
            .with_zone(credentials.identityzoneid.clone());
        Auth {
            credentials,
            settings,
            idp: Arc::new(idp.with_clock(clock)),
            validator,
            store,
            clock,
            refresh_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            login_callback,
            metrics: Metrics::disabled(),
            login_limit: None,
            tenancy: None,
            ended: std::sync::Mutex::new(std::collections::HashMap::new()),
            new_zones: crate::limits::Budget::new(service::NEW_ZONES_PER_MINUTE),
            password_tokens: service::PasswordTokens::new(),
        }
    }

    /// Ends the sessions of `tenant` logged in until now, in every instance sharing the store (the
    /// tenant unsubscribed).
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot answer.
    pub async fn end_tenant(&self, tenant: &str) -> Result<(), Error> {
        let now = self.clock.now_millis();
        self.store.end_tenant(tenant, now).await?;
        self.remember_end(tenant, Some(now));
        tracing::info!(tenant, "sessions of the unsubscribed tenant ended");
        Ok(())
    }

    /// Whether `session` was ended with its tenant's subscription: the store is asked at most
    /// every [`ENDED_FRESH`] per tenant.
    async fn ended_with_tenant(&self, session: &Session, tenant: &str) -> Result<bool, Error> {
        let cached = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .filter(|(_, checked)| checked.elapsed() < ENDED_FRESH)
            .map(|(at, _)| *at);
        let at = match cached {
            Some(at) => at,
            None => {
                let at = self.store.tenant_ended_at(tenant).await?;
                self.remember_end(tenant, at);
                at
            }
        };
        // A login in the very millisecond of the unsubscription stays; any before it ends.
        Ok(at.is_some_and(|at| session.login_at < at))
    }

    fn remember_end(&self, tenant: &str, at: Option<u64>) {
        let mut ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ended.len() >= ENDED_CAPACITY {
            ended.retain(|_, (_, checked)| checked.elapsed() < ENDED_FRESH);
        }
        if ended.len() < ENDED_CAPACITY {
            ended.insert(Box::from(tenant), (at, Instant::now()));
        }
    }

    /// Logs each tenant in at its own XSUAA subdomain. Tokens of any zone are then accepted by
    /// the validator, but a session only on the host of the tenant whose login made it: the
    /// tokens it validates are the ones the router fetched at that tenant's endpoint.
    pub fn with_tenancy(mut self, tenancy: Option<crate::config::tenancy::Tenancy>) -> Auth {
        if tenancy.is_some() {
            self.validator = Validator::new(
                &self.credentials.clientid,
                &self.credentials.xsappname,
                &self.credentials.keys_host(),
            )
            .with_zone(None);
            self.validator.set_metrics(self.metrics.clone());
        }
        self.tenancy = tenancy;
        self
    }

    /// The XSUAA URL for `tenant` (authorize, logout, userinfo): the tenant's subdomain with
    /// multitenancy, else the binding's `url`.
    fn idp_url(&self, tenant: Option<&str>) -> String {
        match (&self.tenancy, tenant) {
            (Some(tenancy), Some(tenant)) => tenancy.url(tenant),
            _ => self.credentials.url.clone(),
        }
    }

    /// The token endpoint for `tenant` when it is not the binding's own.
    fn token_url(&self, tenant: Option<&str>) -> Option<String> {
        match (&self.tenancy, tenant) {
            (Some(tenancy), Some(tenant)) => Some(tenancy.token_url(tenant)),
            _ => None,
        }
    }

    /// Whether `session` may serve a request of `tenant`: always without multitenancy, else only
    /// on the host of the tenant it was made for.
    pub fn session_fits(&self, session: &Session, tenant: Option<&str>) -> bool {
        self.tenancy.is_none() || (tenant.is_some() && session.user.tenant.as_deref() == tenant)
    }

    /// The client certificate as operations see it: details, reloads, last expiry check
    /// (see [`CredentialStatus`]).
    pub fn credential_status(&self) -> &Arc<CredentialStatus> {
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
    /// say who the client is (see [`crate::limits::client_addr`]).
    pub fn with_login_rate_limit(mut self, per_minute: Option<u32>, forwarded_hops: usize) -> Auth {
        self.login_limit = per_minute.map(|limit| (RateLimiter::new(limit), forwarded_hops));
        self
    }

    /// Starts the tasks that keep the client certificate current (expiry log, binding watcher;
    /// see [`rotation::start`]). Must run inside a tokio runtime; they end with this `Auth`.
    pub fn start_rotation(&self) {
        rotation::start(
            &self.idp,
            self.clock,
            self.settings.certificate_expiry_warning,
            self.settings.binding_poll_interval,
        );
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

    /// The validated claims of a token response's access token: every token the router keeps has
    /// passed here.
    async fn claims_of(&self, tokens: &TokenResponse) -> Result<Claims, Error> {
        Ok(self
            .validator
            .validate(&self.idp, &tokens.access_token, self.clock.now())
            .await?)
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
            partitioned: self.settings.partitioned.applies(headers),
        }
    }

    /// `scheme://host[:port]` of the router as the browser sees it.
    pub fn own_origin(&self, headers: &HeaderMap, origin: &Origin<'_>) -> Result<String, Error> {
        let uri = self.redirect_uri(headers, origin)?;
        Ok(uri
            .strip_suffix(self.login_callback.as_str())
            .unwrap_or(&uri)
            .to_string())
    }

    /// The exact redirect URI: the configured external URL, else the forwarded or direct origin.
    fn redirect_uri(&self, headers: &HeaderMap, origin: &Origin<'_>) -> Result<String, Error> {
        if let Some(url) = &self.settings.external_url {
            return Ok(format!("{url}{}", self.login_callback));
        }
        let trust_forwarded = self.settings.trust_forwarded_headers;
        let custom_host = self.settings.external_reverse_proxy;
        let own =
            crate::origin::own_origin(headers, origin.scheme, None, trust_forwarded, custom_host).map_err(|error| {
                match error {
                    crate::origin::OwnOriginError::ForwardedProto => {
                        Error::BadForwardedHeaders("x-forwarded-proto must be http or https")
                    }
                    crate::origin::OwnOriginError::Host => Error::BadForwardedHeaders("invalid host"),
                }
            })?;
        Ok(format!("{own}{}", self.login_callback))
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

    /// Answers a user API request for the logged-in `session`. `/attributes` asks the identity
    /// provider's userinfo endpoint for the user's attributes; when it cannot answer, the basic
    /// fields are answered alone, as the reference does.
    ///
    /// # Errors
    /// [`Error::UnknownUserApiResource`].
    pub async fn user_api(&self, url: &str, session: &Session) -> Result<Response<Body>, Error> {
        match user_api::resource(url) {
            Some(user_api::Resource::CurrentUser) => Ok(user_api::respond(&user_api::current_user(session))),
            Some(user_api::Resource::Attributes) => {
                let userinfo_url = format!("{}/userinfo", self.idp_url(session.user.tenant.as_deref()));
                let info = match self
                    .idp
                    .get_json(&userinfo_url, Some(session.access_token.as_str()))
                    .await
                {
                    Ok(info) => Some(info),
                    Err(error) => {
                        tracing::info!(error = %error, "user info unavailable; answering the basic fields");
                        None
                    }
                };
                Ok(user_api::respond(&user_api::attributes(session, info.as_ref())))
            }
            None => Err(Error::UnknownUserApiResource),
        }
    }
}
