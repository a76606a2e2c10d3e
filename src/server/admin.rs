//! The admin listener (`ADMIN_ADDRESS`): `/healthz` (the process answers), `/readyz` (it can serve
//! logins: configuration, session store, identity provider keys, client certificate) and
//! `/metrics`. It has its own address so probes and scrapes never pass routes, login or limits,
//! and so it can stay off the public network.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::state::AppState;

/// How long one readiness check may take; probes usually time out after a few seconds.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the admin endpoints on `listener` until `shutdown` completes.
///
/// # Errors
/// Never in practice: accept errors are logged and retried.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, &request).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

/// Answers one admin request.
pub async fn handle<B>(state: &AppState, request: &Request<B>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = crate::error::plain(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain; charset=utf-8"),
        "/readyz" => {
            let report = readiness(state).await;
            let status = if report.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, format!("{}\n", report.to_json()), "application/json")
        }
        "/metrics" if state.metrics.is_enabled() => {
            refresh_gauges(state);
            text(StatusCode::OK, state.metrics.encode(), crate::metrics::CONTENT_TYPE)
        }
        _ => crate::error::plain(StatusCode::NOT_FOUND),
    }
}

fn text(status: StatusCode, content: impl Into<bytes::Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(content));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The outcome of every readiness check.
#[derive(Debug)]
pub struct Readiness {
    /// True when every check passed.
    pub ready: bool,
    /// `(check, passed, detail)` in a fixed order.
    pub checks: Vec<(&'static str, bool, String)>,
}

impl Readiness {
    fn to_json(&self) -> Value {
        let checks: serde_json::Map<String, Value> = self
            .checks
            .iter()
            .map(|(name, ok, detail)| ((*name).to_string(), json!({"ok": ok, "detail": detail})))
            .collect();
        json!({"ready": self.ready, "checks": checks})
    }
}

/// Runs the readiness checks: the configuration is loaded, and with a bound identity provider the
/// session store answers, the identity provider's token keys can be fetched now, and the client
/// certificate has not expired. The store and key checks run concurrently, each bounded.
pub async fn readiness(state: &AppState) -> Readiness {
    let snapshot = state.snapshot();
    let mut checks = vec![("config", true, format!("{} routes", snapshot.config.routes.len()))];
    if let Some(auth) = &state.auth {
        let zone = auth.credentials.identityzoneid.as_deref().unwrap_or("");
        let (store, keys) = tokio::join!(
            tokio::time::timeout(CHECK_TIMEOUT, auth.store.ping()),
            tokio::time::timeout(CHECK_TIMEOUT, auth.validator.refresh_keys(&auth.idp, zone)),
        );
        checks.push(match store {
            Ok(Ok(())) => ("session_store", true, "reachable".to_string()),
            Ok(Err(error)) => ("session_store", false, error.to_string()),
            Err(_) => ("session_store", false, format!("no answer within {CHECK_TIMEOUT:?}")),
        });
        checks.push(match keys {
            Ok(Ok(count)) => ("idp_keys", true, format!("{count} keys")),
            Ok(Err(error)) => ("idp_keys", false, error.to_string()),
            Err(_) => ("idp_keys", false, format!("no answer within {CHECK_TIMEOUT:?}")),
        });
        // The certificate in use now, which rotation may have replaced since start.
        if let Some(left) = auth.certificate_expiry() {
            checks.push(if left > 0 {
                ("client_certificate", true, format!("expires in {left} s"))
            } else {
                ("client_certificate", false, format!("expired {} s ago", -left))
            });
        }
    }
    if let Some(destinations) = &state.destinations {
        checks.push(
            match tokio::time::timeout(CHECK_TIMEOUT, destinations.check_token()).await {
                Ok(Ok(())) => (
                    "destination_service",
                    true,
                    format!("token ok, {} destinations cached", destinations.cached()),
                ),
                Ok(Err(error)) => ("destination_service", false, crate::idp::xsuaa::error_chain(&error)),
                Err(_) => (
                    "destination_service",
                    false,
                    format!("no answer within {CHECK_TIMEOUT:?}"),
                ),
            },
        );
    }
    Readiness {
        ready: checks.iter().all(|(_, ok, _)| *ok),
        checks,
    }
}

/// Gauges that are read rather than counted: sessions in memory, certificate lifetimes.
fn refresh_gauges(state: &AppState) {
    state.metrics.refresh_in_flight();
    let now = unix_now();
    if let Some(auth) = &state.auth {
        if let Some(count) = auth.store.session_count() {
            state.metrics.set_sessions(count);
        }
        if let Some(left) = auth.certificate_expiry() {
            state.metrics.set_certificate_expiry("client", left);
        }
    }
    if let Some(not_after) = state.metrics.server_certificate_not_after() {
        state.metrics.set_certificate_expiry("server", not_after - now);
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
