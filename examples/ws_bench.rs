//! Websocket echo round trips through the router compared with the same echo backend directly.
//! One client, sequential round trips (send, wait for the echo), so the numbers are latency, not
//! throughput; the router adds one hop of copying in each direction. When `nginx` is installed,
//! the same rows also run through nginx as a websocket proxy, for reference: what one proxy hop
//! costs with a mature proxy.
//!
//! Run: `cargo run --release --example ws_bench [messages]` (default 10,000 per row).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use approuter::config::{Config, Env};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("the message count must be a number")?
        .unwrap_or(10_000);

    let backend = echo_backend().await?;
    let xs_app = serde_json::json!({
        "websockets": {"enabled": true},
        "routes": [{"source": "^/ws/(.*)$", "target": "/$1", "destination": "echo", "authenticationType": "none"}]
    });
    let env = Env::from_pairs([(
        "destinations",
        serde_json::json!([{"name": "echo", "url": format!("ws://{backend}")}]).to_string(),
    )]);
    let config = Config::load(&xs_app.to_string(), &env, Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = approuter::app::build_state(config)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let router = listener.local_addr()?;
    tokio::spawn(approuter::server::run(listener, state, std::future::pending::<()>()));
    let nginx = Nginx::start(backend).await;
    if let Err(error) = &nginx {
        println!("(no nginx column: {error:#})");
    }

    println!(
        "{messages} sequential echo round trips per cell, in {ROUNDS} interleaved rounds (median round); \
         µs per round trip"
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>14} {:>13}",
        "payload", "direct", "router", "nginx", "router/direct", "nginx/direct"
    );
    let per_round = (messages / ROUNDS).max(1);
    for size in [32usize, 1024, 16 * 1024] {
        let payload = vec![b'x'; size];
        let origin = format!("http://{router}");
        let mut paths = vec![
            connect(&format!("ws://{backend}/echo"), None).await?,
            connect(&format!("ws://{router}/ws/echo"), Some(&origin)).await?,
        ];
        if let Ok(nginx) = &nginx {
            paths.push(connect(&format!("ws://{}/echo", nginx.addr), None).await?);
        }
        // Warm-up (allocator, TCP windows, the proxies' buffers) before measuring.
        for client in &mut paths {
            round_trips(client, &payload, 500).await?;
        }
        // Interleaved rounds, so that load from elsewhere on the machine hits every path alike.
        let mut rounds: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
        for _ in 0..ROUNDS {
            for (client, times) in paths.iter_mut().zip(rounds.iter_mut()) {
                times.push(round_trips(client, &payload, per_round).await?);
            }
        }
        let medians: Vec<f64> = rounds
            .iter_mut()
            .map(|times| {
                times.sort();
                times[times.len() / 2].as_secs_f64() * 1e6 / per_round as f64
            })
            .collect();
        let nginx_cell = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:>9.1} {:>9.1} {:>9} {:>13.2}x {:>13}",
            format!("{size} B"),
            medians[0],
            medians[1],
            nginx_cell(medians.get(2).map(|m| format!("{m:.1}"))),
            medians[1] / medians[0],
            nginx_cell(medians.get(2).map(|m| format!("{:.2}x", m / medians[0]))),
        );
    }
    Ok(())
}

/// Rounds per cell; the median round is reported.
const ROUNDS: usize = 9;

async fn round_trips(client: &mut Client, payload: &[u8], count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..count {
        client.send(Message::binary(payload.to_vec())).await?;
        match client.next().await {
            Some(Ok(Message::Binary(echo))) if echo.len() == payload.len() => {}
            other => anyhow::bail!("unexpected answer: {other:?}"),
        }
    }
    Ok(started.elapsed())
}

async fn connect(url: &str, origin: Option<&str>) -> anyhow::Result<Client> {
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse()?);
    }
    // Nagle off, as the router and the backend have it: otherwise every row measures delayed ACKs.
    let (client, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    Ok(client)
}

async fn echo_backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_binary() || message.is_text()) && socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// nginx (a single process, so that stopping it leaves no worker behind) as a websocket proxy in front of the same backend; stopped on drop.
struct Nginx {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(backend: SocketAddr) -> anyhow::Result<Nginx> {
        let version = std::process::Command::new("nginx")
            .arg("-V")
            .output()
            .context("running nginx -V")?;
        let modules = String::from_utf8_lossy(&version.stderr).into_owned();
        let dir = tempfile::tempdir()?;
        let prefix = dir.path().display().to_string();
        // A port chosen by the kernel and handed to nginx; good enough for a benchmark on loopback.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        // Temp paths inside the work folder, for the modules this nginx was built with.
        let mut temp_paths = format!("client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;");
        for module in ["fastcgi", "uwsgi", "scgi"] {
            if !modules.contains(&format!("--without-http_{module}_module")) {
                temp_paths.push_str(&format!(" {module}_temp_path {prefix}/{module};"));
            }
        }
        let config = format!(
            "master_process off; worker_processes 1; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off; {temp_paths}\n\
             \x20 server {{\n    listen {addr};\n    location / {{\n\
             \x20     proxy_pass http://{backend}; proxy_http_version 1.1;\n\
             \x20     proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";\n\
             \x20     proxy_read_timeout 3600s; tcp_nodelay on;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), config)?;
        let child = std::process::Command::new("nginx")
            .args(["-p", &prefix, "-c", "nginx.conf", "-g", "daemon off;"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Nginx { addr, child, _dir: dir };
        for _ in 0..250 {
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait()? {
                anyhow::bail!("nginx exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("nginx did not listen on {addr} within 5 s")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
