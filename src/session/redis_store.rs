//! The shared session store: sessions, login attempts and refresh locks in Redis, so that any
//! instance can serve any request of a browser. Values are sealed with AES-256-GCM, so a reader
//! of Redis can neither replay tokens nor find a cookie value.
//!
//! - Keys: `approuter:{session,login,refresh,ended}:<hex>`, where `<hex>` is HMAC-SHA256 (under a
//!   key derived from the session secret) of the app's client id and the session id or login
//!   `state`. The cookie value itself never reaches Redis.
//! - Values: serde_json sealed by `keyring`, with the Redis key as associated data, so a value
//!   copied to another key does not open. A value that does not open is no session (log in again)
//!   and a warning.
//! - Secrets, newest first: seal with the first, open with any. A key name made under an older
//!   secret is looked up when the newest finds nothing, and the session is moved to its new name.
//!   Rotate in two steps so that no instance meets a value it cannot open: first deploy
//!   `[old, new]` everywhere, then `[new, old]`, and drop `old` after one idle timeout.
//! - Idle timeout: the key's TTL. `load` extends it (PEXPIRE, pipelined with the GET) at most once
//!   per [`touch_interval`] per session and instance, so a session ends between
//!   `idle - touch_interval` and `idle` after its last use, and reads do not write on every request.
//! - Login attempts: TTL = `STATE_CACHE`; taken with GETDEL, so a `state` is single-use across
//!   instances (Redis 6.2 or newer).
//! - Refresh: a lock (`SET NX PX`, a lease renewed while held, released by compare-and-delete);
//!   the refreshed session is written with `SET XX`, so a logout on another instance wins.
//! - Backend logout on idle expiry, exactly once across instances (only when backends have a
//!   `logoutPath`): every session has an `ended` copy that outlives it by [`ENDED_GRACE`], and a
//!   sorted set per app holds each session's last touch. [`RedisStore::sweep`], run by every
//!   instance, takes sessions whose key is gone and whose last touch is older than the idle timeout;
//!   `ZREM` decides which instance calls the backends. If no instance sweeps within the grace
//!   period, the call is skipped.
//! - Faults: one connection manager (multiplexed, reconnects by itself), or with Redis Sentinel our
//!   own equivalent that asks the sentinels for the master again after a failover; a command whose
//!   connection broke is sent once more on a fresh one (every command here is safe to repeat, see
//!   `connection`); every operation is bounded by the command timeout and fails as
//!   [`StoreError::Unavailable`], which the caller answers 503.

mod connection;
mod keyring;
mod sentinel;
mod touch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{Cmd, RedisResult, Script, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use self::connection::{connect, Connection};
use self::keyring::{hex, KeyName, Keyring, Kind};
use self::touch::TouchMap;
use super::{LoginAttempt, RefreshLock, Session, SessionId, SessionStore, StoreError, StoreFuture};
use crate::config::RedisSettings;
use crate::util::random_bytes;

/// Why the Redis store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Redis location {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot derive keys from the session secret")]
    KeyDerivation,
}

/// How long a refresh lock lives without renewal: a crashed holder blocks others this long at most.
const LOCK_LEASE: Duration = Duration::from_secs(5);
/// How long the `ended` copy of a session outlives it: the time the fleet has to notice the expiry.
pub const ENDED_GRACE: Duration = Duration::from_secs(120);
/// Instances' clocks may disagree this much; a session counts as expired only this much later.
const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Expired sessions handled per sweep; the rest wait for the next one.
const SWEEP_BATCH: isize = 500;

/// `SET NX PX`, but also 1 for the holder of the same token: a try repeated after its reply was
/// lost does not read the lock it took as taken by another instance.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new("if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 elseif redis.call('GET', KEYS[1]) == ARGV[1] then return 1 else return 0 end")
});
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end")
});
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end")
});

/// How often one instance extends a session's TTL at most: a thirtieth of the idle timeout,
/// between one and thirty seconds (30 s for the default 15 minutes).
pub fn touch_interval(idle: Duration) -> Duration {
    (idle / 30).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Sessions and login attempts in Redis; see the module documentation.
pub struct RedisStore {
    connection: Connection,
    keyring: Keyring,
    /// Mixed into every key name, so that apps sharing a Redis and a secret stay apart.
    namespace: String,
    idle: Duration,
    login_ttl: Duration,
    timeout: Duration,
    touched: TouchMap,
    /// The sorted set of last touches, when expiry is tracked for backend logout.
    expiry_index: Option<String>,
}

impl RedisStore {
    /// A store for `settings`; connects lazily, so the router starts while Redis is down.
    /// `namespace` separates apps (the XSUAA client id); `ca_files` replace the system trust
    /// roots for `rediss://` when given (`XS_CACERT_PATH`). Must run inside a tokio runtime.
    ///
    /// # Errors
    /// An unusable URL, an unreadable CA file, or failed key derivation.
    pub fn new(
        settings: &RedisSettings,
        namespace: &str,
        idle: Duration,
        login_ttl: Duration,
        ca_files: &[PathBuf],
    ) -> Result<RedisStore, Error> {
        let keyring = Keyring::new(&settings.secrets)?;
        let connection = connect(settings, ca_files)?;
        Ok(RedisStore {
            connection,
            keyring,
            namespace: namespace.to_string(),
            idle,
            login_ttl,
            timeout: settings.command_timeout,
            touched: TouchMap::new(touch_interval(idle)),
            expiry_index: None,
        })
    }

    /// Keeps what [`RedisStore::sweep`] needs to report sessions that ended by idle timeout. Costs
    /// a second copy of each session in Redis and two more commands per touch and save.
    pub fn with_expiry_tracking(mut self) -> RedisStore {
        // Not derived from the secrets: the index must survive a rotation.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.namespace.as_bytes());
        self.expiry_index = Some(format!("approuter:expiry:{}", hex(&digest.as_ref()[..16])));
        self
    }

    /// Takes the sessions that ended by idle timeout since the last sweep (of any instance), for
    /// the backend logout calls. Each ended session is returned by exactly one sweep in the fleet.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis cannot answer.
    pub async fn sweep(&self) -> Result<Vec<Arc<Session>>, StoreError> {
        let Some(index) = &self.expiry_index else {
            return Ok(Vec::new());
        };
        let cutoff = unix_millis().saturating_sub(millis(self.idle) + millis(CLOCK_SKEW));
        let mut connection = self.connection.clone();
        let command = redis::cmd("ZRANGEBYSCORE")
            .arg(index)
            .arg("-inf")
            .arg(cutoff)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .to_owned();
        let candidates: Vec<String> = self.run(command.query_async(&mut connection)).await?;
        let mut ended = Vec::new();
        for digest in candidates {
            let live: i64 = self
                .run(
                    redis::cmd("EXISTS")
                        .arg(format!("approuter:session:{digest}"))
                        .query_async(&mut connection),
                )
                .await?;
            if live > 0 {
                continue;
            }
            // The one instance whose ZREM removes the entry makes the calls.
            let claimed: i64 = self
                .run(redis::cmd("ZREM").arg(index).arg(&digest).query_async(&mut connection))
                .await?;
            if claimed == 0 {
                continue;
            }
            let copy = format!("approuter:ended:{digest}");
            if let Some(sealed) = self.get_del(&copy).await? {
                if let Some(session) = self.open::<Session>(Kind::Ended, &copy, &sealed) {
                    ended.push(Arc::new(session));
                }
            }
        }
        Ok(ended)
    }

    /// Runs one Redis operation within the command timeout.
    async fn run<T>(&self, operation: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!("redis: {error}"))),
            Err(_) => {
                self.connection.timed_out();
                Err(StoreError::Unavailable(format!(
                    "redis did not answer within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }

    /// Runs `commands` in one round trip, or one by one on a cluster (their keys may live in
    /// different slots); returns the reply of command number `wanted`.
    async fn exec(&self, commands: Vec<Cmd>, wanted: usize) -> Result<Value, StoreError> {
        let mut connection = self.connection.clone();
        let replies: Vec<Value> = match &self.connection {
            Connection::Single(_) | Connection::Sentinel(_) => {
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command);
                }
                self.run(pipe.query_async(&mut connection)).await?
            }
            Connection::Cluster(_) => {
                let mut replies = Vec::with_capacity(commands.len());
                for command in commands {
                    replies.push(self.run(command.query_async(&mut connection)).await?);
                }
                replies
            }
        };
        match replies.into_iter().nth(wanted) {
            Some(Value::ServerError(error)) => Err(StoreError::Unavailable(format!("redis: {error:?}"))),
            Some(value) => Ok(value),
            None => Err(StoreError::Unavailable("redis: empty reply".into())),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.clone();
        self.run(redis::cmd("GET").arg(name).query_async(&mut connection)).await
    }

    async fn get_del(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.clone();
        self.run(redis::cmd("GETDEL").arg(name).query_async(&mut connection))
            .await
    }

    fn seal<T: Serialize>(&self, name: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        let plain = serde_json::to_vec(value)
            .map_err(|error| StoreError::Unavailable(format!("cannot serialise a session value: {error}")))?;
        self.keyring
            .seal(name.as_bytes(), plain)
            .ok_or_else(|| StoreError::Unavailable("cannot seal a session value".into()))
    }

    /// The value under `name`, or `None` (with a warning) when it does not open or parse.
    fn open<T: DeserializeOwned>(&self, kind: Kind, name: &str, sealed: &[u8]) -> Option<T> {
        let Some(plain) = self.keyring.open(name.as_bytes(), sealed) else {
            tracing::warn!(
                kind = kind.label(),
                "a stored value does not open with any session secret (corrupted, or written under another \
                 sessionSecret); treated as absent"
            );
            return None;
        };
        match serde_json::from_slice(&plain) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(kind = kind.label(), error = %error, "a stored value does not parse; treated as absent");
                None
            }
        }
    }

    /// `SET` of a session (`XX`: only over an existing one), plus its `ended` copy and last touch
    /// when expiry is tracked; true when the session was written.
    async fn write_session(&self, name: &KeyName, session: &Session, only_existing: bool) -> Result<bool, StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(&name.text)
            .arg(self.seal(&name.text, session)?)
            .arg("PX")
            .arg(millis(self.idle));
        if only_existing {
            set.arg("XX");
        }
        let mut commands = vec![set];
        if let Some(index) = &self.expiry_index {
            let copy = format!("approuter:ended:{}", name.digest_hex());
            let mut set_copy = redis::cmd("SET");
            set_copy
                .arg(&copy)
                .arg(self.seal(&copy, session)?)
                .arg("PX")
                .arg(millis(self.idle + ENDED_GRACE));
            let mut touch = redis::cmd("ZADD");
            if only_existing {
                set_copy.arg("XX");
                touch.arg("XX");
            }
            touch.arg(index).arg(unix_millis()).arg(name.digest_hex());
            commands.push(set_copy);
            commands.push(touch);
        }
        let written = !matches!(self.exec(commands, 0).await?, Value::Nil);
        if written {
            self.touched.record(name.tag, Instant::now());
        }
        Ok(written)
    }

    /// Deletes a session's `ended` copy and last touch: it ended some other way.
    fn untrack(&self, name: &KeyName) -> Vec<Cmd> {
        let Some(index) = &self.expiry_index else {
            return Vec::new();
        };
        // The index entry goes first: a sweep that still finds it may claim, one that does not won't.
        vec![
            redis::cmd("ZREM").arg(index).arg(name.digest_hex()).to_owned(),
            redis::cmd("DEL")
                .arg(format!("approuter:ended:{}", name.digest_hex()))
                .to_owned(),
        ]
    }

    /// The first of `names` (older secrets' names) holding a value that opens, taken out with GETDEL
    /// or read with GET.
    async fn find_older<T: DeserializeOwned>(
        &self,
        kind: Kind,
        names: &[KeyName],
        take: bool,
    ) -> Result<Option<(KeyName, T)>, StoreError> {
        // One command per name: on a cluster the names live in different slots.
        for name in names {
            let found = if take {
                self.get_del(&name.text).await?
            } else {
                self.get(&name.text).await?
            };
            if let Some(value) = found.and_then(|sealed| self.open(kind, &name.text, &sealed)) {
                return Ok(Some((name.clone(), value)));
            }
        }
        Ok(None)
    }
}

impl RedisStore {
    /// The key of `tenant`'s unsubscription mark: readable by every instance of this app.
    fn tenant_ended_key(&self, tenant: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.namespace.as_bytes());
        format!("approuter:tenant-ended:{}:{tenant}", hex(&digest.as_ref()[..16]))
    }
}

impl SessionStore for RedisStore {
    fn end_tenant<'a>(&'a self, tenant: &'a str, at: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let command = redis::cmd("SET")
                .arg(self.tenant_ended_key(tenant))
                .arg(at)
                .arg("PX")
                .arg(millis(self.idle))
                .to_owned();
            self.run(command.query_async::<()>(&mut connection)).await
        })
    }

    fn tenant_ended_at<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let found = self.get(&self.tenant_ended_key(tenant)).await?;
            Ok(found.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.trim().parse::<u64>().ok()))
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let names = self.keyring.names(Kind::Session, &self.namespace, id.as_bytes());
            let primary = &names[0];
            let found: Option<Vec<u8>> = if self.touched.due(primary.tag, Instant::now()) {
                // The touch rides in the same round trip; on a missing key it does nothing.
                let mut commands = vec![
                    redis::cmd("GET").arg(&primary.text).to_owned(),
                    redis::cmd("PEXPIRE")
                        .arg(&primary.text)
                        .arg(millis(self.idle))
                        .to_owned(),
                ];
                if let Some(index) = &self.expiry_index {
                    let copy = format!("approuter:ended:{}", primary.digest_hex());
                    commands.push(
                        redis::cmd("PEXPIRE")
                            .arg(copy)
                            .arg(millis(self.idle + ENDED_GRACE))
                            .to_owned(),
                    );
                    // XX: a request with a made-up cookie adds nothing to the index.
                    commands.push(
                        redis::cmd("ZADD")
                            .arg(index)
                            .arg("XX")
                            .arg(unix_millis())
                            .arg(primary.digest_hex())
                            .to_owned(),
                    );
                }
                redis::from_redis_value(self.exec(commands, 0).await?)
                    .map_err(|error| StoreError::Unavailable(format!("redis: unexpected reply to GET: {error}")))?
            } else {
                self.get(&primary.text).await?
            };
            if let Some(sealed) = found {
                return Ok(self
                    .open::<Session>(Kind::Session, &primary.text, &sealed)
                    .map(Arc::new));
            }
            let Some((old, session)) = self.find_older::<Session>(Kind::Session, &names[1..], false).await? else {
                return Ok(None);
            };
            // Found under an older secret's name: move it to the newest name, sealed with the newest key.
            self.write_session(primary, &session, false).await?;
            let mut cleanup = self.untrack(&old);
            cleanup.push(redis::cmd("DEL").arg(&old.text).to_owned());
            let _ = self.exec(cleanup, 0).await;
            Ok(Some(Arc::new(session)))
        })
    }

    fn peek<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let names = self.keyring.names(Kind::Session, &self.namespace, id.as_bytes());
            if let Some(sealed) = self.get(&names[0].text).await? {
                return Ok(self
                    .open::<Session>(Kind::Session, &names[0].text, &sealed)
                    .map(Arc::new));
            }
            Ok(self
                .find_older::<Session>(Kind::Session, &names[1..], false)
                .await?
                .map(|(_, session)| Arc::new(session)))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.run(redis::cmd("PING").query_async::<()>(&mut connection)).await
        })
    }

    fn save<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Session, &self.namespace, id.as_bytes());
            self.write_session(&name, &session, false).await.map(|_| ())
        })
    }

    fn update<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Session, &self.namespace, id.as_bytes());
            // XX: only while the key exists; a logout on another instance wins over this write.
            self.write_session(&name, &session, true).await
        })
    }

    fn remove<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let names = self.keyring.names(Kind::Session, &self.namespace, id.as_bytes());
            self.touched.forget(names[0].tag);
            let mut removed = None;
            for name in &names {
                // After the index entry, before the `ended` copy: see `untrack`.
                let mut commands = self.untrack(name);
                let wanted = commands.len().min(1);
                commands.insert(wanted, redis::cmd("GETDEL").arg(&name.text).to_owned());
                let reply: Option<Vec<u8>> = redis::from_redis_value(self.exec(commands, wanted).await?)
                    .map_err(|error| StoreError::Unavailable(format!("redis: unexpected reply to GETDEL: {error}")))?;
                if let (Some(sealed), None) = (reply, &removed) {
                    removed = self.open::<Session>(Kind::Session, &name.text, &sealed).map(Arc::new);
                }
            }
            Ok(removed)
        })
    }

    fn put_attempt<'a>(&'a self, state: &'a str, attempt: LoginAttempt) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Login, &self.namespace, state.as_bytes());
            let sealed = self.seal(&name.text, &attempt)?;
            let mut connection = self.connection.clone();
            let command = redis::cmd("SET")
                .arg(&name.text)
                .arg(sealed)
                .arg("PX")
                .arg(millis(self.login_ttl))
                .to_owned();
            self.run(command.query_async::<()>(&mut connection)).await
        })
    }

    fn take_attempt<'a>(&'a self, state: &'a str) -> StoreFuture<'a, Option<LoginAttempt>> {
        Box::pin(async move {
            let names = self.keyring.names(Kind::Login, &self.namespace, state.as_bytes());
            if let Some(sealed) = self.get_del(&names[0].text).await? {
                return Ok(self.open(Kind::Login, &names[0].text, &sealed));
            }
            Ok(self
                .find_older::<LoginAttempt>(Kind::Login, &names[1..], true)
                .await?
                .map(|(_, attempt)| attempt))
        })
    }

    fn lock_refresh<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<RefreshLock>> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Refresh, &self.namespace, id.as_bytes()).text;
            let token = hex(&random_bytes::<16>());
            let mut connection = self.connection.clone();
            let mut acquire = ACQUIRE.key(&name);
            acquire.arg(&token).arg(millis(LOCK_LEASE));
            let acquired: i64 = self.run(acquire.invoke_async(&mut connection)).await?;
            if acquired != 1 {
                return Ok(None);
            }
            let (release_tx, release_rx) = oneshot::channel::<()>();
            tokio::spawn(keep_lock(connection, name, token, release_rx, self.timeout));
            Ok(Some(RefreshLock::held(release_tx)))
        })
    }
}

/// Renews the lease while the lock is held (the refresh may outlast one lease), then releases it
/// when the holder drops its end of `release_rx`. Compare-and-set on the token: a lock that expired
/// and went to another instance is never extended or deleted here.
async fn keep_lock(
    mut connection: Connection,
    name: String,
    token: String,
    mut release_rx: oneshot::Receiver<()>,
    timeout: Duration,
) {
    let mut renewal = tokio::time::interval_at(Instant::now() + LOCK_LEASE / 3, LOCK_LEASE / 3);
    loop {
        tokio::select! {
            _ = &mut release_rx => break,
            _ = renewal.tick() => {
                let renewed = tokio::time::timeout(
                    timeout,
                    RENEW.key(&name).arg(&token).arg(millis(LOCK_LEASE)).invoke_async::<i64>(&mut connection),
                )
                .await;
                match renewed {
                    Ok(Ok(1)) => {}
                    Ok(Ok(_)) => {
                        tracing::warn!("refresh lock lost before the refresh finished; another instance may refresh too");
                        return;
                    }
                    Ok(Err(error)) => tracing::debug!(error = %error, "refresh lock renewal failed"),
                    Err(_) => tracing::debug!("refresh lock renewal timed out"),
                }
            }
        }
    }
    let released = tokio::time::timeout(
        timeout,
        RELEASE.key(&name).arg(&token).invoke_async::<i64>(&mut connection),
    )
    .await;
    if !matches!(released, Ok(Ok(_))) {
        tracing::debug!("refresh lock release failed; it expires with its lease");
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().max(1) as u64
}

/// Wall-clock milliseconds: last touches are compared across instances.
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_touch_interval_is_a_thirtieth_of_the_idle_timeout_within_bounds() {
        assert_eq!(touch_interval(Duration::from_secs(900)), Duration::from_secs(30));
        assert_eq!(touch_interval(Duration::from_secs(60)), Duration::from_secs(2));
        assert_eq!(touch_interval(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(touch_interval(Duration::from_secs(86_400)), Duration::from_secs(30));
    }
}
