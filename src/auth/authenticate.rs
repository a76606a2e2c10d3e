//! The authenticate phase: the session of a request (refreshed when due), basic-authentication
//! routes, and the refresh of a session's tokens.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::request::Parts;
use tokio::time::Instant;

use super::{login, Auth, Error, Origin, Outcome, EXPIRY_MARGIN_SECS};
use crate::config::Route;
use crate::cookies::{cookie_bytes, CookieSpec};
use crate::idp::jwt::Claims;
use crate::idp::xsuaa::IdpError;
use crate::session::{Session, SessionId, StoreError, User};

impl Auth {
    /// The session of this request, if any (refreshed when due), without starting a login.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot answer: the caller fails closed.
    pub async fn current_session(
        &self,
        headers: &HeaderMap,
        tenant: Option<&str>,
    ) -> Result<Option<(SessionId, Arc<Session>)>, Error> {
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
        // Another tenant's session is no session on this tenant's host.
        if !self.session_fits(&session, tenant) {
            tracing::info!(
                session_tenant = session.user.tenant.as_deref().unwrap_or("-"),
                host_tenant = tenant.unwrap_or("-"),
                "session of another tenant presented; not used"
            );
            return Ok(None);
        }
        if let (Some(_), Some(tenant)) = (&self.tenancy, tenant) {
            if self.ended_with_tenant(&session, tenant).await? {
                tracing::info!(tenant, "session of an unsubscribed tenant ended");
                self.store.remove(&id).await?;
                return Ok(None);
            }
        }
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

    /// The authenticate phase for a protected route: a service-to-approuter token, else the
    /// session, else a login.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for API calls without a session, [`Error::Store`] when the store
    /// is down, [`Error::ServiceToken`] for a refused service-to-approuter token.
    pub async fn authenticate(
        &self,
        parts: &Parts,
        route: &Route,
        origin: &Origin<'_>,
        idp_hint: Option<&str>,
    ) -> Result<Outcome, Error> {
        // The token replaces any session for this request, as in the reference.
        if let Some(value) = parts.headers.get(super::service::HEADER) {
            let session = Box::pin(self.service_user(parts, value, origin)).await?;
            return Ok(Outcome::Caller(Arc::new(session)));
        }
        if let Some((id, session)) = self.current_session(&parts.headers, origin.tenant).await? {
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
        let claims = self.claims_of(&tokens).await?;
        let session = Arc::new(self.session_from(tokens.access_token, tokens.refresh_token, &claims, None));
        let id = SessionId::generate();
        self.store.save(&id, session.clone()).await?;
        let flags = self.flags(&parts.headers, origin);
        let cookie = CookieSpec {
            name: &self.settings.session_cookie,
            value: &id.to_cookie_value(),
            max_age: None,
            http_only: true,
            secure: flags.secure,
            same_site: flags.same_site,
            partitioned: flags.partitioned,
        }
        .header();
        Ok(Outcome::User {
            id,
            session,
            set_cookie: Some(cookie),
        })
    }

    pub(super) fn session_from(
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
            login_at: previous.map_or_else(|| self.clock.now_millis(), |p| p.login_at),
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
        let token_url = self.token_url(session.user.tenant.as_deref());
        let tokens = self
            .token_request(
                "refresh_token",
                self.idp.refresh_at(token_url.as_deref(), refresh_token),
            )
            .await
            .map_err(Error::TokenExchange)?;
        let claims = self.claims_of(&tokens).await?;
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
