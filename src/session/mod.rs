//! Session storage: what the server keeps for a logged-in browser, the [`SessionStore`] trait,
//! the in-memory store (the default) and the Redis store. The browser only ever holds the opaque
//! session id.

mod memory;
pub mod redis_store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryStore;
use crate::util::random_bytes;

/// A session id: 256 random bits, new at every login. Its text form (base64url) is the cookie value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh random id.
    pub fn generate() -> SessionId {
        SessionId(random_bytes::<32>())
    }

    /// Parses a cookie value; anything but 43 base64url characters of 32 bytes is not an id.
    pub fn parse(text: impl AsRef<[u8]>) -> Option<SessionId> {
        let text = text.as_ref();
        if text.len() != 43 {
            return None;
        }
        let mut bytes = [0u8; 33];
        let length = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(text, &mut bytes)
            .ok()?;
        let id: [u8; 32] = bytes[..length].try_into().ok()?;
        Some(SessionId(id))
    }

    /// The cookie value.
    pub fn to_cookie_value(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The raw bytes (stores hash them before use as a key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SessionId {
    // The id is a bearer credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// The user as the access token describes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub name: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub user_id: Option<String>,
    pub origin: Option<String>,
    pub zone_id: Option<String>,
    /// Subdomain of the tenant (`ext_attr.zdn`).
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
}

/// What the server keeps per logged-in browser.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub user: User,
    pub access_token: AccessToken,
    pub refresh_token: Option<String>,
    /// `exp` of the access token (Unix seconds).
    pub expires_at: u64,
    /// When to refresh (Unix seconds).
    pub refresh_at: u64,
    /// Secret behind this session's CSRF token.
    pub csrf_secret: Option<String>,
    /// Backend session cookies kept server-side: (destination, name, value).
    pub backend_cookies: Vec<(String, String, String)>,
    /// When the user logged in (Unix milliseconds; kept across refreshes): an unsubscription ends
    /// the sessions of its tenant logged in before it. 0 for sessions stored before it was kept.
    #[serde(default)]
    pub login_at: u64,
}

/// An access token, held as its `Authorization: Bearer …` header value: built and validated once
/// per token, cloned (a reference count) per forwarded request, and stored only once.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(http::HeaderValue);

const BEARER_PREFIX: &str = "Bearer ";

impl AccessToken {
    /// The token; `None` when it holds characters no header may carry.
    pub fn new(token: &str) -> Option<AccessToken> {
        http::HeaderValue::from_str(&format!("{BEARER_PREFIX}{token}"))
            .ok()
            .map(AccessToken)
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> &http::HeaderValue {
        &self.0
    }

    /// The token itself.
    pub fn as_str(&self) -> &str {
        self.0
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix(BEARER_PREFIX))
            .unwrap_or("")
    }
}

impl From<&str> for AccessToken {
    fn from(token: &str) -> AccessToken {
        AccessToken::new(token).unwrap_or_else(|| AccessToken(http::HeaderValue::from_static(BEARER_PREFIX)))
    }
}

impl From<String> for AccessToken {
    fn from(token: String) -> AccessToken {
        AccessToken::from(token.as_str())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

impl Serialize for AccessToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AccessToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<AccessToken, D::Error> {
        let token = String::deserialize(deserializer)?;
        AccessToken::new(&token).ok_or_else(|| serde::de::Error::custom("access token is not a valid header value"))
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user.name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// One login in progress: created at the redirect to the identity provider, consumed once at the
/// callback. Several may exist per browser (several tabs).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The value of the browser-binding cookie that must come back with the callback.
    pub browser_binding: String,
    /// PKCE verifier.
    pub code_verifier: String,
    /// The exact `redirect_uri` sent in the authorize request.
    pub redirect_uri: String,
    /// Where to go after login: a same-origin relative path.
    pub return_to: String,
    /// The tenant whose host started the login (multitenancy): the callback must come back there.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// Why the session store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future, so stores can be chosen at run time.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The right to refresh one session's tokens, held by one instance at a time; released on drop.
pub struct RefreshLock {
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl RefreshLock {
    /// A lock that only this process needs: the caller already serialises refreshes in-process.
    pub fn local() -> RefreshLock {
        RefreshLock { _held: None }
    }

    /// A lock whose release is whatever dropping `held` does (a store's lease keeper, say).
    pub fn held(held: impl std::any::Any + Send + Sync) -> RefreshLock {
        RefreshLock {
            _held: Some(Box::new(held)),
        }
    }
}

impl std::fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshLock")
    }
}

/// Where sessions and login attempts live. The idle timeout slides on every `load`.
pub trait SessionStore: Send + Sync + 'static {
    /// The session, if it exists and has not been idle too long; counts as use.
    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>>;
    /// [`SessionStore::load`] answered at once, by a store in this process (no future to box);
    /// `None`: the store has to be asked through `load`.
    fn load_now(&self, id: &SessionId) -> Option<Result<Option<Arc<Session>>, StoreError>> {
        let _ = id;
        None
    }
    /// Stores (or replaces) a session.
    fn save<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, ()>;
    /// Removes a session and returns it.
    fn remove<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>>;
    /// Replaces a session only while it still exists, so that a refresh finishing after a logout
    /// (on any instance) does not bring the session back; false when it was gone.
    fn update<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, bool> {
        Box::pin(async move { self.save(id, session).await.map(|()| true) })
    }
    /// Stores a login attempt under its `state`.
    fn put_attempt<'a>(&'a self, state: &'a str, attempt: LoginAttempt) -> StoreFuture<'a, ()>;
    /// Takes a login attempt out: a second take of the same state finds nothing.
    fn take_attempt<'a>(&'a self, state: &'a str) -> StoreFuture<'a, Option<LoginAttempt>>;
    /// Like [`SessionStore::load`] but without counting as use: an idle websocket checks its
    /// session this way, so that it does not keep the session alive. Stores that cannot look
    /// without touching fall back to `load`.
    fn peek<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        self.load(id)
    }
    /// Tries to become the one refresher of session `id` across every process sharing this store;
    /// `None` while another holds it. A store private to one process needs no more than the
    /// caller's in-process lock, hence the default.
    fn lock_refresh<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<RefreshLock>> {
        let _ = id;
        ready(Ok(Some(RefreshLock::local())))
    }
    /// A cheap round trip to prove the store answers (readiness). A store in this process always
    /// does, hence the default; a remote store overrides it.
    fn ping(&self) -> StoreFuture<'_, ()> {
        ready(Ok(()))
    }
    /// The number of sessions this process holds, when the store can tell cheaply (metrics).
    fn session_count(&self) -> Option<usize> {
        None
    }
    /// The number of login attempts this process holds, when the store keeps them in it.
    fn attempt_count(&self) -> Option<usize> {
        None
    }
    /// Ends every session of `tenant` logged in before `at` (Unix milliseconds): the tenant
    /// unsubscribed. Remembered for the idle timeout, after which those sessions are gone anyway;
    /// every process sharing the store sees it.
    fn end_tenant<'a>(&'a self, tenant: &'a str, at: u64) -> StoreFuture<'a, ()>;
    /// When `tenant`'s sessions were last ended ([`SessionStore::end_tenant`]), if lately.
    fn tenant_ended_at<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Option<u64>>;
}

/// An answer that is already there, as a store future.
fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

#[cfg(test)]
mod proptests;
