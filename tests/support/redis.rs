//! A real `redis-server` (Debian's package) on a free loopback port, killed on drop. It can be
//! frozen (SIGSTOP: commands time out), killed and restarted on the same port with its data.
//! [`SentinelGroup`]: a master, its replica and a sentinel watching them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    pub port: u16,
    /// `requirepass` (and `masterauth`), when started with one.
    password: Option<String>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with persistence off except for explicit `SAVE`s (see [`RedisServer::crash`]).
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// Starts a server with extra command-line arguments (TLS, cluster mode, …).
    pub async fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::launch(args, None).await
    }

    /// Starts a server that demands `password` from clients and uses it towards its master.
    pub async fn start_with_password(args: &[&str], password: &str) -> RedisServer {
        let mut all: Vec<&str> = vec!["--requirepass", password, "--masterauth", password];
        all.extend_from_slice(args);
        let mut server = RedisServer::launch(&all, None).await;
        server.password = Some(password.to_string());
        server
    }

    async fn launch(args: &[&str], tls: Option<(&str, &str)>) -> RedisServer {
        // Redis takes no port 0: pick a free one and hand it over (a short race, loopback only).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some((cert_pem, key_pem)) = tls {
            let cert = dir.path().join("server.pem");
            let key = dir.path().join("server.key");
            std::fs::write(&cert, cert_pem).expect("write cert");
            std::fs::write(&key, key_pem).expect("write key");
            // `--port 0` (after `--port PORT`: the last one wins) turns plain TCP off.
            for arg in [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-auth-clients",
                "no",
            ] {
                args.push(arg.to_string());
            }
            for (flag, path) in [
                ("--tls-cert-file", &cert),
                ("--tls-key-file", &key),
                ("--tls-ca-cert-file", &cert),
            ] {
                args.push(flag.to_string());
                args.push(path.display().to_string());
            }
        }
        let mut server = RedisServer {
            port,
            password: None,
            dir,
            args,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts a server that speaks only TLS, with this certificate chain and key (PEM); clients
    /// are not asked for certificates. Reach it at [`RedisServer::tls_url`].
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> RedisServer {
        RedisServer::launch(&[], Some((cert_pem, key_pem))).await
    }

    /// Starts a one-node Redis Cluster that owns every slot.
    pub async fn start_cluster() -> RedisServer {
        let server =
            RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]).await;
        let mut connection = server.connection().await;
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async(&mut connection)
            .await
            .expect("CLUSTER ADDSLOTSRANGE");
        server.wait_for_cluster().await;
        server
    }

    /// Returns once a cluster node calls its cluster state ok. The state turns ok on the server's
    /// cron ticks (after a restart, no sooner than two seconds: a rebooted master waits before it
    /// takes writes again); there is no event to wait for, so this is a bounded retry with a
    /// short pause (the last resort).
    async fn wait_for_cluster(&self) {
        let connection = self.connection().await;
        poll("the cluster state to turn ok", || {
            let mut connection = connection.clone();
            async move {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .expect("INFO");
                info.contains("cluster_state:ok")
            }
        })
        .await;
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:PORT`, for a server from [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The folder holding `dump.rdb` (and anything a test puts there).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().display().to_string();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", &dir, "--dbfilename", "dump.rdb", "--loglevel", "notice"])
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .expect("redis-server (Debian package redis-server) on PATH");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Readiness from the server's own log line, not from polling; bounded in case it fails.
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "redis-server did not start on port {port}");
        // Keep draining the log so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server running")
            .to_string()
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Freezes the server (SIGSTOP): connections stay open, commands get no answer.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Writes the data to disk, then kills the server (SIGKILL): a crash after a snapshot.
    pub async fn crash(&mut self) {
        let mut connection = self.connection().await;
        let _: () = redis::cmd("SAVE").query_async(&mut connection).await.expect("SAVE");
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Starts the server again on the same port and folder; it loads the last snapshot. Returns
    /// once it accepts connections, and for a cluster node once its cluster state is ok.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn().await;
        if self.args.iter().any(|arg| arg == "--cluster-enabled") {
            self.wait_for_cluster().await;
        }
    }

    /// A plain client connection, for looking at what the router stored.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        // A generous response timeout: SAVE on a busy test machine can take seconds.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(std::time::Duration::from_secs(30)));
        let url = match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .expect("client")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect to redis-server")
    }

    /// Every key matching `pattern`, with its raw value.
    pub async fn dump(&self, pattern: &str) -> Vec<(String, Vec<u8>)> {
        let mut connection = self.connection().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
            .expect("KEYS");
        let mut entries = Vec::new();
        for key in keys {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("GET");
            entries.push((key, value));
        }
        entries.sort();
        entries
    }

    /// Counts of commands the server has executed, by command name (`INFO commandstats`).
    pub async fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut connection = self.connection().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .expect("INFO");
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_string(), calls.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // SIGKILL also ends a frozen (stopped) server.
            let _ = child.start_kill();
        }
    }
}

/// The name the sentinel of a [`SentinelGroup`] monitors its master under.
pub const MASTER_NAME: &str = "sessions-master";

/// A master, one replica and one sentinel (quorum 1) on loopback, all with one password. The
/// sentinel declares a server down after 1 s without an answer.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: SentinelServer,
    pub password: String,
}

impl SentinelGroup {
    /// Starts the three and returns once the sentinel knows the master and a healthy replica.
    pub async fn start() -> SentinelGroup {
        let password = "sentinel-group-password".to_string();
        let master = RedisServer::start_with_password(&[], &password).await;
        let master_port = master.port.to_string();
        let replica = RedisServer::start_with_password(&["--replicaof", "127.0.0.1", &master_port], &password).await;
        let connection = replica.connection().await;
        poll("the replica to sync with the master", || {
            let mut connection = connection.clone();
            async move {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut connection)
                    .await
                    .expect("INFO");
                info.contains("master_link_status:up")
            }
        })
        .await;
        let sentinel = SentinelServer::start(master.port, &password).await;
        let group = SentinelGroup {
            master,
            replica,
            sentinel,
            password,
        };
        let replica_port = group.replica.port.to_string();
        let connection = group.sentinel.connection().await;
        poll("the sentinel to know a healthy replica", || {
            let mut connection = connection.clone();
            let replica_port = replica_port.clone();
            async move {
                let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(MASTER_NAME)
                    .query_async(&mut connection)
                    .await
                    .expect("SENTINEL REPLICAS");
                replicas.iter().any(|replica| {
                    replica.get("port") == Some(&replica_port)
                        && replica.get("flags").map(String::as_str) == Some("slave")
                        && replica.get("master-link-status").map(String::as_str) == Some("ok")
                })
            }
        })
        .await;
        group
    }

    /// The port of the server the sentinel names as master.
    pub async fn master_port(&self) -> u16 {
        let mut connection = self.sentinel.connection().await;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query_async(&mut connection)
            .await
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        port
    }

    /// Kills the master once the replica holds every write it has taken, and returns when the
    /// sentinel has promoted the replica (about two seconds: one to notice, one to fail over).
    pub async fn kill_master(&mut self) {
        self.replicate().await;
        self.master.crash().await;
        self.wait_for_promotion().await;
    }

    /// `SENTINEL FAILOVER` once the replica holds every write the master has taken; returns when
    /// the sentinel names the replica as master. The old master stays up, and stays a master
    /// until the sentinel demotes it (it looks at it every ten seconds).
    pub async fn fail_over(&self) {
        self.replicate().await;
        let mut sentinel = self.sentinel.connection().await;
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query_async(&mut sentinel)
            .await
            .expect("SENTINEL FAILOVER");
        self.wait_for_promotion().await;
    }

    /// Waits until `count` clients listen for failover announcements on the sentinel.
    pub async fn wait_for_listeners(&self, count: i64) {
        let connection = self.sentinel.connection().await;
        poll("clients listening on +switch-master", || {
            let mut connection = connection.clone();
            async move {
                // A sentinel has no PUBSUB command; its client list shows subscriptions.
                let clients: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut connection)
                    .await
                    .expect("CLIENT LIST");
                let listeners = clients.lines().filter(|line| line.contains(" sub=1 ")).count();
                listeners as i64 >= count
            }
        })
        .await;
    }

    /// The role the old master reports (`master` or `slave`).
    pub async fn old_master_role(&self) -> String {
        let mut master = self.master.connection().await;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut master)
            .await
            .expect("INFO");
        info.lines()
            .find_map(|line| line.strip_prefix("role:"))
            .unwrap_or("unknown")
            .trim()
            .to_string()
    }

    async fn wait_for_promotion(&self) {
        let replica_port = self.replica.port;
        poll("the sentinel to promote the replica", || async move {
            self.master_port().await == replica_port
        })
        .await;
    }

    /// Returns once the replica holds every write the master has taken.
    async fn replicate(&self) {
        let mut master = self.master.connection().await;
        // WAIT counts the replicas that have this client's writes, hence a write of its own;
        // replication is one ordered stream, so the router's earlier writes are there too.
        let _: () = redis::cmd("SET")
            .arg("test:replicated")
            .arg("1")
            .query_async(&mut master)
            .await
            .expect("SET");
        let acknowledged: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query_async(&mut master)
            .await
            .expect("WAIT");
        assert_eq!(acknowledged, 1, "the replica has every write");
    }
}

/// A `redis-server --sentinel` on a free loopback port, killed on drop.
pub struct SentinelServer {
    pub port: u16,
    password: String,
    _dir: tempfile::TempDir,
    _child: Child,
}

impl SentinelServer {
    /// A sentinel monitoring `127.0.0.1:master_port` as [`MASTER_NAME`]; ready when it answers PING.
    pub async fn start(master_port: u16, password: &str) -> SentinelServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        // The sentinel rewrites its configuration file, so it lives in the temp dir.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nrequirepass {password}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 sentinel auth-pass {MASTER_NAME} {password}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n",
                dir = dir.path().display(),
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian package redis-server) on PATH");
        let sentinel = SentinelServer {
            port,
            password: password.to_string(),
            _dir: dir,
            _child: child,
        };
        let url = sentinel.url();
        poll("the sentinel to answer PING", || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url.as_str()) else {
                    return false;
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(mut connection) => redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        sentinel
    }

    fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// A client connection to the sentinel.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the sentinel")
    }
}

/// Polls `check` until it holds, for at most ten seconds. Replication and the sentinel's view
/// change on the servers' own timers, with no event to wait for: this bounded retry is the last
/// resort the style guide allows.
pub async fn poll<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
