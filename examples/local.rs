//! The whole local stack in one process, no cloud account needed: a development XSUAA (HTTPS, with
//! the token endpoint behind mutual TLS) with its Destination service, an example backend that shows
//! the claims of the token it receives, and the router serving `xs-app.json.example` with the app
//! folder `examples/app`. The `erp` destination lives at the Destination service: an
//! OAuth2UserTokenExchange destination to the example backend.
//!
//! Run: `cargo run --release --example local`, then open the printed URL.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use approuter::app::{self, Sources};
use approuter::config::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let backend = start_backend().await?;
    let xsuaa = xsuaa_dev::DevXsuaa::builder()
        .user(xsuaa_dev::User::new("jane.doe"))
        .destination(
            "erp",
            [
                ("URL", format!("http://{backend}/erp")),
                ("ProxyType", "Internet".into()),
                ("Authentication", "OAuth2UserTokenExchange".into()),
                ("clientId", "sb-erp-backend!t7".into()),
                ("clientSecret", "erp-secret".into()),
            ],
        )
        .start()
        .await
        .context("starting the development XSUAA")?;
    let work = tempfile::tempdir().context("temporary folder")?;
    let ca_path = work.path().join("ca.pem");
    std::fs::write(&ca_path, xsuaa.ca_pem()).context("writing ca.pem")?;
    let bindings = work.path().join("bindings");
    xsuaa
        .write_binding_dir(&bindings, "xsuaa", &xsuaa.credentials())
        .context("writing the binding files")?;
    let destination = xsuaa.service_credentials(xsuaa_dev::ServiceKind::Destination)?;
    xsuaa
        .write_service_binding_dir(&bindings, xsuaa_dev::ServiceKind::Destination, &destination)
        .context("writing the destination binding files")?;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".into());
    let env = Env::from_pairs([
        ("PORT".to_string(), port),
        ("XS_BIND_ADDRESS".to_string(), "127.0.0.1".to_string()),
        (
            "destinations".to_string(),
            serde_json::json!([{"name": "backend", "url": format!("http://{backend}"), "forwardAuthToken": true}])
                .to_string(),
        ),
        ("SERVICE_BINDING_ROOT".to_string(), bindings.display().to_string()),
        ("XS_CACERT_PATH".to_string(), ca_path.display().to_string()),
    ]);
    let sources = Sources {
        dir: root.join("examples/app"),
        xs_app: Some(root.join("xs-app.json.example")),
    };
    let config = app::load_config(&sources, env).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let bind = config.server.bind;
    let state = app::build_state(config)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (set PORT to use another port)"))?;
    let address = listener.local_addr()?;
    // The admin endpoints next to it; a busy default port only costs the local setup its metrics.
    let admin = match state.snapshot().config.server.admin {
        Some(admin) => tokio::net::TcpListener::bind(admin.addr).await.ok(),
        None => None,
    };
    let admin_line = match admin {
        Some(listener) => {
            let line = format!("http://{}/metrics (and /healthz, /readyz)", listener.local_addr()?);
            tokio::spawn(approuter::server::admin::run(
                listener,
                state.clone(),
                std::future::pending(),
            ));
            line
        }
        None => "off (ADMIN_ADDRESS or port taken)".to_string(),
    };
    println!();
    println!(
        "  development XSUAA  {} (token endpoint with mTLS: {})",
        xsuaa.url(),
        xsuaa.cert_url()
    );
    println!("  example backend    http://{backend}");
    println!("  Destination service {} (destination erp)", xsuaa.destination_url());
    println!("  approuter          http://{address}/");
    println!("  admin endpoints    {admin_line}");
    println!();
    println!("  Open http://{address}/ and follow the /api/whoami link to log in as jane.doe;");
    println!("  /erp/whoami reaches the backend through the Destination service's erp destination.");
    println!("  Ctrl-C stops everything.");
    println!();
    approuter::server::run(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// A backend that answers `/health` and shows the claims of the bearer token it receives.
async fn start_backend() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(&request))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

fn answer(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == "/health" {
        return json_response(serde_json::json!({"status": "UP"}));
    }
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // The demo only shows the claims; a real backend validates the token (xssec, or the JWKS).
    let claims = token
        .and_then(|t| t.split('.').nth(1))
        .and_then(|payload| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    json_response(serde_json::json!({
        "path": request.uri().to_string(),
        "received_bearer_token": token.is_some(),
        "token_claims": claims,
        "x-forwarded-for": request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
    }))
}

fn json_response(value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(&value).unwrap_or_default(),
    )));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    response
}
