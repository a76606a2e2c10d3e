//! The shared session store: sessions, login attempts and refresh locks in Redis, so that any
//! instance can serve any request of a browser. Values are sealed with AES-256-GCM, so a reader
//! of Redis can neither replay tokens nor find a cookie value.
//!
//! - Keys: `approuter:{session,login,refresh}:<hex>`, where `<hex>` is HMAC-SHA256 (under a key
//!   derived from the session secret) of the app's client id and the session id or login `state`.
//!   The cookie value itself never reaches Redis.
//! - Values: `01 | key id (4) | nonce (12) | AES-256-GCM(serde_json) | tag (16)`, with the Redis key
//!   as associated data, so a value copied to another key does not open. A value that does not
//!   open is no session (log in again) and a warning.
//! - Secrets, newest first: seal with the first, open with any. A key name made under an older
//!   secret is looked up when the newest finds nothing, and the session is moved to its new name.
//!   Rotate in two steps so that no instance meets a value it cannot open: first deploy
//!   `[old, new]` everywhere, then `[new, old]`, and drop `old` after one idle timeout.
//! - Idle timeout: the key's TTL. `load` extends it (PEXPIRE, pipelined with the GET) at most once
//!   per [`touch_interval`] per session and instance, so a session ends between
//!   `idle - touch_interval` and `idle` after its last use, and reads do not write on every request.
//! - Login attempts: TTL = `STATE_CACHE`; taken with GETDEL, so a `state` is single-use across
//!   instances (Redis 6.2 or newer).
//! - Refresh: a lock (`SET NX PX`, a lease renewed while held, released by compare-and-delete).
//! - Faults: one connection manager (multiplexed, reconnects by itself); every operation is bounded
//!   by the command timeout and fails as [`StoreError::Unavailable`], which the caller answers 503.
//! - Not done: backend logout calls when Redis expires a session (it would need keyspace
//!   notifications and a shadow copy of each session); logout and refresh failures still end
//!   sessions explicitly.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{hkdf, hmac};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Script, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::session::{LoginAttempt, RefreshLock, Session, SessionId, SessionStore, StoreError, StoreFuture};
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

const FORMAT_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// How long a refresh lock lives without renewal: a crashed holder blocks others this long at most.
const LOCK_LEASE: Duration = Duration::from_secs(5);
/// Entries of the last-touch map per shard before stale ones are dropped.
const TOUCH_SHARD_CAPACITY: usize = 8192;
const TOUCH_SHARDS: usize = 16;

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
        })
    }

    /// Runs one Redis operation within the command timeout.
    async fn run<T>(&self, operation: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!("redis: {error}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis did not answer within {} ms",
                self.timeout.as_millis()
            ))),
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

    async fn set(&self, name: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("SET")
            .arg(name)
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .to_owned();
        self.run(command.query_async::<()>(&mut connection)).await
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

impl SessionStore for RedisStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let names = self.keyring.names(Kind::Session, &self.namespace, id.as_bytes());
            let primary = &names[0];
            let mut connection = self.connection.clone();
            let found: Option<Vec<u8>> = if self.touched.due(primary.tag, Instant::now()) {
                // The touch rides in the same round trip; on a missing key it does nothing.
                let mut pipe = redis::pipe();
                pipe.cmd("GET")
                    .arg(&primary.text)
                    .cmd("PEXPIRE")
                    .arg(&primary.text)
                    .arg(millis(self.idle))
                    .ignore();
                let (found,): (Option<Vec<u8>>,) = self.run(pipe.query_async(&mut connection)).await?;
                found
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
            let session = Arc::new(session);
            let sealed = self.seal(&primary.text, &*session)?;
            self.set(&primary.text, sealed, self.idle).await?;
            self.touched.record(primary.tag, Instant::now());
            let _ = self.get_del(&old.text).await;
            Ok(Some(session))
        })
    }

    fn save<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Session, &self.namespace, id.as_bytes());
            let sealed = self.seal(&name.text, &*session)?;
            self.set(&name.text, sealed, self.idle).await?;
            self.touched.record(name.tag, Instant::now());
            Ok(())
        })
    }

    fn update<'a>(&'a self, id: &'a SessionId, session: Arc<Session>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Session, &self.namespace, id.as_bytes());
            let sealed = self.seal(&name.text, &*session)?;
            let mut connection = self.connection.clone();
            // XX: only while the key exists; a logout on another instance wins over this write.
            let command = redis::cmd("SET")
                .arg(&name.text)
                .arg(sealed)
                .arg("PX")
                .arg(millis(self.idle))
                .arg("XX")
                .to_owned();
            let replaced: Option<String> = self.run(command.query_async(&mut connection)).await?;
            if replaced.is_some() {
                self.touched.record(name.tag, Instant::now());
            }
            Ok(replaced.is_some())
        })
    }

    fn remove<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let names = self.keyring.names(Kind::Session, &self.namespace, id.as_bytes());
            self.touched.forget(names[0].tag);
            let mut removed = None;
            for name in &names {
                if let Some(sealed) = self.get_del(&name.text).await? {
                    if removed.is_none() {
                        removed = self.open::<Session>(Kind::Session, &name.text, &sealed).map(Arc::new);
                    }
                }
            }
            Ok(removed)
        })
    }

    fn put_attempt<'a>(&'a self, state: &'a str, attempt: LoginAttempt) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let name = self.keyring.name(0, Kind::Login, &self.namespace, state.as_bytes());
            let sealed = self.seal(&name.text, &attempt)?;
            self.set(&name.text, sealed, self.login_ttl).await
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
            let command = redis::cmd("SET")
                .arg(&name)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(millis(LOCK_LEASE))
                .to_owned();
            let acquired: Option<String> = self.run(command.query_async(&mut connection)).await?;
            if acquired.is_none() {
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

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[(byte >> 4) as usize] as char);
        text.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    text
}

// === impl Connection ===

/// One multiplexed connection with reconnection, or a cluster connection (which keeps one per node).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Connection::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

fn connect(settings: &RedisSettings, ca_files: &[PathBuf]) -> Result<Connection, Error> {
    let client_error = |source| Error::Client {
        url: settings.display_url(),
        source,
    };
    let tls = settings.url.starts_with("rediss:");
    let certificates = if tls && !ca_files.is_empty() {
        let mut pem = Vec::new();
        for path in ca_files {
            let bytes = std::fs::read(path).map_err(|source| Error::CaFile {
                path: path.clone(),
                source,
            })?;
            pem.extend_from_slice(&bytes);
            pem.push(b'\n');
        }
        Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        })
    } else {
        None
    };
    if tls {
        // The redis crate builds its rustls configuration with the process default provider; make
        // that aws-lc-rs, as everywhere else. An already installed default is kept.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    if settings.cluster {
        let mut builder = redis::cluster::ClusterClientBuilder::new(vec![settings.url.as_str()])
            .connection_timeout(settings.command_timeout)
            .response_timeout(settings.command_timeout)
            .min_retry_wait(millis(settings.reconnect_min_delay))
            .max_retry_wait(millis(settings.reconnect_max_delay));
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        let client = builder.build().map_err(client_error)?;
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(settings.command_timeout)
            .set_response_timeout(settings.command_timeout);
        return Ok(Connection::Cluster(
            client.get_pending_async_connection_with_config(config),
        ));
    }
    let client = match certificates {
        Some(certificates) => redis::Client::build_with_tls(settings.url.as_str(), certificates),
        None => redis::Client::open(settings.url.as_str()),
    }
    .map_err(client_error)?;
    // Reconnection never gives up (each attempt is cheap and bounded), and its delay stays under
    // the configured cap plus jitter, so service resumes shortly after Redis does.
    let config = ConnectionManagerConfig::new()
        .set_min_delay(settings.reconnect_min_delay)
        .set_max_delay(settings.reconnect_max_delay)
        .set_exponent_base(2.0)
        .set_number_of_retries(usize::MAX)
        .set_connection_timeout(Some(settings.command_timeout))
        .set_response_timeout(Some(settings.command_timeout));
    let manager = client.get_connection_manager_lazy(config).map_err(client_error)?;
    Ok(Connection::Single(manager))
}

// === impl Keyring ===

/// What a key name is for; part of the HMAC input and of the name.
#[derive(Clone, Copy)]
enum Kind {
    Session,
    Login,
    Refresh,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Login => "login",
            Kind::Refresh => "refresh",
        }
    }
}

#[derive(Clone)]
struct KeyName {
    text: String,
    /// The first half of the HMAC: identifies the session in the last-touch map.
    tag: [u8; 16],
}

struct SecretKeys {
    id: [u8; KEY_ID_LEN],
    aead: RandomizedNonceKey,
    names: hmac::Key,
}

/// Keys derived from the session secrets, newest first.
struct Keyring {
    keys: Vec<SecretKeys>,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Keyring {
    fn new(secrets: &[String]) -> Result<Keyring, Error> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"approuter session store");
        let mut keys = Vec::with_capacity(secrets.len());
        for secret in secrets {
            let prk = salt.extract(secret.as_bytes());
            let expand = |info: &[u8], out: &mut [u8]| {
                prk.expand(&[info], Len(out.len()))
                    .and_then(|okm| okm.fill(out))
                    .map_err(|_| Error::KeyDerivation)
            };
            let mut aead = [0u8; 32];
            let mut names = [0u8; 32];
            let mut id = [0u8; KEY_ID_LEN];
            expand(b"value encryption (aes-256-gcm)", &mut aead)?;
            expand(b"key names (hmac-sha256)", &mut names)?;
            expand(b"key id", &mut id)?;
            keys.push(SecretKeys {
                id,
                aead: RandomizedNonceKey::new(&AES_256_GCM, &aead).map_err(|_| Error::KeyDerivation)?,
                names: hmac::Key::new(hmac::HMAC_SHA256, &names),
            });
        }
        if keys.is_empty() {
            return Err(Error::KeyDerivation);
        }
        Ok(Keyring { keys })
    }

    /// The key name of `subject` under secret number `index`.
    fn name(&self, index: usize, kind: Kind, namespace: &str, subject: &[u8]) -> KeyName {
        let mut context = hmac::Context::with_key(&self.keys[index].names);
        context.update(kind.label().as_bytes());
        context.update(&[0]);
        context.update(namespace.as_bytes());
        context.update(&[0]);
        context.update(subject);
        let digest = context.sign();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&digest.as_ref()[..16]);
        KeyName {
            text: format!("approuter:{}:{}", kind.label(), hex(digest.as_ref())),
            tag,
        }
    }

    /// The names of `subject` under every secret, newest first.
    fn names(&self, kind: Kind, namespace: &str, subject: &[u8]) -> Vec<KeyName> {
        (0..self.keys.len())
            .map(|index| self.name(index, kind, namespace, subject))
            .collect()
    }

    fn seal(&self, aad: &[u8], plain: Vec<u8>) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let mut in_out = plain;
        let nonce = key.aead.seal_in_place_append_tag(Aad::from(aad), &mut in_out).ok()?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + in_out.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Some(sealed)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_VERSION {
            return None;
        }
        let id = &sealed[1..1 + KEY_ID_LEN];
        let nonce = &sealed[1 + KEY_ID_LEN..HEADER_LEN];
        // Ids are 32 bits: try every key that carries this one.
        self.keys.iter().filter(|key| key.id == id).find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut in_out = sealed[HEADER_LEN..].to_vec();
            key.aead
                .open_in_place(nonce, Aad::from(aad), &mut in_out)
                .ok()
                .map(|plain| plain.to_vec())
        })
    }
}

// === impl TouchMap ===

/// When this instance last extended each session's TTL. Bounded: an entry older than the touch
/// interval means "touch now" just like a missing one, so full shards drop those first and, if
/// still full, start over (which costs one extra PEXPIRE per session, nothing else).
struct TouchMap {
    shards: Box<[Mutex<HashMap<[u8; 16], Instant>>]>,
    interval: Duration,
}

impl TouchMap {
    fn new(interval: Duration) -> TouchMap {
        TouchMap {
            shards: (0..TOUCH_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            interval,
        }
    }

    fn shard(&self, tag: [u8; 16]) -> &Mutex<HashMap<[u8; 16], Instant>> {
        // The tag is an HMAC output: its bytes are already uniformly spread.
        &self.shards[tag[0] as usize % TOUCH_SHARDS]
    }

    /// True when the TTL should be extended now; counts the touch as done.
    fn due(&self, tag: [u8; 16], now: Instant) -> bool {
        let Ok(mut map) = self.shard(tag).lock() else {
            return true;
        };
        if let Some(last) = map.get(&tag) {
            if now.saturating_duration_since(*last) < self.interval {
                return false;
            }
        }
        self.insert(&mut map, tag, now);
        true
    }

    fn record(&self, tag: [u8; 16], now: Instant) {
        if let Ok(mut map) = self.shard(tag).lock() {
            self.insert(&mut map, tag, now);
        }
    }

    fn forget(&self, tag: [u8; 16]) {
        if let Ok(mut map) = self.shard(tag).lock() {
            map.remove(&tag);
        }
    }

    fn insert(&self, map: &mut HashMap<[u8; 16], Instant>, tag: [u8; 16], now: Instant) {
        if map.len() >= TOUCH_SHARD_CAPACITY && !map.contains_key(&tag) {
            map.retain(|_, last| now.saturating_duration_since(*last) < self.interval);
            if map.len() >= TOUCH_SHARD_CAPACITY {
                map.clear();
            }
        }
        map.insert(tag, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(secrets: &[&str]) -> Keyring {
        Keyring::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn sealed_values_open_only_under_their_name_and_a_known_secret() {
        let new = keyring(&["the-new-session-secret", "the-old-session-secret"]);
        let old = keyring(&["the-old-session-secret"]);
        let other = keyring(&["a-different-session-secret"]);
        let sealed = old.seal(b"approuter:session:aa", b"{\"token\":1}".to_vec()).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"{\"token\":1}"), "encrypted");
        assert_eq!(new.open(b"approuter:session:aa", &sealed).unwrap(), b"{\"token\":1}");
        assert!(
            new.open(b"approuter:session:bb", &sealed).is_none(),
            "bound to its key name"
        );
        assert!(other.open(b"approuter:session:aa", &sealed).is_none(), "another secret");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(new.open(b"approuter:session:aa", &flipped).is_none(), "tampered");
        for garbage in [&b""[..], b"\x01abc", b"\x02\x00\x00\x00\x00"] {
            assert!(new.open(b"approuter:session:aa", garbage).is_none());
        }
    }

    #[test]
    fn key_names_hide_the_subject_and_depend_on_secret_kind_and_namespace() {
        let ring = keyring(&["the-new-session-secret", "the-old-session-secret"]);
        let id = SessionId::generate();
        let name = ring.name(0, Kind::Session, "app", id.as_bytes());
        assert!(name.text.starts_with("approuter:session:"));
        assert_eq!(name.text.len(), "approuter:session:".len() + 64);
        assert!(!name.text.contains(&id.to_cookie_value()));
        assert_eq!(
            name.text,
            ring.name(0, Kind::Session, "app", id.as_bytes()).text,
            "stable"
        );
        for other in [
            ring.name(1, Kind::Session, "app", id.as_bytes()),
            ring.name(0, Kind::Refresh, "app", id.as_bytes()),
            ring.name(0, Kind::Session, "other-app", id.as_bytes()),
        ] {
            assert_ne!(
                other.text[other.text.rfind(':').unwrap()..],
                name.text[name.text.rfind(':').unwrap()..]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn touches_are_spaced_by_the_interval() {
        let map = TouchMap::new(Duration::from_secs(30));
        let tag = [7u8; 16];
        assert!(map.due(tag, Instant::now()));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!map.due(tag, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(map.due(tag, Instant::now()));
        map.forget(tag);
        assert!(map.due(tag, Instant::now()), "after a removal the next load touches");
        assert_eq!(touch_interval(Duration::from_secs(900)), Duration::from_secs(30));
        assert_eq!(touch_interval(Duration::from_secs(60)), Duration::from_secs(2));
    }

    #[test]
    fn the_touch_map_stays_bounded() {
        let map = TouchMap::new(Duration::from_secs(30));
        let now = Instant::now();
        for n in 0..(TOUCH_SHARD_CAPACITY * TOUCH_SHARDS * 2) as u32 {
            let mut tag = [0u8; 16];
            tag[..4].copy_from_slice(&n.to_le_bytes());
            map.record(tag, now);
        }
        let total: usize = map.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= TOUCH_SHARD_CAPACITY * TOUCH_SHARDS, "{total}");
    }
}
