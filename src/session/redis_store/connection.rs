//! The connection to Redis: one multiplexed connection with automatic reconnection, a cluster
//! connection, or the master named by Redis Sentinel (see [`super::sentinel`]); plain or TLS
//! (rustls with aws-lc-rs).

use std::path::PathBuf;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::sentinel::{Access, SentinelConnection, Timing};
use super::{millis, Error};
use crate::config::RedisSettings;

/// One multiplexed connection with reconnection, a cluster connection (which keeps one per node),
/// or a connection to the master the sentinels name.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    Sentinel(SentinelConnection),
}

impl Connection {
    /// A command got no answer within the command timeout. A Sentinel connection then asks for the
    /// master again (it may be cut off and replaced); the others keep waiting for their server.
    pub(super) fn timed_out(&self) {
        if let Connection::Sentinel(connection) = self {
            connection.timed_out();
        }
    }
}

impl ConnectionLike for Connection {
    // Single and Sentinel connections notice a broken connection only when a command fails on it
    // (an instance idle through a Redis restart holds a dead one), so the command that met the
    // break is sent once more, on the fresh connection that failure started. The cluster client
    // does this itself (reconnect and retry, within its retry budget). The command timeout bounds
    // both tries together (see `RedisStore::run`).
    //
    // A command whose connection broke may or may not have run, so every command the store sends
    // must be safe to run twice (the second try sends the same bytes):
    // - GET, EXISTS, ZRANGEBYSCORE, PING: reads.
    // - SET PX (with or without XX), PEXPIRE, ZADD, SCRIPT LOAD: the same value, TTL, score or
    //   script again; a TTL then counts from the second try.
    // - DEL, ZREM, GETDEL: the key ends up gone either way, but a second try may find nothing. A
    //   GETDEL whose first reply was lost reads as absent: a login attempt fails closed (the
    //   browser logs in again), a logout ends the session but skips the backend logout calls. A
    //   sweep's ZREM claim whose reply was lost leaves the backend call to nobody, as when no
    //   instance sweeps in time.
    // - The refresh lock: taking it is a script that also answers "taken" to the holder of the
    //   same token; renewing and releasing compare the token, so a second try changes nothing.
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => Box::pin(async move {
                match connection.send_packed_command(cmd).await {
                    Err(error) if broke(&error) => connection.send_packed_command(cmd).await,
                    result => result,
                }
            }),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
            Connection::Sentinel(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => Box::pin(async move {
                match connection.send_packed_commands(cmd, offset, count).await {
                    Err(error) if broke(&error) => connection.send_packed_commands(cmd, offset, count).await,
                    result => result,
                }
            }),
            Connection::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
            Connection::Sentinel(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
            Connection::Sentinel(connection) => connection.get_db(),
        }
    }
}

/// The connection broke (closed, reset, refused): the command may be sent again on a new one. A
/// timeout is not a break: the server may still be working on it, and a new connection would not
/// answer sooner.
pub(super) fn broke(error: &RedisError) -> bool {
    error.is_connection_dropped() && !error.is_timeout()
}

pub(super) fn connect(settings: &RedisSettings, ca_files: &[PathBuf]) -> Result<Connection, Error> {
    let client_error = |source| Error::Client {
        url: settings.display_url(),
        source,
    };
    let tls = match &settings.sentinel {
        Some(sentinel) => sentinel.tls,
        None => settings.url.starts_with("rediss:"),
    };
    let inline_ca = settings.sentinel.as_ref().and_then(|sentinel| sentinel.ca_pem.as_ref());
    let certificates = if let (true, Some(pem)) = (tls, inline_ca) {
        Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone().into_bytes()),
        })
    } else if tls && !ca_files.is_empty() {
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
    if let Some(sentinel) = &settings.sentinel {
        return sentinel_connection(settings, sentinel, certificates).map_err(client_error);
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

fn sentinel_connection(
    settings: &RedisSettings,
    sentinel: &crate::config::SentinelSettings,
    certificates: Option<redis::TlsCertificates>,
) -> redis::RedisResult<Connection> {
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    use redis::{ConnectionAddr, TlsMode};

    let nodes = sentinel.nodes.iter().map(|(host, port)| {
        if sentinel.tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        }
    });
    let mut builder = SentinelClientBuilder::new(nodes, &sentinel.master_name, SentinelServerType::Master)?;
    // One set of credentials for the master and the sentinels, as SAP's redis-operator deploys them.
    if let Some(username) = &sentinel.username {
        builder = builder
            .set_client_to_redis_username(username)
            .set_client_to_sentinel_username(username);
    }
    if let Some(password) = &sentinel.password {
        builder = builder
            .set_client_to_redis_password(password)
            .set_client_to_sentinel_password(password);
    }
    if sentinel.tls {
        // Certificate and host name are always verified, against the address the sentinels announce.
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(certificates) = &certificates {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates.clone());
        }
    }
    let client = builder.build()?;
    let access = Access {
        tls: sentinel.tls,
        certificates: if sentinel.tls { certificates } else { None },
        username: sentinel.username.clone(),
        password: sentinel.password.clone(),
    };
    Ok(Connection::Sentinel(SentinelConnection::new(
        client,
        &sentinel.nodes,
        &sentinel.master_name,
        access,
        Timing {
            min_delay: settings.reconnect_min_delay,
            max_delay: settings.reconnect_max_delay,
            command_timeout: settings.command_timeout,
        },
    )?))
}
