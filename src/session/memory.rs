//! The in-memory session store (the default): sessions in sharded maps, login attempts in one
//! bounded queue.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{ready, LoginAttempt, Session, SessionId, SessionStore, StoreError, StoreFuture};

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
    /// Tenants whose sessions were ended (unsubscribed), with when: at most one entry per
    /// tenant, dropped after the idle timeout.
    ended_tenants: Mutex<HashMap<String, (u64, Instant)>>,
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
            ended_tenants: Mutex::new(HashMap::new()),
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

fn poisoned() -> StoreError {
    StoreError::Unavailable("in-memory store lock poisoned".into())
}

impl SessionStore for MemoryStore {
    fn end_tenant<'a>(&'a self, tenant: &'a str, at: u64) -> StoreFuture<'a, ()> {
        let idle = Duration::from_millis(self.idle_ms);
        let mut ended = self.ended_tenants.lock().unwrap_or_else(PoisonError::into_inner);
        ended.retain(|_, (_, when)| when.elapsed() < idle);
        ended.insert(tenant.to_string(), (at, Instant::now()));
        ready(Ok(()))
    }

    fn tenant_ended_at<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Option<u64>> {
        let idle = Duration::from_millis(self.idle_ms);
        let ended = self.ended_tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let at = ended
            .get(tenant)
            .filter(|(_, when)| when.elapsed() < idle)
            .map(|(at, _)| *at);
        ready(Ok(at))
    }

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
mod tests;
