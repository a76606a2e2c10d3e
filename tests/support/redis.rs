//! A real `redis-server` (Debian's package) on a free loopback port, killed on drop. It can be
//! frozen (SIGSTOP: commands time out), killed and restarted on the same port with its data.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    pub port: u16,
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
        // The cluster state turns ok on the server's next cron tick; there is no event to wait
        // for, so this is a bounded retry with a short pause (the last resort).
        for _ in 0..200 {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut connection)
                .await
                .expect("INFO");
            if info.contains("cluster_state:ok") {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the one-node cluster did not become ready");
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

    /// Starts the server again on the same port and folder; it loads the last snapshot.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn().await;
    }

    /// A plain client connection, for looking at what the router stored.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        // A generous response timeout: SAVE on a busy test machine can take seconds.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(std::time::Duration::from_secs(30)));
        redis::Client::open(self.url())
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
