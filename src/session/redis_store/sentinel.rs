//! The connection to the master of a Redis Sentinel deployment. The redis crate asks the sentinels
//! for the master but keeps no connection alive across a failover, so this does what its
//! connection manager does for one server: one multiplexed connection, shared by every request,
//! replaced in the background when it breaks.
//!
//! - A connection attempt asks the sentinels for the master, connects and checks that the server
//!   calls itself master (`ROLE`). It is bounded by the command timeout and repeated with the
//!   store's backoff until one succeeds. Requests meanwhile wait for it, bounded by the store's
//!   command timeout, so they fail closed (503) while no master is reachable.
//! - A new attempt starts after a connection error, a `READONLY` reply (the server was demoted)
//!   or a command timeout (a master cut off from us, while the sentinels may have promoted
//!   another). A request whose connection broke is sent once more on the new connection (an
//!   instance idle through a restart of the master holds a dead one); after a `READONLY` reply or
//!   a timeout the request fails and the following ones use the new master.
//! - Each sentinel is also asked to announce failovers (`+switch-master`, as Jedis and ioredis
//!   listen for): the old master may still be up and take writes (a manual failover, a healed
//!   partition) until the sentinels demote it, which can take them twenty seconds. On the
//!   announcement the next attempt goes straight to the announced master, and falls back to
//!   asking the sentinels if that fails.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisError, RedisFuture, RedisResult, Role, ServerErrorKind, TlsCertificates, Value,
};
use tokio::sync::watch;

use super::connection::broke;
use crate::util::random_bytes;

/// A connection attempt shared by every request that waits for it; `None` once the store is gone
/// or the attempt was replaced by one that has already connected.
type Connecting = Shared<BoxFuture<'static, Option<MultiplexedConnection>>>;

/// The master's connection, found through the sentinels; clones share it.
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held during one attempt; an attempt that was replaced but still runs waits its turn.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    master_name: String,
    min_delay: Duration,
    max_delay: Duration,
    attempt_timeout: Duration,
    /// The current connection, or the attempt that will yield it.
    current: ArcSwap<Connecting>,
    access: Access,
    /// The last `+switch-master` announcement acted on: every sentinel sends the same one.
    last_switch: std::sync::Mutex<String>,
    /// Dropped with the store, which ends the announcement listeners.
    _stop_tx: watch::Sender<()>,
}

/// How to reach and authenticate to the servers of the deployment (sentinels and master alike).
pub(crate) struct Access {
    pub tls: bool,
    pub certificates: Option<TlsCertificates>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Access {
    /// A client for the server at `host:port`.
    fn client(&self, host: &str, port: u16) -> RedisResult<Client> {
        let address = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_string(), port)
        };
        let mut redis = RedisConnectionInfo::default();
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let info = address.into_connection_info()?.set_redis_settings(redis);
        match &self.certificates {
            Some(certificates) => Client::build_with_tls(info, certificates.clone()),
            None => Client::open(info),
        }
    }
}

/// How to reach the master and how hard to try.
pub(crate) struct Timing {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub command_timeout: Duration,
}

// === impl SentinelConnection ===

impl SentinelConnection {
    /// Starts connecting at once (in the background), so the first request finds a connection.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    /// A sentinel address the redis crate cannot make a client of.
    pub(crate) fn new(
        client: SentinelClient,
        sentinels: &[(String, u16)],
        master_name: &str,
        access: Access,
        timing: Timing,
    ) -> RedisResult<SentinelConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timing.command_timeout))
            .set_response_timeout(Some(timing.command_timeout));
        let listeners = sentinels
            .iter()
            .map(|(host, port)| access.client(host, *port))
            .collect::<RedisResult<Vec<Client>>>()?;
        let (stop_tx, stop_rx) = watch::channel(());
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            sentinel: tokio::sync::Mutex::new(client),
            config,
            master_name: master_name.to_string(),
            min_delay: timing.min_delay,
            max_delay: timing.max_delay.max(timing.min_delay),
            attempt_timeout: timing.command_timeout,
            current: ArcSwap::from_pointee(connecting(weak.clone(), None)),
            access,
            last_switch: std::sync::Mutex::new(String::new()),
            _stop_tx: stop_tx,
        });
        tokio::spawn(inner.current.load_full().as_ref().clone().map(drop));
        for sentinel in listeners {
            tokio::spawn(listen(sentinel, Arc::downgrade(&inner), stop_rx.clone()));
        }
        Ok(SentinelConnection { inner })
    }

    /// Tells the connection that a command got no answer in time: the master may be cut off.
    pub(crate) fn timed_out(&self) {
        let seen = self.inner.current.load_full();
        // Only a working connection is replaced; an attempt in progress goes on.
        if seen.peek().is_some() {
            self.reconnect(&seen, "a command timed out");
        }
    }

    /// The current connection, waiting for the attempt in progress if there is one.
    async fn current(&self) -> Result<(Arc<Connecting>, MultiplexedConnection), RedisError> {
        let seen = self.inner.current.load_full();
        match seen.as_ref().clone().await {
            Some(connection) => Ok((seen, connection)),
            None => Err(RedisError::from((
                ErrorKind::Client,
                "the Redis master changed while connecting",
            ))),
        }
    }

    /// Replaces `seen` with a new attempt, unless another request already did.
    fn reconnect(&self, seen: &Arc<Connecting>, reason: &'static str) {
        self.reconnect_to(seen, reason, None);
    }

    /// As [`SentinelConnection::reconnect`], trying `hint` (an announced master) first.
    fn reconnect_to(&self, seen: &Arc<Connecting>, reason: &'static str, hint: Option<(String, u16)>) {
        let next = Arc::new(connecting(Arc::downgrade(&self.inner), hint));
        let previous = self.inner.current.compare_and_swap(seen, Arc::clone(&next));
        if Arc::ptr_eq(&previous, seen) {
            tracing::info!(
                master = %self.inner.master_name,
                reason,
                "asking the Redis sentinels for the current master again"
            );
            tokio::spawn(next.as_ref().clone().map(drop));
        }
    }

    fn check<T>(&self, seen: &Arc<Connecting>, result: &Result<T, RedisError>, replies: impl FnOnce(&T) -> bool) {
        let reason = match result {
            Err(error) if is_read_only(error) => Some("the server is no longer the master (READONLY)"),
            Err(error) if error.is_unrecoverable_error() || error.is_connection_dropped() => {
                Some("the connection to the master failed")
            }
            Err(error) if error.is_timeout() => Some("a command timed out"),
            Ok(value) if replies(value) => Some("the server is no longer the master (READONLY)"),
            _ => None,
        };
        if let Some(reason) = reason {
            self.reconnect(seen, reason);
        }
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (seen, mut connection) = self.current().await?;
            let result = connection.req_packed_command(cmd).await;
            self.check(&seen, &result, is_read_only_reply);
            match result {
                // `check` has started a new connection; see `Connection` for why a second try is safe.
                Err(error) if broke(&error) => {
                    let (seen, mut connection) = self.current().await?;
                    let result = connection.req_packed_command(cmd).await;
                    self.check(&seen, &result, is_read_only_reply);
                    result
                }
                result => result,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let read_only = |replies: &Vec<Value>| replies.iter().any(is_read_only_reply);
            let (seen, mut connection) = self.current().await?;
            let result = connection.req_packed_commands(cmd, offset, count).await;
            self.check(&seen, &result, read_only);
            match result {
                Err(error) if broke(&error) => {
                    let (seen, mut connection) = self.current().await?;
                    let result = connection.req_packed_commands(cmd, offset, count).await;
                    self.check(&seen, &result, read_only);
                    result
                }
                result => result,
            }
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

// === impl Inner ===

impl Inner {
    /// One attempt: the sentinels' master, connected and confirmed, within the attempt timeout.
    async fn attempt(&self) -> Result<MultiplexedConnection, String> {
        let attempt = async {
            let mut sentinel = self.sentinel.lock().await;
            sentinel.get_async_connection_with_config(&self.config).await
        };
        self.bounded(attempt).await
    }

    /// One attempt at the server a sentinel announced, if it confirms that it is the master.
    async fn attempt_at(&self, host: &str, port: u16) -> Result<MultiplexedConnection, String> {
        let attempt = async {
            let client = self.access.client(host, port)?;
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await?;
            match redis::cmd("ROLE").query_async::<Role>(&mut connection).await? {
                Role::Primary { .. } => Ok(connection),
                _ => Err(RedisError::from((
                    ErrorKind::Client,
                    "the announced master is not a master (yet)",
                ))),
            }
        };
        self.bounded(attempt).await
    }

    async fn bounded(
        &self,
        attempt: impl std::future::Future<Output = RedisResult<MultiplexedConnection>>,
    ) -> Result<MultiplexedConnection, String> {
        match tokio::time::timeout(self.attempt_timeout, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.attempt_timeout.as_millis())),
        }
    }

    /// The first delay doubled per failed attempt, capped, plus up to as much again of jitter
    /// (so that a fleet of routers does not reconnect in step).
    fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .min_delay
            .saturating_mul(2u32.saturating_pow(failures.min(16)))
            .min(self.max_delay);
        let [random] = random_bytes::<1>();
        base + base.mul_f64(f64::from(random) / 255.0)
    }
}

/// Attempts until one succeeds, the first at `hint` when given; holds the store only weakly, so a
/// dropped store ends it.
fn connecting(inner: Weak<Inner>, hint: Option<(String, u16)>) -> Connecting {
    async move {
        let mut failures: u32 = 0;
        if let Some((host, port)) = hint {
            let inner = inner.upgrade()?;
            match inner.attempt_at(&host, port).await {
                Ok(connection) => return Some(connection),
                Err(error) => tracing::debug!(%error, "the announced master did not answer as master; asking the sentinels"),
            }
        }
        loop {
            let inner = inner.upgrade()?;
            match inner.attempt().await {
                Ok(connection) => {
                    if failures > 0 {
                        tracing::info!(master = %inner.master_name, "connected to the Redis master again");
                    }
                    return Some(connection);
                }
                Err(error) => {
                    // The first failure is worth a warning; the retries that follow are not.
                    if failures == 0 {
                        tracing::warn!(master = %inner.master_name, %error, "no Redis master through the sentinels; retrying");
                    } else {
                        tracing::debug!(master = %inner.master_name, %error, failures, "no Redis master through the sentinels");
                    }
                    // A replaced attempt stops once its successor has connected.
                    if inner.current.load().peek().is_some_and(Option::is_some) {
                        return None;
                    }
                    let delay = inner.backoff(failures);
                    drop(inner);
                    tokio::time::sleep(delay).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
    .boxed()
    .shared()
}

/// Listens for `+switch-master` on one sentinel until the store is dropped, reconnecting to the
/// sentinel after a pause when the subscription breaks.
async fn listen(sentinel: Client, inner: Weak<Inner>, mut stop_rx: watch::Receiver<()>) {
    loop {
        let subscription = async {
            let mut pubsub = tokio::time::timeout(Duration::from_secs(5), sentinel.get_async_pubsub())
                .await
                .map_err(|_| RedisError::from((ErrorKind::Io, "timed out")))??;
            pubsub.subscribe("+switch-master").await?;
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let Some(inner) = inner.upgrade() else {
                    return Ok(());
                };
                switched(&inner, &payload);
            }
            Ok::<(), RedisError>(())
        };
        tokio::select! {
            _ = stop_rx.changed() => return,
            result = subscription => if let Err(error) = result {
                tracing::debug!(%error, "listening for Redis failover announcements failed");
            },
        }
        let Some(pause) = inner.upgrade().map(|inner| inner.max_delay.max(Duration::from_secs(1))) else {
            return;
        };
        tokio::select! {
            _ = stop_rx.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`: for our master, move to the new one.
fn switched(inner: &Arc<Inner>, payload: &str) {
    let fields: Vec<&str> = payload.split(' ').collect();
    let [name, _, _, host, port] = fields[..] else {
        return;
    };
    let Ok(port) = port.parse::<u16>() else {
        return;
    };
    if name != inner.master_name {
        return;
    }
    {
        let Ok(mut last) = inner.last_switch.lock() else {
            return;
        };
        if *last == payload {
            return;
        }
        payload.clone_into(&mut last);
    }
    let connection = SentinelConnection {
        inner: Arc::clone(inner),
    };
    let seen = inner.current.load_full();
    connection.reconnect_to(
        &seen,
        "the sentinels announced a new master (+switch-master)",
        Some((host.to_string(), port)),
    );
}

fn is_read_only(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || error.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, error)| error.kind() == Some(ServerErrorKind::ReadOnly))
        })
}

fn is_read_only_reply(value: &Value) -> bool {
    matches!(value, Value::ServerError(error) if error.kind() == Some(ServerErrorKind::ReadOnly))
}
