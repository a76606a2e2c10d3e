//! Listeners: accept loop, HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN over TLS) on one port,
//! limits, compression, and graceful shutdown that lets requests in flight finish. [`admin`]: the
//! health and metrics listener; [`limits`]: body size, client address and login rate limits.

pub mod admin;
mod compression;
pub mod limits;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tower::ServiceBuilder;

use crate::body::{Body, BoxError};
use crate::config::ServerSettings;
use crate::error::GatewayError;
use crate::metrics::Shed;
use crate::pipeline::{self, Connection};
use crate::state::AppState;
use crate::tls::server::ReloadingCert;

type CompressedBody = tower_http::compression::CompressionBody<Body>;

/// How long shutdown waits for requests in flight before closing what is left.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` completes, then drains connections. With `TLS_CERT_PATH`
/// set, every connection is TLS (ALPN h2 and http/1.1) and the certificate reloads when its files
/// change.
///
/// At `MAX_CONNECTIONS` open connections the loop stops accepting: further clients wait in the
/// kernel's backlog (and time out there) instead of costing memory here. At `MAX_IN_FLIGHT`
/// requests in progress, further requests are answered 503 at once rather than queued.
///
/// # Errors
/// When the TLS certificate or key cannot be loaded; accept errors are logged and retried.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let snapshot = state.snapshot();
    let settings = snapshot.config.server.clone();
    let compression = snapshot.config.compression;
    drop(snapshot);
    let tls = match &settings.tls {
        Some(files) => {
            let cert = Arc::new(ReloadingCert::load(files).map_err(std::io::Error::other)?);
            crate::tls::server::spawn_reloader(&cert);
            state.metrics.watch_server_certificate(&cert);
            let config = crate::tls::server::server_config(cert).map_err(std::io::Error::other)?;
            Some(TlsAcceptor::from(Arc::new(config)))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let connection_limit = settings.max_connections.map(|max| Arc::new(Semaphore::new(max)));
    let in_flight = settings.max_in_flight.map(|max| {
        let limit = Arc::new(Semaphore::new(max));
        state.metrics.watch_in_flight(&limit, max);
        limit
    });
    let builder = Arc::new(connection_builder(&settings));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = match &connection_limit {
            Some(limit) => tokio::select! {
                permit = limit.clone().acquire_owned() => permit.ok(),
                () = &mut shutdown => break,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of file descriptors must not spin the loop.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection { peer, scheme };
        let first_request = Arc::new(AtomicBool::new(false));
        let service = ServiceBuilder::new()
            // Back to our one body type, so hyper sees one concrete error type.
            .map_response(rebox)
            // Compression wraps the whole pipeline so static, proxied and error responses all get it.
            .layer(compression::layer(compression))
            .service(Handler {
                state: state.clone(),
                connection,
                first_request: first_request.clone(),
                in_flight: in_flight.clone(),
            });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let open = state.metrics.connection();
        let head_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let io = match tls {
                // The handshake counts against the head timeout: a client that stalls in it is
                // cut off like one that stalls in its request head.
                Some(acceptor) => match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => Either::Left(stream),
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "no TLS handshake in time; closing");
                        return;
                    }
                },
                None => Either::Right(stream),
            };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
                .into_owned();
            let conn = watcher.watch(conn);
            // hyper's header-read timeout only starts once HTTP/1 has been detected: a client that
            // sends nothing, or part of the HTTP/2 preface, would hold the connection forever.
            tokio::pin!(conn);
            let result = tokio::select! {
                result = &mut conn => result,
                () = tokio::time::sleep(head_timeout) => {
                    if !first_request.load(Ordering::Acquire) {
                        tracing::debug!(%peer, "no request head in time; closing");
                        return;
                    }
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, error = %error, "connection closed with error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    Ok(())
}

fn connection_builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection may wait for its next request.
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256);
    builder
}

fn rebox(response: http::Response<CompressedBody>) -> http::Response<Body> {
    response.map(|body| http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(body, to_box_error)))
}

fn to_box_error(error: BoxError) -> BoxError {
    error
}

/// The innermost service: one request into the pipeline.
#[derive(Clone)]
struct Handler {
    state: Arc<AppState>,
    connection: Connection,
    /// Set once the connection has delivered a request head.
    first_request: Arc<AtomicBool>,
    /// `MAX_IN_FLIGHT`, shared by every connection.
    in_flight: Option<Arc<Semaphore>>,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Handler {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.first_request.store(true, Ordering::Release);
        let state = self.state.clone();
        let connection = self.connection;
        let permit = match &self.in_flight {
            Some(limit) => match limit.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                // Shed at once: a queue would only add latency to requests that time out anyway.
                Err(_) => return Box::pin(overloaded(state, request)),
            },
            None => None,
        };
        Box::pin(async move {
            let response = pipeline::handle(state, request, connection).await;
            drop(permit);
            Ok(response)
        })
    }
}

/// The answer when `MAX_IN_FLIGHT` requests are already being handled.
async fn overloaded(
    state: Arc<AppState>,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    state.metrics.shed(Shed::InFlight);
    let snapshot = state.snapshot();
    Ok(crate::error::respond(&GatewayError::Overloaded, &snapshot.config, request.uri().path()).await)
}
