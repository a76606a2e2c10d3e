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
//!   another). The request that met the fault fails; the following ones use the new master.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use crate::util::random_bytes;

/// A connection attempt shared by every request that waits for it; `None` once the store is gone.
type Connecting = Shared<BoxFuture<'static, Option<MultiplexedConnection>>>;

/// The master's connection, found through the sentinels; clones share it.
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held during one attempt only; attempts never overlap, since one replaces the other.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    master_name: String,
    min_delay: Duration,
    max_delay: Duration,
    attempt_timeout: Duration,
    /// The current connection, or the attempt that will yield it.
    current: ArcSwap<Connecting>,
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
    pub(crate) fn new(client: SentinelClient, master_name: &str, timing: Timing) -> SentinelConnection {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timing.command_timeout))
            .set_response_timeout(Some(timing.command_timeout));
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            sentinel: tokio::sync::Mutex::new(client),
            config,
            master_name: master_name.to_string(),
            min_delay: timing.min_delay,
            max_delay: timing.max_delay.max(timing.min_delay),
            attempt_timeout: timing.command_timeout,
            current: ArcSwap::from_pointee(connecting(weak.clone())),
        });
        tokio::spawn(inner.current.load_full().as_ref().clone().map(drop));
        SentinelConnection { inner }
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
                "the session store is shutting down",
            ))),
        }
    }

    /// Replaces `seen` with a new attempt, unless another request already did.
    fn reconnect(&self, seen: &Arc<Connecting>, reason: &'static str) {
        let next = Arc::new(connecting(Arc::downgrade(&self.inner)));
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
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (seen, mut connection) = self.current().await?;
            let result = connection.req_packed_commands(cmd, offset, count).await;
            self.check(&seen, &result, |replies: &Vec<Value>| {
                replies.iter().any(is_read_only_reply)
            });
            result
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

/// Attempts until one succeeds; holds the store only weakly, so a dropped store ends it.
fn connecting(inner: Weak<Inner>) -> Connecting {
    async move {
        let mut failures: u32 = 0;
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
