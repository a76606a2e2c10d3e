//! Listeners: accept loop, HTTP/1.1 and HTTP/2 (h2c prior knowledge) on one port, limits, compression,
//! and graceful shutdown that lets requests in flight finish.

mod compression;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use crate::body::{Body, BoxError};
use crate::config::ServerSettings;
use crate::pipeline::{self, Connection};
use crate::state::AppState;

type CompressedBody = tower_http::compression::CompressionBody<Body>;

/// How long shutdown waits for requests in flight before closing what is left.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` completes, then drains connections.
///
/// # Errors
/// Never in practice: accept errors are logged and retried.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let snapshot = state.snapshot();
    let settings = snapshot.config.server.clone();
    let compression = snapshot.config.compression;
    drop(snapshot);
    let builder = connection_builder(&settings);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let connection = Connection { peer, scheme: "http" };
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
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        let head_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
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
        Box::pin(async move { Ok(pipeline::handle(state, request, connection).await) })
    }
}
