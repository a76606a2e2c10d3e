//! Builders for integration tests: a real backend on loopback, the router in-process on
//! `127.0.0.1:0`, the real binary, and a test client that never follows redirects.
#![allow(
    dead_code,
    unused_imports,
    reason = "every test crate compiles this module and uses a different part of it"
)]

pub mod backend;
pub mod chromium;
pub mod idp;
pub mod pki;
pub mod raw;
pub mod redis;
pub mod tunnel;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use approuter::app;
use approuter::config::{Config, Env};
use approuter::state::AppState;
use tokio::sync::oneshot;

pub use backend::{backend, Backend, Seen};

/// A router running in this process.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
    _keep: Vec<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops accepting and waits until every connection has finished.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Builds a router: an app folder with `xs-app.json` and `files`, and an environment.
pub struct GatewayBuilder {
    xs_app: serde_json::Value,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    options: app::Options,
    /// Folders that must outlive the router (CA files, binding folders).
    keep: Vec<tempfile::TempDir>,
    /// Above 1: serve as the binary does, on that many worker threads with a runtime each.
    workers: usize,
}

/// A router for `xs_app` (the JSON of xs-app.json).
pub fn gateway(xs_app: serde_json::Value) -> GatewayBuilder {
    GatewayBuilder {
        xs_app,
        env: Vec::new(),
        files: Vec::new(),
        options: app::Options::default(),
        keep: Vec::new(),
        workers: 1,
    }
}

impl GatewayBuilder {
    /// Sets an environment variable for the router (never the process environment).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// The `destinations` variable from (name, url) pairs.
    pub fn destinations(self, list: &[(&str, &str)]) -> Self {
        let json: Vec<serde_json::Value> = list
            .iter()
            .map(|(name, url)| serde_json::json!({"name": name, "url": url}))
            .collect();
        self.env("destinations", serde_json::Value::Array(json).to_string())
    }

    /// The `destinations` variable as raw JSON entries.
    pub fn destination_entries(self, entries: serde_json::Value) -> Self {
        self.env("destinations", entries.to_string())
    }

    /// Start options (clock, sweep interval).
    pub fn options(mut self, options: app::Options) -> Self {
        self.options = options;
        self
    }

    /// Serves on `workers` threads with a runtime each, as the binary does (`server::run_workers`),
    /// instead of on the test's runtime. Paused time does not reach those threads.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Keeps a folder alive as long as the router.
    pub fn keep(mut self, dir: tempfile::TempDir) -> Self {
        self.keep.push(dir);
        self
    }

    /// A file in the app folder.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_string(), content.into()));
        self
    }

    /// Writes the app folder and checks the configuration.
    pub fn config(&self) -> (tempfile::TempDir, Result<Config, approuter::config::Error>) {
        let dir = tempfile::tempdir().expect("temp dir");
        write_app(dir.path(), &self.xs_app, &self.files);
        let env = Env::from_pairs(self.env.clone());
        let config = app::load_config(
            &app::Sources {
                dir: dir.path().to_path_buf(),
                xs_app: None,
            },
            env,
        );
        (dir, config)
    }

    /// Starts the router on `127.0.0.1:0`.
    pub async fn start(self) -> Gateway {
        let (dir, config) = self.config();
        let config = config.unwrap_or_else(|errors| panic!("test configuration invalid: {errors}"));
        let state = app::build_state_with(config, self.options).expect("router state");
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = shutdown_rx.await;
        };
        let (addr, task) = if self.workers > 1 {
            let listeners =
                approuter::server::bind_workers("127.0.0.1:0".parse().expect("address"), self.workers).expect("bind");
            let addr = listeners[0].local_addr().expect("addr");
            (
                addr,
                tokio::spawn(approuter::server::run_workers(listeners, state.clone(), stopped)),
            )
        } else {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            (
                addr,
                tokio::spawn(approuter::server::run(listener, state.clone(), stopped)),
            )
        };
        Gateway {
            addr,
            state,
            dir,
            _keep: self.keep,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }
}

/// Writes xs-app.json and other files into `dir`.
pub fn write_app(dir: &Path, xs_app: &serde_json::Value, files: &[(String, Vec<u8>)]) {
    std::fs::write(
        dir.join("xs-app.json"),
        serde_json::to_vec_pretty(xs_app).expect("json"),
    )
    .expect("write");
    for (path, content) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(full, content).expect("write file");
    }
}

/// The claims of the JWT in `Authorization: Bearer <jwt>` (or a header value of that form), not
/// verified: what a backend was sent.
pub fn bearer_claims(bearer: &str) -> serde_json::Value {
    use base64::Engine;
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

/// A client that does not follow redirects and keeps no cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// The path of the real `approuter` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_approuter"))
}

/// The URL of the binary's main listener, from the line it prints when it listens.
pub async fn listening_url(child: &mut tokio::process::Child) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("stdout line") {
            if let Some(rest) = line.strip_prefix("approuter listening on ") {
                return rest.split_whitespace().next().expect("url").to_string();
            }
        }
        panic!("the binary ended without a listening line");
    })
    .await
    .expect("no listening line in time")
}

/// The binary's worker threads besides its main thread (the kernel keeps 15 bytes of a name).
pub fn worker_threads(child: &tokio::process::Child) -> usize {
    let pid = child.id().expect("running");
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads of the binary")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("approuter-worke"))
        .count()
}

/// Stops the binary with SIGTERM, as a platform does, and returns how it exited: it finishes what
/// is in flight and writes the log lines it buffered.
pub async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running");
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("the binary did not exit after SIGTERM")
        .expect("exit status")
}

/// Runs the binary with `args` and only `env` in its environment, to its end (within 30 s): for
/// runs that stop at start-up, or subcommands.
pub async fn run_binary(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> std::process::Output {
    let child = tokio::process::Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the approuter binary");
    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the binary did not end")
        .expect("binary output")
}

/// A loopback address where every connection is refused, for as long as this value lives: a
/// socket bound there that never listens holds the port, so no listener of a test running in
/// parallel can take it over (a port merely bound and released could be handed out again).
pub struct Refusing {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

/// See [`Refusing`].
pub fn refusing() -> Refusing {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let addr = socket.local_addr().expect("addr");
    Refusing { _socket: socket, addr }
}
