//! Listeners: accept loop, HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN over TLS) on one port,
//! limits, compression, and graceful shutdown that lets requests in flight finish. [`admin`]: the
//! health and metrics listener.

pub mod admin;
mod compression;
mod h1;
mod idle;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::body::{Body, BoxError};
use crate::config::ServerSettings;
use crate::error::GatewayError;
use crate::metrics::Shed;
use crate::pipeline::{self, Connection};
use crate::state::AppState;
use crate::tls::server::ReloadingCert;

/// How long shutdown waits for requests in flight before closing what is left.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` completes, then drains connections: [`Server::new`] and
/// [`Server::serve`] on the current runtime.
///
/// # Errors
/// When the TLS certificate or key cannot be loaded; accept errors are logged and retried.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    Server::new(state)?.serve(listener, shutdown).await
}

/// Listening sockets for `workers` workers on `addr`, all bound to the same port with
/// `SO_REUSEPORT`: the kernel spreads new connections evenly over them, where workers sharing one
/// socket would race for each connection and a burst could land mostly on one of them. Port 0
/// picks one free port for all.
///
/// # Errors
/// When a socket cannot be created, bound or put into listening state.
pub fn bind_workers(addr: std::net::SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = reuse_port_listener(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers.max(1) {
        listeners.push(reuse_port_listener(bound)?);
    }
    Ok(listeners)
}

fn reuse_port_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's own bind does on Unix, so a restart does not wait for TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Serves on one thread per listener (see [`bind_workers`]), each with a single-threaded runtime
/// of its own, until `shutdown` completes; then every worker drains its connections. A
/// connection, its requests and its upstream connections stay on the worker that accepted it: no
/// task moves between threads and no wake-up crosses one (the model of nginx's workers). The
/// calling runtime serves the first listener.
///
/// # Errors
/// When there is no listener or a worker's runtime cannot start; errors of a worker's serving loop.
pub async fn run_workers(
    listeners: Vec<std::net::TcpListener>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut listeners = listeners.into_iter();
    let first = listeners
        .next()
        .ok_or_else(|| std::io::Error::other("no listener to serve"))?;
    first.set_nonblocking(true)?;
    let server = Server::new(state)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut finished = Vec::new();
    for (index, listener) in listeners.enumerate() {
        listener.set_nonblocking(true)?;
        let server = server.clone();
        let stop = stopped(stop_rx.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("approuter-worker-{}", index + 1))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move { server.serve(TcpListener::from_std(listener)?, stop).await })
                    });
                let _ = done_tx.send(result);
            })?;
        finished.push(done_rx);
    }
    let local = server.serve(TcpListener::from_std(first)?, async {
        tokio::select! {
            () = shutdown => {}
            // A worker that fails takes the others down with it rather than serving at part strength.
            () = first_failure(&mut finished) => {}
        }
        let _ = stop_tx.send(true);
    });
    let mut result = local.await;
    for done in finished {
        let outcome = done
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("worker thread panicked")));
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

async fn stopped(mut stop_rx: tokio::sync::watch::Receiver<bool>) {
    let _ = stop_rx.wait_for(|stop| *stop).await;
}

/// Completes when one worker has ended early; pending while all serve.
async fn first_failure(finished: &mut [tokio::sync::oneshot::Receiver<std::io::Result<()>>]) {
    if finished.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for done in finished.iter_mut() {
            if std::pin::Pin::new(done).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// What every listener loop shares: the TLS acceptor, limits and the HTTP connection settings.
pub struct Server {
    state: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    scheme: &'static str,
    compression: crate::config::CompressionConfig,
    header_read_timeout: Duration,
    /// The request head size past which hyper answers 431.
    max_head: usize,
    idle_timeout: Option<Duration>,
    /// `HTTP_FAST_PATHS`: HTTP/1.1 connections start in the fast lane (`h1`).
    fast_paths: bool,
    connection_limit: Option<Arc<Semaphore>>,
    in_flight: Option<Arc<crate::util::Gate>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// The same settings for HTTP/1 only: a connection that has carried a request.
    builder_h1: Arc<auto::Builder<TokioExecutor>>,
}

impl Server {
    /// Loads the TLS certificate (and starts its reloader on the current runtime) and the limits.
    ///
    /// At `MAX_CONNECTIONS` open connections the loops stop accepting: further clients wait in the
    /// kernel's backlog (and time out there) instead of costing memory here. At `MAX_IN_FLIGHT`
    /// requests in progress, further requests are answered 503 at once rather than queued.
    ///
    /// # Errors
    /// When the TLS certificate or key cannot be loaded.
    pub fn new(state: Arc<AppState>) -> std::io::Result<Arc<Server>> {
        let snapshot = state.snapshot();
        let settings = snapshot.config.server.clone();
        let compression = snapshot.config.compression;
        drop(snapshot);
        let tls = match &settings.tls {
            Some(files) => {
                let cert = Arc::new(ReloadingCert::load(files).map_err(std::io::Error::other)?);
                crate::tls::server::spawn_reloader(&cert);
                let served = Arc::downgrade(&cert);
                state
                    .metrics
                    .watch_server_certificate(move || served.upgrade().map(|cert| cert.not_after()));
                let config = crate::tls::server::server_config(cert).map_err(std::io::Error::other)?;
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let in_flight = settings.max_in_flight.map(|max| {
            let limit = Arc::new(crate::util::Gate::new(max));
            let gate = Arc::downgrade(&limit);
            state
                .metrics
                .watch_in_flight(move || gate.upgrade().map(|gate| gate.inside()));
            limit
        });
        Ok(Arc::new(Server {
            scheme: if tls.is_some() { "https" } else { "http" },
            tls,
            compression,
            header_read_timeout: settings.header_read_timeout,
            max_head: settings.max_header_bytes.max(8192),
            idle_timeout: settings.connection_idle_timeout,
            fast_paths: settings.fast_paths,
            connection_limit: settings.max_connections.map(|max| Arc::new(Semaphore::new(max))),
            in_flight,
            builder: Arc::new(connection_builder(&settings)),
            builder_h1: Arc::new(connection_builder(&settings).http1_only()),
            state,
        }))
    }

    /// Accepts from `listener` on the current runtime until `shutdown` completes, then waits for
    /// the connections it accepted to finish (at most `SHUTDOWN_GRACE`).
    ///
    /// # Errors
    /// None yet; accept errors are logged and retried.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        // Every connection holds a receiver: shutdown flips it, and waits until all are dropped.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let permit = match &self.connection_limit {
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
            self.spawn_connection(stream, peer, permit, stop_rx.clone());
        }
        drop(listener);
        drop(stop_rx);
        tracing::info!("shutting down: waiting for requests in flight");
        stop_tx.send_replace(true);
        tokio::select! {
            () = stop_tx.closed() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing remaining connections"),
        }
        Ok(())
    }

    fn spawn_connection(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let connection = Connection {
            peer,
            scheme: self.scheme,
        };
        let first_request = Arc::new(AtomicBool::new(false));
        // Compression applies to every answer: static, proxied and error responses.
        let service = Handler {
            state: self.state.clone(),
            connection,
            first_request: first_request.clone(),
            in_flight: self.in_flight.clone(),
            compression: self.compression,
        };
        let builder = self.builder.clone();
        let builder_h1 = self.builder_h1.clone();
        let limits = h1::Limits {
            header_read_timeout: self.header_read_timeout,
            max_head: self.max_head,
        };
        let tls = self.tls.clone();
        let open = self.state.metrics.connection();
        let head_timeout = self.header_read_timeout;
        let idle_timeout = self.idle_timeout;
        let fast_paths = self.fast_paths;
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
            let mut io = match idle_timeout {
                Some(timeout) => Either::Left(idle::IdleTimeout::new(io, timeout)),
                None => Either::Right(io),
            };
            // HTTP/1.1 requests are read by the fast lane until one needs hyper (see `h1`); a TLS
            // connection that negotiated HTTP/2 goes to hyper at once.
            let (prefix, fresh) = if !fast_paths || negotiated_h2(&io) {
                (bytes::Bytes::new(), true)
            } else {
                let mut respond = |request| service.respond(request);
                match h1::serve(&mut io, &mut respond, &limits, &mut stop).await {
                    h1::Next::Close => return,
                    h1::Next::Handover { prefix, fresh } => (prefix, fresh),
                }
            };
            let io = h1::Prefixed::new(prefix, io);
            // After a request the connection is HTTP/1 for good: an HTTP/2 preface is no longer
            // looked for (hyper's HTTP/1 parser refuses it).
            let builder = if fresh { &*builder } else { &*builder_h1 };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
                .into_owned();
            tokio::pin!(conn);
            // hyper's header-read timeout only starts once HTTP/1 has been detected: a client that
            // sends nothing, or part of the HTTP/2 preface, would hold the connection forever.
            let head_timer = tokio::time::sleep(head_timeout);
            tokio::pin!(head_timer);
            let mut timer_armed = true;
            let mut stopping = false;
            let result = loop {
                tokio::select! {
                    result = conn.as_mut() => break result,
                    () = &mut head_timer, if timer_armed => {
                        timer_armed = false;
                        if !first_request.load(Ordering::Acquire) {
                            tracing::debug!(%peer, "no request head in time; closing");
                            return;
                        }
                    }
                    // Shutdown: hyper finishes the requests in flight, then closes.
                    _ = stop.wait_for(|stop| *stop), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, error = %error, "connection closed with error");
            }
        });
    }
}

/// A client connection: TLS or plain, with or without the inactivity timeout.
type ClientIo<T> = Either<
    idle::IdleTimeout<Either<tokio_rustls::server::TlsStream<T>, T>>,
    Either<tokio_rustls::server::TlsStream<T>, T>,
>;

/// True when TLS negotiated HTTP/2 with ALPN.
fn negotiated_h2<T>(io: &ClientIo<T>) -> bool {
    let tls = match io {
        Either::Left(idle) => idle.get_ref(),
        Either::Right(io) => io,
    };
    match tls {
        Either::Left(stream) => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
        Either::Right(_) => false,
    }
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

/// The service: one request into the pipeline, its answer compressed where the rules say.
#[derive(Clone)]
struct Handler {
    state: Arc<AppState>,
    connection: Connection,
    /// Set once the connection has delivered a request head.
    first_request: Arc<AtomicBool>,
    /// `MAX_IN_FLIGHT`, shared by every connection.
    in_flight: Option<Arc<crate::util::Gate>>,
    compression: crate::config::CompressionConfig,
}

impl<B> tower::Service<http::Request<B>> for Handler
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // hyper wants a future of its own: it holds a handle on the state, the fast lane borrows it.
        let state = self.state.clone();
        let admitted = self.admit(&request);
        let (connection, compression) = (self.connection, self.compression);
        Box::pin(async move { Ok(answer(&state, connection, compression, admitted, request).await) })
    }
}

impl Handler {
    /// The answer to `request`, borrowing the handler: the fast lane keeps this future inside the
    /// connection's task, and the state's reference count is not touched per request (both workers
    /// would write its cache line).
    fn respond<B>(&self, request: http::Request<B>) -> impl Future<Output = http::Response<Body>> + Send + '_
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let admitted = self.admit(&request);
        answer(&self.state, self.connection, self.compression, admitted, request)
    }

    /// What is settled before the request is handled: the connection has delivered a request, the
    /// encodings the client accepts, and a place under `MAX_IN_FLIGHT` (shed at once when full: a
    /// queue would only add latency to requests that time out anyway).
    fn admit<B>(&self, request: &http::Request<B>) -> Admitted {
        self.first_request.store(true, Ordering::Release);
        let permit = match &self.in_flight {
            Some(limit) => limit.try_enter().map(Some).ok_or(()),
            None => Ok(None),
        };
        Admitted {
            accept: compression::accepted(request.headers()),
            permit,
        }
    }
}

/// See [`Handler::admit`].
struct Admitted {
    accept: Vec<http::HeaderValue>,
    permit: Result<Option<crate::util::GatePass>, ()>,
}

/// The pipeline's answer, compressed where the rules say.
#[expect(
    clippy::manual_async_fn,
    reason = "ARCHITECTURE.md, Hot-path idioms: a plain function returning a future"
)]
fn answer<B>(
    state: &AppState,
    connection: Connection,
    compression: crate::config::CompressionConfig,
    admitted: Admitted,
    request: http::Request<B>,
) -> impl Future<Output = http::Response<Body>> + Send + '_
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async move {
        let response = match admitted.permit {
            Ok(permit) => {
                let response = pipeline::handle(state, request, connection).await;
                drop(permit);
                response
            }
            Err(()) => Box::pin(overloaded(state, request)).await,
        };
        compression::apply(response, admitted.accept, compression)
    }
}

/// The answer when `MAX_IN_FLIGHT` requests are already being handled.
async fn overloaded<B>(state: &AppState, request: http::Request<B>) -> http::Response<Body> {
    state.metrics.shed(Shed::InFlight);
    let snapshot = state.snapshot();
    crate::error::respond(&GatewayError::Overloaded, &snapshot.config, request.uri().path()).await
}
