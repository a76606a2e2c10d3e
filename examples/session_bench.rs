//! Two routers for measuring authenticated routes with the in-memory store and with the Redis store
//! side by side: a development XSUAA, a small backend, a `redis-server` (Debian's package) on a free
//! loopback port, and one logged-in session per router. Prints one line per router,
//! `<store> <url> <cookie header>`, then serves until Ctrl-C. Drive it with a load generator, e.g.
//!
//! ```text
//! cargo run --release --example session_bench > /tmp/bench.txt &
//! wrk -t2 -c50 -d10s --latency -H "$(sed -n 's/^redis [^ ]* //p' /tmp/bench.txt)" \
//!     -H 'x-requested-with: XMLHttpRequest' "$(awk '/^redis/ {print $2}' /tmp/bench.txt)"
//! ```
//!
//! and `redis-cli -p <port> INFO commandstats` before and after for the commands per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::cookie::Jar;

use approuter::app::{self, Sources};
use approuter::config::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let xsuaa = xsuaa_dev::DevXsuaa::builder()
        .start()
        .await
        .context("development XSUAA")?;
    let work = tempfile::tempdir()?;
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, xsuaa.ca_pem())?;
    let backend = start_backend().await?;

    let redis_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut redis = tokio::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("redis-server")?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    for attempt in 0.. {
        match redis::Client::open(redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
        {
            Ok(_) => break,
            Err(error) if attempt >= 100 => return Err(error).context("redis-server did not start"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }

    let xs_app = serde_json::json!({"routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]});
    std::fs::write(work.path().join("xs-app.json"), xs_app.to_string())?;
    let base = vec![
        ("VCAP_SERVICES".to_string(), xsuaa.vcap_services(&xsuaa.credentials())),
        ("XS_CACERT_PATH".to_string(), ca.display().to_string()),
        ("PRESERVE_FRAGMENT".to_string(), "false".to_string()),
        (
            "destinations".to_string(),
            serde_json::json!([{"name": "backend", "url": format!("http://{backend}"), "forwardAuthToken": true}])
                .to_string(),
        ),
    ];
    let mut with_redis = base.clone();
    with_redis.push(("REDIS_URL".to_string(), redis_url.clone()));
    with_redis.push((
        "SESSION_SECRET".to_string(),
        "benchmark-session-secret-0123456789".to_string(),
    ));

    let mut servers = Vec::new();
    for (name, env) in [("memory", base), ("redis", with_redis)] {
        let sources = Sources {
            dir: work.path().to_path_buf(),
            xs_app: None,
        };
        let config = app::load_config(&sources, Env::from_pairs(env)).map_err(|errors| anyhow::anyhow!("{errors}"))?;
        let state = app::build_state(config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/api/bench", listener.local_addr()?);
        servers.push(tokio::spawn(approuter::server::run(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })));
        let cookie = login(&xsuaa, &url).await?;
        println!("{name} {url} cookie: {cookie}");
    }
    println!("redis-port {redis_port}");
    for server in servers {
        server.await??;
    }
    let _ = redis.kill().await;
    Ok(())
}

/// Follows the login redirects for `url` and returns the `Cookie` header value of the session.
async fn login(xsuaa: &xsuaa_dev::DevXsuaa, url: &str) -> anyhow::Result<String> {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .add_root_certificate(reqwest::Certificate::from_pem(xsuaa.ca_pem().as_bytes())?)
        .no_proxy()
        .build()?;
    let mut current = reqwest::Url::parse(url)?;
    for _ in 0..10 {
        let response = client.get(current.clone()).send().await?;
        if !response.status().is_redirection() {
            anyhow::ensure!(response.status() == 200, "login ended with {}", response.status());
            let cookies = reqwest::cookie::CookieStore::cookies(&*jar, &reqwest::Url::parse(url)?)
                .context("no session cookie")?;
            let session = cookies
                .to_str()?
                .split(';')
                .map(str::trim)
                .find(|pair| pair.starts_with("JSESSIONID="))
                .context("no JSESSIONID")?
                .to_string();
            return Ok(session);
        }
        let location = response.headers()["location"].to_str()?.to_string();
        current = current.join(&location)?;
    }
    anyhow::bail!("redirect loop")
}

/// A backend that answers every request with a short body.
async fn start_backend() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello from backend\n"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}
