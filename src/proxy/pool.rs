//! Upstream connections, pooled per worker thread. A request takes an idle connection that its own
//! thread opened and gives it back when the response body has been read to its end, so the
//! connection's task, the request and the response never wake another thread, and a checkout
//! takes no lock. HTTP/1.1 connections carry one request at a time; an HTTP/2 connection
//! (negotiated with ALPN over TLS) is shared by every request of its thread.
//!
//! Bodiless requests to plain `http` origins of the direct pool skip hyper: [`inline`] writes and
//! reads them in the request's own task, without a connection task or channels in between.

mod inline;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::body::{Body, BoxError};
use crate::connect::Connector;

/// How long a connection may sit idle and still be reused; an older one is closed when a checkout
/// meets it (nothing sweeps idle lists). Below nginx's 75 s keep-alive; a server that closes
/// sooner (Node: 5 s) is noticed at checkout, or by the one retry when the close was seen before
/// the request went out. A close racing the request itself still fails that request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be opened (refused, unreachable, DNS, TLS).
    #[error("cannot connect")]
    Connect(#[source] BoxError),
    /// The connection failed while the request was sent or the response head was read.
    #[error("request failed")]
    Send(#[source] hyper::Error),
    /// A new connection closed before it took the request.
    #[error("connection closed before the request was sent")]
    Closed,
    /// No response head by the request's deadline (the destination's `timeout`).
    #[error("no response in time")]
    TimedOut,
    /// The inline client's connection failed while the request was sent or the response head was
    /// read.
    #[error("request failed")]
    Io(#[source] std::io::Error),
    /// The response head (or its framing) is not valid HTTP/1.1.
    #[error("invalid response: {0}")]
    InvalidResponse(&'static str),
}

/// A pool over one connector (direct or through a proxy tunnel, with its TLS settings).
#[derive(Clone)]
pub struct Pool {
    connector: Connector,
    /// Identifies this pool in the per-thread idle lists; dropped with the pool, so lists of
    /// dropped pools are recognised and removed.
    token: Arc<()>,
    max_idle: usize,
    /// Bodiless `http` requests take the [`inline`] client: only for a pool whose connector opens
    /// plain TCP connections to the origin itself (not through a proxy).
    inline: bool,
    /// Requests keep their absolute URI on the request line (a forward proxy's connections).
    absolute_form: bool,
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// The connections of one pool to one origin, on one thread.
struct Origin {
    pool: Weak<()>,
    scheme: Scheme,
    authority: Authority,
    /// The connector's identity generation the connections were opened under.
    generation: u64,
    idle: Vec<Idle>,
    h2: Option<http2::SendRequest<Body>>,
    /// The origin answered a connection with HTTP/2 before: one connection serves all requests.
    h2_known: bool,
    /// A connection to an HTTP/2 origin is being opened: requests wait for it rather than open
    /// connections of their own.
    h2_connecting: Option<Arc<Notify>>,
    /// Idle connections of the inline client (plain TCP, HTTP/1.1), oldest first.
    plain: Vec<inline::IdleStream>,
}

thread_local! {
    /// This thread's connections. A handful of origins per pool: a linear scan beats hashing.
    static ORIGINS: RefCell<Vec<Origin>> = const { RefCell::new(Vec::new()) };
}

/// Where an upstream connection goes: its pool, scheme and authority.
#[derive(Clone)]
struct Home {
    pool: Arc<()>,
    scheme: Scheme,
    authority: Authority,
    max_idle: usize,
    /// The connector's identity generation when the request started: connections are reused
    /// only under the client certificate they were opened with.
    generation: u64,
}

impl Home {
    fn of(pool: &Arc<()>, uri: &Uri, max_idle: usize, generation: u64) -> Option<Home> {
        Some(Home {
            pool: pool.clone(),
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
            max_idle,
            generation,
        })
    }

    fn checkin(&self, sender: http1::SendRequest<Body>) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        with_origin(self, |origin| keep_idle(&mut origin.idle, idle, self.max_idle));
    }
}

/// Appends `entry` to an idle list of at most `max` entries, dropping the oldest when it is full.
fn keep_idle<T>(list: &mut Vec<T>, entry: T, max: usize) {
    if list.len() >= max {
        list.remove(0);
    }
    list.push(entry);
}

/// Runs `f` on this thread's connections of `home`'s pool to its origin. After the connector's
/// identity changed (a rotated client certificate), the connections opened before are dropped
/// when a newer request meets them, and a request or connection of an older generation sees an
/// empty origin that is dropped after `f`: what it checks in is closed, never reused.
fn with_origin<R>(home: &Home, f: impl FnOnce(&mut Origin) -> R) -> R {
    let (pool, scheme, authority) = (&home.pool, &home.scheme, &home.authority);
    let fresh = || Origin {
        pool: Arc::downgrade(pool),
        scheme: scheme.clone(),
        authority: authority.clone(),
        generation: home.generation,
        idle: Vec::new(),
        h2: None,
        h2_known: false,
        h2_connecting: None,
        plain: Vec::new(),
    };
    ORIGINS.with(|origins| {
        let mut origins = origins.borrow_mut();
        let position = origins.iter().position(|origin| {
            std::ptr::eq(origin.pool.as_ptr(), Arc::as_ptr(pool))
                && origin.authority == *authority
                && origin.scheme == *scheme
        });
        let index = match position {
            Some(index) if origins[index].generation == home.generation => index,
            Some(index) if origins[index].generation < home.generation => {
                origins[index] = fresh();
                index
            }
            Some(_) => {
                drop(origins);
                return f(&mut fresh());
            }
            None => {
                origins.retain(|origin| origin.pool.strong_count() > 0);
                origins.push(fresh());
                origins.len() - 1
            }
        };
        f(&mut origins[index])
    })
}

impl Pool {
    /// A pool that opens connections with `connector` and keeps up to `max_idle` idle HTTP/1.1
    /// connections per origin and thread.
    pub fn new(connector: Connector, max_idle: usize) -> Pool {
        Pool {
            absolute_form: connector.is_forward_proxy(),
            connector,
            token: Arc::new(()),
            max_idle,
            inline: false,
        }
    }

    /// A pool like [`Pool::new`] whose bodiless requests to `http` origins go through the inline
    /// client, unless `connector` goes through a proxy: the inline client opens its own TCP
    /// connections to the origin.
    pub fn direct(connector: Connector, max_idle: usize) -> Pool {
        Pool {
            inline: connector.is_direct(),
            ..Pool::new(connector, max_idle)
        }
    }

    /// Sends `request` (absolute URI) with the headers `added` on an idle connection of this
    /// thread or a new one. A request
    /// that a reused connection closed on before taking it is sent once more on a new connection.
    ///
    /// # Errors
    /// [`PoolError::Connect`], [`PoolError::Send`] or [`PoolError::Closed`]; from the inline
    /// client [`PoolError::Io`] or [`PoolError::InvalidResponse`].
    pub fn send(
        &self,
        mut request: Request<Body>,
        added: super::headers::Added<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Response<Body>, PoolError>> + Send + '_ {
        use futures_util::future::Either;
        let generation = self.connector.identity_generation();
        let Some(home) = Home::of(&self.token, request.uri(), self.max_idle, generation) else {
            let error = PoolError::Connect("upstream URI without scheme or authority".into());
            return Either::Left(Either::Left(std::future::ready(Err(error))));
        };
        if self.inline && inline::applies(&request) {
            // The inline client keeps the deadline with the connection (see `inline::Conn`).
            return Either::Left(Either::Right(inline::send(home, request, &added, deadline)));
        }
        added.insert_into(request.headers_mut());
        // Hyper's path (bodies, TLS, HTTP/2, tunnels), boxed as a rare path (ARCHITECTURE.md, "Hot-path idioms"): its
        // future is several times the inline one's size.
        Either::Right(Box::pin(async move {
            tokio::time::timeout_at(deadline, self.send_hyper(home, request))
                .await
                .unwrap_or(Err(PoolError::TimedOut))
        }))
    }

    async fn send_hyper(&self, home: Home, mut request: Request<Body>) -> Result<Response<Body>, PoolError> {
        let uri = request.uri().clone();
        let mut waited = false;
        loop {
            match checkout(&home) {
                Checkout::Found(sender) => {
                    match send_on(sender, request, &home, self.absolute_form).await {
                        Ok(response) => return Ok(response),
                        // The server closed the connection as the request went out (a keep-alive
                        // race); the request was not sent, so it is safe to send it on a new one.
                        Err(Retry::Again(unsent)) => request = *unsent,
                        Err(Retry::Failed(error)) => return Err(PoolError::Send(error)),
                    }
                    break;
                }
                Checkout::Wait(connecting) if !waited => {
                    waited = true;
                    connecting.notified().await;
                }
                _ => break,
            }
        }
        // Connecting is rare next to reuse: boxed (ARCHITECTURE.md, "Hot-path idioms").
        let sender = Box::pin(self.connect(&home, uri)).await?;
        match send_on(sender, request, &home, self.absolute_form).await {
            Ok(response) => Ok(response),
            Err(Retry::Again(_)) => Err(PoolError::Closed),
            Err(Retry::Failed(error)) => Err(PoolError::Send(error)),
        }
    }

    async fn connect(&self, home: &Home, uri: Uri) -> Result<Sender, PoolError> {
        // Others wait for this connection when it will be HTTP/2; they are told when it is done,
        // however it ends (the guard's drop).
        let _announce = with_origin(home, |origin| {
            if !origin.h2_known || origin.h2_connecting.is_some() {
                return None;
            }
            let notify = Arc::new(Notify::new());
            origin.h2_connecting = Some(notify.clone());
            Some(Announce {
                home: home.clone(),
                notify,
            })
        });
        let io = self
            .connector
            .connect(&uri)
            .await
            .map_err(|error| PoolError::Connect(error.into()))?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(io)
                .await
                .map_err(|error| PoolError::Connect(error.into()))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
                }
            });
            with_origin(home, |origin| {
                origin.h2 = Some(sender.clone());
                origin.h2_known = true;
            });
            return Ok(Sender::H2(sender));
        }
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|error| PoolError::Connect(error.into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(Sender::H1(sender))
    }
}

enum Checkout {
    Found(Sender),
    /// An HTTP/2 connection is being opened.
    Wait(Arc<Notify>),
    None,
}

/// Tells the requests waiting for an HTTP/2 connection that the attempt is over.
struct Announce {
    home: Home,
    notify: Arc<Notify>,
}

impl Drop for Announce {
    fn drop(&mut self) {
        let notify = &self.notify;
        // Not at thread exit, when this thread's pool is already gone.
        let _ = ORIGINS.try_with(|_| {
            with_origin(&self.home, |origin| {
                if origin
                    .h2_connecting
                    .as_ref()
                    .is_some_and(|current| Arc::ptr_eq(current, notify))
                {
                    origin.h2_connecting = None;
                }
            })
        });
        notify.notify_waiters();
    }
}

/// An idle connection of this thread that can take a request now.
fn checkout(home: &Home) -> Checkout {
    with_origin(home, |origin| {
        if let Some(h2) = &origin.h2 {
            if h2.is_ready() {
                return Checkout::Found(Sender::H2(h2.clone()));
            }
            origin.h2 = None;
        }
        let now = Instant::now();
        // Newest first: the one most likely still open at the server. One that is still finishing
        // its last exchange (its task has not seen the end yet) stays for later.
        let mut index = origin.idle.len();
        while index > 0 {
            index -= 1;
            let idle = &origin.idle[index];
            if idle.sender.is_closed() || now.duration_since(idle.since) >= IDLE_TIMEOUT {
                // Dropping the sender closes the connection.
                origin.idle.remove(index);
            } else if idle.sender.is_ready() {
                return Checkout::Found(Sender::H1(origin.idle.remove(index).sender));
            }
        }
        match &origin.h2_connecting {
            Some(connecting) => Checkout::Wait(connecting.clone()),
            None => Checkout::None,
        }
    })
}

async fn send_on(
    sender: Sender,
    mut request: Request<Body>,
    home: &Home,
    absolute_form: bool,
) -> Result<Response<Body>, Retry> {
    match sender {
        Sender::H1(mut sender) => {
            // HTTP/1.1 wants the origin form on the request line, except toward a forward proxy.
            let absolute = std::mem::replace(request.uri_mut(), Uri::from_static("/"));
            *request.uri_mut() = match absolute_form {
                true => absolute.clone(),
                false => origin_form(&absolute),
            };
            match sender.try_send_request(request).await {
                Ok(response) => Ok(returning(response, sender, home)),
                Err(mut error) => match error.take_message() {
                    Some(mut unsent) => {
                        *unsent.uri_mut() = absolute;
                        Err(Retry::Again(Box::new(unsent)))
                    }
                    None => Err(Retry::Failed(error.into_error())),
                },
            }
        }
        Sender::H2(mut sender) => match sender.try_send_request(request).await {
            Ok(response) => Ok(response.map(crate::body::boxed)),
            Err(mut error) => match error.take_message() {
                Some(unsent) => {
                    with_origin(home, |origin| origin.h2 = None);
                    Err(Retry::Again(Box::new(unsent)))
                }
                None => Err(Retry::Failed(error.into_error())),
            },
        },
    }
}

/// The response with a body that gives the connection back once it has been read to its end.
fn returning(response: Response<Incoming>, sender: http1::SendRequest<Body>, home: &Home) -> Response<Body> {
    response.map(|incoming| {
        if incoming.is_end_stream() {
            home.checkin(sender);
            return crate::body::boxed(incoming);
        }
        crate::body::boxed(Returning {
            incoming,
            home: Some((home.clone(), sender)),
        })
    })
}

enum Retry {
    /// Boxed: the rare path should not make every result as large as a request.
    Again(Box<Request<Body>>),
    Failed(hyper::Error),
}

fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path_and_query) => Uri::from(path_and_query.clone()),
        None => Uri::from_static("/"),
    }
}

pin_project_lite::pin_project! {
    /// A response body that hands its connection back to the pool at its end. Dropped before its
    /// end, the connection is dropped too, which closes it: its state is unknown.
    struct Returning {
        #[pin]
        incoming: Incoming,
        home: Option<(Home, http1::SendRequest<Body>)>,
    }
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.incoming.as_mut().poll_frame(cx);
        // The server side stops polling once a body says it has ended, so the end also counts
        // right after the last frame.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.incoming.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.home.take();
                false
            }
            Poll::Pending => false,
        };
        if ended {
            if let Some((home, sender)) = this.home.take() {
                home.checkin(sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
