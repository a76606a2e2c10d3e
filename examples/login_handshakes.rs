//! How many TLS handshakes the code exchange costs at the mutual-TLS token endpoint (`certurl`) over
//! many logins: a development XSUAA, a small backend and a router in-process, then LOGINS complete
//! logins (default 1000) by CONCURRENCY browsers at a time (default 8), each with its own cookie
//! jar. Prints the handshakes and token requests the development XSUAA counted, e.g.
//!
//! ```text
//! cargo run --release --example login_handshakes [LOGINS [CONCURRENCY]]
//! 1000 logins: 8 TLS handshakes to certurl (pool size 16), 1000 token requests
//! ```
//!
//! The token client keeps up to 16 idle connections per host, so with no more than 16 logins at a
//! time the handshakes should stay at about the concurrency, not grow with the logins.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::cookie::{CookieStore, Jar};

use approuter::app::{self, Sources};
use approuter::config::Env;

/// `pool_max_idle_per_host` of the router's token client (src/idp/xsuaa.rs).
const POOL_SIZE: usize = 16;
/// The whole run is bounded, so a stuck login ends the example instead of hanging it.
const TIME_LIMIT: Duration = Duration::from_secs(300);
const BODY: &[u8] = b"hello from backend\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let logins: usize = args.next().map_or(Ok(1000), |v| v.parse()).context("LOGINS")?;
    let concurrency: usize = args.next().map_or(Ok(8), |v| v.parse()).context("CONCURRENCY")?;
    anyhow::ensure!(
        logins >= 1 && concurrency >= 1,
        "LOGINS and CONCURRENCY must be at least 1"
    );

    let xsuaa = xsuaa_dev::DevXsuaa::builder()
        .start()
        .await
        .context("development XSUAA")?;
    let work = tempfile::tempdir()?;
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, xsuaa.ca_pem())?;
    let backend = start_backend().await?;

    let xs_app = serde_json::json!({"routes": [
        {"source": "^/auth/(.*)$", "target": "/$1", "destination": "backend", "csrfProtection": false}
    ]});
    std::fs::write(work.path().join("xs-app.json"), xs_app.to_string())?;
    let env = vec![
        ("VCAP_SERVICES".to_string(), xsuaa.vcap_services(&xsuaa.credentials())),
        ("XS_CACERT_PATH".to_string(), ca.display().to_string()),
        // A plain 302 after the callback instead of the fragment-preserving page.
        ("PRESERVE_FRAGMENT".to_string(), "false".to_string()),
        // Every login comes from 127.0.0.1; the default limit would refuse most of them.
        ("LOGIN_RATE_LIMIT".to_string(), "off".to_string()),
        ("ADMIN_ADDRESS".to_string(), "off".to_string()),
        (
            "destinations".to_string(),
            serde_json::json!([{"name": "backend", "url": format!("http://{backend}"), "forwardAuthToken": true}])
                .to_string(),
        ),
    ];
    let sources = Sources {
        dir: work.path().to_path_buf(),
        xs_app: None,
    };
    let config = app::load_config(&sources, Env::from_pairs(env)).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let state = app::build_state(config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/auth/plain", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(approuter::server::run(listener, state, async {
        let _ = stopped.await;
    }));

    let ca_cert = reqwest::Certificate::from_pem(xsuaa.ca_pem().as_bytes())?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(logins) {
        let (next, url, ca_cert) = (next.clone(), url.clone(), ca_cert.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < logins {
                login(&url, &ca_cert).await?;
            }
            anyhow::Ok(())
        });
    }
    let outcome = tokio::time::timeout(TIME_LIMIT, async {
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        anyhow::Ok(())
    })
    .await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("{logins} logins did not finish within {TIME_LIMIT:?}"),
    }

    let stats = xsuaa.stats();
    let token_requests: u64 = stats.token_requests_by_grant.values().sum();
    println!(
        "{logins} logins: {} TLS handshakes to certurl (pool size {POOL_SIZE}), {token_requests} token requests",
        stats.certurl_tls_handshakes
    );
    println!(
        "concurrency {concurrency}, {:.1} s, {:.0} logins/s; token requests by grant {:?}, refused {}",
        elapsed.as_secs_f64(),
        logins as f64 / elapsed.as_secs_f64(),
        stats.token_requests_by_grant,
        stats.token_requests_refused
    );

    let _ = stop.send(());
    server.await??;
    xsuaa.shutdown().await;
    Ok(())
}

/// One complete login with a fresh cookie jar: follows the redirects from `url` through authorize
/// and the callback back to `url`, then checks the backend's body and the session cookie.
async fn login(url: &str, ca: &reqwest::Certificate) -> anyhow::Result<()> {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .add_root_certificate(ca.clone())
        .no_proxy()
        .build()?;
    let start = reqwest::Url::parse(url)?;
    let mut current = start.clone();
    for _ in 0..10 {
        let response = client.get(current.clone()).send().await?;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get("location")
                .context("redirect without location")?
                .to_str()?
                .to_string();
            current = current.join(&location)?;
            continue;
        }
        anyhow::ensure!(
            response.status() == 200,
            "login ended with {} at {current}",
            response.status()
        );
        anyhow::ensure!(current == start, "login ended at {current}, not {start}");
        let body = response.bytes().await?;
        anyhow::ensure!(body.as_ref() == BODY, "login ended with an unexpected body: {body:?}");
        let cookies = jar.cookies(&start).context("no cookies after the login")?;
        anyhow::ensure!(
            cookies
                .to_str()?
                .split(';')
                .any(|pair| pair.trim().starts_with("JSESSIONID=")),
            "no JSESSIONID after the login"
        );
        return Ok(());
    }
    anyhow::bail!("redirect loop from {url}")
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
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}
