//! Sessions: what the server keeps for a logged-in browser, the [`SessionStore`] trait, and the
//! in-memory store (the default). The browser only ever holds the opaque session id.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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
}

const SHARDS: usize = 32;

/// Session ids are 256 uniformly random bits, so eight of them are already a perfect hash; this
/// saves SipHash over 32 bytes on every lookup. (Ids only come from [`SessionId::generate`];
/// a client cannot choose one that exists.)
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
}

type IdHash = std::hash::BuildHasherDefault<IdHasher>;
/// Bounds memory under a flood of login starts, by count and by size (a return path may be long);
/// past either the oldest attempts are dropped, so a flood can only push out attempts older than
/// itself instead of refusing every new login. Each attempt lives `login_ttl` at most.
const MAX_ATTEMPTS: usize = 200_000;
const MAX_ATTEMPT_BYTES: usize = 64 << 20;
/// What an attempt costs beside its strings: the strings' headers, the map slot, the queue entry.
const ATTEMPT_OVERHEAD: usize = 256;

/// Pending login attempts by `state`, and their order of arrival, which is also the order of their
/// deadlines (one TTL for all): the oldest is always at the front of `order`.
struct Attempts {
    by_state: HashMap<Arc<str>, Pending>,
    /// Every state stored and not yet reached the front; a state taken since is skipped there.
    order: VecDeque<Arc<str>>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

struct Pending {
    attempt: LoginAttempt,
    deadline: u64,
    size: usize,
}

impl Attempts {
    fn new(max_count: usize, max_bytes: usize) -> Attempts {
        Attempts {
            by_state: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_count: max_count.max(1),
            max_bytes,
        }
    }

    fn insert(&mut self, state: &str, attempt: LoginAttempt, deadline: u64, now: u64) {
        let size = ATTEMPT_OVERHEAD
            + state.len()
            + attempt.browser_binding.len()
            + attempt.code_verifier.len()
            + attempt.redirect_uri.len()
            + attempt.return_to.len();
        self.drop_expired(now);
        while !self.by_state.is_empty() && (self.by_state.len() >= self.max_count || self.bytes + size > self.max_bytes)
        {
            if !self.pop_oldest() {
                break;
            }
        }
        // Taken states wait in `order` until they reach the front; compact when they pile up.
        if self.order.len() >= 2 * self.max_count {
            let by_state = &self.by_state;
            self.order.retain(|state| {
                by_state
                    .get_key_value(&**state)
                    .is_some_and(|(key, _)| Arc::ptr_eq(key, state))
            });
        }
        // Removed first, so that the map's key is the one queued below (an insert keeps the old key).
        self.take(state);
        let state: Arc<str> = Arc::from(state);
        self.by_state.insert(
            state.clone(),
            Pending {
                attempt,
                deadline,
                size,
            },
        );
        self.bytes += size;
        self.order.push_back(state);
    }

    fn take(&mut self, state: &str) -> Option<Pending> {
        let pending = self.by_state.remove(state)?;
        self.bytes -= pending.size;
        Some(pending)
    }

    /// Removes the front of `order` and the attempt it names, if that one is still held; false
    /// when `order` is empty.
    fn pop_oldest(&mut self) -> bool {
        let Some(state) = self.order.pop_front() else {
            return false;
        };
        // The same text may have been stored again after a take: only the entry this queue slot
        // was made for goes.
        let current = self
            .by_state
            .get_key_value(&*state)
            .is_some_and(|(key, _)| Arc::ptr_eq(key, &state));
        if current {
            self.take(&state);
        }
        true
    }

    fn drop_expired(&mut self, now: u64) {
        while let Some(state) = self.order.front() {
            let deadline = match self.by_state.get_key_value(&**state) {
                Some((key, pending)) if Arc::ptr_eq(key, state) => pending.deadline,
                _ => 0,
            };
            if deadline >= now {
                break;
            }
            self.pop_oldest();
        }
    }
}

struct Entry {
    session: Arc<Session>,
    /// Milliseconds since the store's origin; atomic so `load` needs no write lock on the map.
    last_access: AtomicU64,
}

/// The default store: sharded maps in this process. Expiry needs no timer per session: `load`
/// checks the idle time, and [`MemoryStore::sweep`] drops what nobody asked for.
pub struct MemoryStore {
    shards: Box<[Mutex<HashMap<SessionId, Entry, IdHash>>]>,
    attempts: Mutex<Attempts>,
    origin: Instant,
    idle_ms: u64,
    login_ttl_ms: u64,
}

impl MemoryStore {
    /// A store whose sessions end after `idle` without use and whose login attempts last `login_ttl`.
    pub fn new(idle: Duration, login_ttl: Duration) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
            attempts: Mutex::new(Attempts::new(MAX_ATTEMPTS, MAX_ATTEMPT_BYTES)),
            origin: Instant::now(),
            idle_ms: idle.as_millis() as u64,
            login_ttl_ms: login_ttl.as_millis() as u64,
        }
    }

    /// Holds at most `count` login attempts and about `bytes` of them; past either the oldest go.
    pub fn with_attempt_limits(self, count: usize, bytes: usize) -> MemoryStore {
        MemoryStore {
            attempts: Mutex::new(Attempts::new(count, bytes)),
            ..self
        }
    }

    /// Number of login attempts held (including expired ones not yet swept), and their
    /// approximate size in bytes.
    pub fn attempts_held(&self) -> (usize, usize) {
        self.attempts
            .lock()
            .map(|attempts| (attempts.by_state.len(), attempts.bytes))
            .unwrap_or((0, 0))
    }

    fn load_sync(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let now = self.now_ms();
        self.shard(id).lock().map_err(|_| poisoned()).map(|mut map| {
            let entry = map.get(id)?;
            let last = entry.last_access.load(Ordering::Relaxed);
            if now.saturating_sub(last) > self.idle_ms {
                map.remove(id);
                return None;
            }
            // Written only when the millisecond changed: a session busy on several threads does
            // not bounce the entry between their caches on every request.
            if last != now {
                entry.last_access.store(now, Ordering::Relaxed);
            }
            Some(entry.session.clone())
        })
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn shard(&self, id: &SessionId) -> &Mutex<HashMap<SessionId, Entry, IdHash>> {
        // The last byte picks the shard, the first ones (in `IdHasher`) the bucket.
        &self.shards[id.0[31] as usize % SHARDS]
    }

    /// Number of sessions held (including idle ones not yet swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops idle sessions and stale login attempts; returns the sessions that ended, so their
    /// backends can be told.
    pub fn sweep(&self) -> Vec<Arc<Session>> {
        let now = self.now_ms();
        let mut ended = Vec::new();
        for shard in self.shards.iter() {
            let Ok(mut map) = shard.lock() else { continue };
            map.retain(|_, entry| {
                let alive = now.saturating_sub(entry.last_access.load(Ordering::Relaxed)) <= self.idle_ms;
                if !alive {
                    ended.push(entry.session.clone());
                }
                alive
            });
        }
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.drop_expired(now);
        }
        ended
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".into())
}

impl SessionStore for MemoryStore {
    fn session_count(&self) -> Option<usize> {
        Some(self.len())
    }

    fn attempt_count(&self) -> Option<usize> {
        Some(self.attempts_held().0)
    }

    fn peek<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        let now = self.now_ms();
        let result = self.shard(id).lock().map_err(|_| poisoned()).map(|map| {
            let entry = map.get(id)?;
            let idle = now.saturating_sub(entry.last_access.load(Ordering::Relaxed));
            (idle <= self.idle_ms).then(|| entry.session.clone())
        });
        ready(result)
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        ready(self.load_sync(id))
    }

    fn load_now(&self, id: &SessionId) -> Option<Result<Option<Arc<Session>>, StoreError>> {
        Some(self.load_sync(id))
    }

    fn save<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, ()> {
        let now = self.now_ms();
        let result = self.shard(id).lock().map_err(|_| poisoned()).map(|mut map| {
            map.insert(
                *id,
                Entry {
                    session,
                    last_access: AtomicU64::new(now),
                },
            );
        });
        ready(result)
    }

    fn update<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, bool> {
        let now = self.now_ms();
        let result = self
            .shard(id)
            .lock()
            .map_err(|_| poisoned())
            .map(|mut map| match map.get_mut(id) {
                Some(entry) => {
                    entry.session = session;
                    entry.last_access.store(now, Ordering::Relaxed);
                    true
                }
                None => false,
            });
        ready(result)
    }

    fn remove<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        let result = self
            .shard(id)
            .lock()
            .map_err(|_| poisoned())
            .map(|mut map| map.remove(id).map(|entry| entry.session));
        ready(result)
    }

    fn put_attempt<'a>(&'a self, state: &'a str, attempt: LoginAttempt) -> StoreFuture<'a, ()> {
        let now = self.now_ms();
        let deadline = now + self.login_ttl_ms;
        let result = self
            .attempts
            .lock()
            .map_err(|_| poisoned())
            .map(|mut attempts| attempts.insert(state, attempt, deadline, now));
        ready(result)
    }

    fn take_attempt<'a>(&'a self, state: &'a str) -> StoreFuture<'a, Option<LoginAttempt>> {
        let now = self.now_ms();
        let result = self.attempts.lock().map_err(|_| poisoned()).map(|mut attempts| {
            let pending = attempts.take(state)?;
            (pending.deadline >= now).then_some(pending.attempt)
        });
        ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Session> {
        Arc::new(Session {
            user: User {
                name: "jane".into(),
                ..User::default()
            },
            access_token: "token".into(),
            refresh_token: None,
            expires_at: 0,
            refresh_at: 0,
            csrf_secret: None,
            backend_cookies: Vec::new(),
        })
    }

    #[test]
    fn session_ids_round_trip_and_reject_garbage() {
        let id = SessionId::generate();
        assert_eq!(SessionId::parse(id.to_cookie_value()), Some(id));
        assert_ne!(SessionId::generate(), id);
        for bad in ["", "abc", "s%3Aforged.sig", &"A".repeat(44), &"*".repeat(43)] {
            assert!(SessionId::parse(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_use_slides_the_timeout() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        let id = SessionId::generate();
        store.save(&id, session()).await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(store.load(&id).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(store.load(&id).await.unwrap().is_some(), "use slid the timeout");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.load(&id).await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn peeking_does_not_slide_the_timeout() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        let id = SessionId::generate();
        store.save(&id, session()).await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(store.peek(&id).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(store.peek(&id).await.unwrap().is_none(), "a peek is not use");
        assert!(store.load(&id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn update_replaces_only_a_session_that_still_exists() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        let id = SessionId::generate();
        assert!(!store.update(&id, session()).await.unwrap(), "never saved");
        store.save(&id, session()).await.unwrap();
        let mut newer = (*session()).clone();
        newer.access_token = "newer".into();
        assert!(store.update(&id, Arc::new(newer)).await.unwrap());
        assert_eq!(store.load(&id).await.unwrap().unwrap().access_token.as_str(), "newer");
        store.remove(&id).await.unwrap();
        assert!(!store.update(&id, session()).await.unwrap(), "removed stays removed");
        assert!(store.load(&id).await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_returns_ended_sessions_once() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        let id = SessionId::generate();
        store.save(&id, session()).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(store.sweep().len(), 1);
        assert_eq!(store.sweep().len(), 0);
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn login_attempts_are_single_use_and_expire() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        let attempt = LoginAttempt {
            browser_binding: "b".into(),
            code_verifier: "v".into(),
            redirect_uri: "r".into(),
            return_to: "/".into(),
        };
        store.put_attempt("s1", attempt.clone()).await.unwrap();
        store.put_attempt("s2", attempt).await.unwrap();
        assert!(store.take_attempt("s1").await.unwrap().is_some());
        assert!(store.take_attempt("s1").await.unwrap().is_none());
        tokio::time::advance(Duration::from_secs(181)).await;
        assert!(store.take_attempt("s2").await.unwrap().is_none());
    }

    fn attempt(return_to: &str) -> LoginAttempt {
        LoginAttempt {
            browser_binding: "b".into(),
            code_verifier: "v".into(),
            redirect_uri: "r".into(),
            return_to: return_to.into(),
        }
    }

    #[tokio::test]
    async fn a_flood_of_login_attempts_evicts_the_oldest_and_never_refuses() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180)).with_attempt_limits(3, 1 << 20);
        for state in ["s1", "s2", "s3", "s4", "s5"] {
            store.put_attempt(state, attempt("/")).await.expect("never refused");
        }
        assert_eq!(store.attempts_held().0, 3);
        for (state, held) in [("s1", false), ("s2", false), ("s3", true), ("s4", true), ("s5", true)] {
            assert_eq!(store.take_attempt(state).await.unwrap().is_some(), held, "{state}");
        }
        assert_eq!(store.attempts_held(), (0, 0));
    }

    #[tokio::test]
    async fn the_default_cap_evicts_instead_of_refusing() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        for index in 0..MAX_ATTEMPTS {
            store.put_attempt(&format!("s{index}"), attempt("/")).await.unwrap();
        }
        store
            .put_attempt("newest", attempt("/"))
            .await
            .expect("a flood never refuses a new login");
        assert_eq!(store.attempts_held().0, MAX_ATTEMPTS);
        assert!(store.take_attempt("s0").await.unwrap().is_none(), "the oldest went");
        assert!(store.take_attempt("newest").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn taken_attempts_do_not_count_towards_the_cap() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180)).with_attempt_limits(2, 1 << 20);
        for round in 0..100 {
            let state = format!("s{round}");
            store.put_attempt(&state, attempt("/")).await.unwrap();
            assert!(store.take_attempt(&state).await.unwrap().is_some());
        }
        store.put_attempt("a", attempt("/")).await.unwrap();
        store.put_attempt("b", attempt("/")).await.unwrap();
        assert!(
            store.take_attempt("a").await.unwrap().is_some(),
            "nothing taken was evicted in its place"
        );
        // A state stored again after a take, or over itself, is one attempt, whatever its old queue
        // slots say.
        store.put_attempt("b", attempt("/again")).await.unwrap();
        store.put_attempt("b", attempt("/again")).await.unwrap();
        assert_eq!(store.attempts_held().0, 1);
        store.put_attempt("c", attempt("/")).await.unwrap();
        store.put_attempt("d", attempt("/")).await.unwrap();
        assert_eq!(store.attempts_held().0, 2);
        assert!(
            store.take_attempt("b").await.unwrap().is_none(),
            "the oldest went first"
        );
    }

    #[tokio::test]
    async fn long_return_paths_are_bounded_by_size() {
        let per_attempt = ATTEMPT_OVERHEAD + 3 + 3 + 4096;
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180))
            .with_attempt_limits(1_000, 10 * per_attempt);
        let long = format!("/{}", "x".repeat(4095));
        for index in 0..100 {
            store
                .put_attempt(&format!("s{index:02}"), attempt(&long))
                .await
                .unwrap();
        }
        let (count, bytes) = store.attempts_held();
        assert_eq!(count, 10);
        assert!(bytes <= 10 * per_attempt, "{bytes}");
        assert!(store.take_attempt("s99").await.unwrap().is_some());
        assert!(store.take_attempt("s89").await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_attempts_leave_on_the_next_store_or_sweep() {
        let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
        store.put_attempt("old", attempt("/")).await.unwrap();
        tokio::time::advance(Duration::from_secs(181)).await;
        store.put_attempt("new", attempt("/")).await.unwrap();
        assert_eq!(store.attempts_held().0, 1);
        tokio::time::advance(Duration::from_secs(181)).await;
        store.sweep();
        assert_eq!(store.attempts_held(), (0, 0));
    }
}
