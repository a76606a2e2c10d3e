//! Forwarding to destinations: the upstream client pool, the header policy, and the forward itself.

pub mod call;
mod forward;
pub mod headers;
mod pool;
pub mod websocket;

use std::future::Future;
use std::sync::Arc;

use futures_util::future::FutureExt;

use rustls::RootCertStore;

pub use self::forward::{forward, ForwardRequest};
use self::pool::{Pool, PoolError};
use crate::body::{Body, BoxError};
use crate::config::{Config, Destination};
use crate::connect::{Connector, PerDestination, Protocols};

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The destination did not accept a connection (refused, unreachable, DNS).
    #[error("cannot connect to destination {destination}: {source}")]
    UpstreamConnect {
        destination: String,
        #[source]
        source: BoxError,
    },
    /// The destination did not answer within its `timeout`.
    #[error("destination {0} did not answer in time")]
    UpstreamTimeout(String),
    /// The URL built for the destination is not valid.
    #[error("invalid upstream URL: {0}")]
    InvalidUpstreamUri(String),
}

/// The upstream clients of one configuration: pooled keep-alive connections, HTTP/1.1 and (over TLS
/// with ALPN) HTTP/2.
#[derive(Clone)]
pub struct Upstream {
    /// One pool per kind of connection a destination needs (TLS trust, proxy).
    pools: PerDestination<Pool>,
    /// The pools' connectors, whose identity follows the XSUAA binding's certificate.
    connectors: PerDestination<Connector>,
    /// Websocket upgrades get their own HTTP/1.1 connections, never pooled.
    websocket: PerDestination<Connector>,
    /// The request header policy's settings.
    header_policy: headers::Policy,
}

impl Upstream {
    /// Builds the clients for every destination in `config`.
    ///
    /// # Errors
    /// When the trust roots cannot be loaded.
    pub fn new(config: &Config, roots: Arc<RootCertStore>) -> Result<Upstream, crate::tls::Error> {
        let max_idle = config.server.backend_max_idle;
        let connectors = PerDestination::connectors(config, roots.clone(), Protocols::Http1AndH2)?;
        // `HTTP_FAST_PATHS=false`: hyper's client for every request, no inline client.
        let pools = connectors.map(|connector| match config.server.fast_paths {
            true => Pool::direct(connector.clone(), max_idle),
            false => Pool::new(connector.clone(), max_idle),
        });
        let websocket = PerDestination::connectors(config, roots, Protocols::Http1)?;
        Ok(Upstream {
            pools,
            connectors,
            websocket,
            header_policy: headers::Policy {
                trust_forwarded: config.server.forwarded_hops > 0,
                allow_underscores: config.server.allow_underscores_in_headers,
            },
        })
    }

    /// Sends `request` (absolute URI) to `destination`, waiting until its `timeout` after
    /// `started` for the response head; the body streams afterwards.
    ///
    /// # Errors
    /// [`Error::UpstreamConnect`] (502) or [`Error::UpstreamTimeout`] (504).
    // A plain function returning a future (ARCHITECTURE.md, "Hot-path idioms"): it sits inside every proxied request's.
    fn send<'a>(
        &'a self,
        destination: &'a Destination,
        request: http::Request<Body>,
        added: headers::Added<'_>,
        started: tokio::time::Instant,
    ) -> impl Future<Output = Result<http::Response<Body>, Error>> + Send + 'a {
        use futures_util::future::Either;
        let deadline = started + destination.timeout;
        let Some(pool) = self.pools.get(destination) else {
            return Either::Left(std::future::ready(Err(no_certificate(destination))));
        };
        // The pool enforces the deadline: its inline client without a timer per request.
        let sent = pool.send(request, added, deadline);
        Either::Right(sent.map(move |sent| match sent.and_then(forwardable) {
            Err(PoolError::TimedOut) => Err(Error::UpstreamTimeout(destination.name.clone())),
            Err(source) => Err(Error::UpstreamConnect {
                destination: destination.name.clone(),
                source: source.into(),
            }),
            Ok(response) => Ok(response),
        }))
    }

    /// The connectors that present the XSUAA binding's certificate (`forwardAuthCertificates`),
    /// for the pools and for websockets: a rotated certificate is set on each.
    pub fn certificate_connectors(&self) -> Vec<Connector> {
        let mut connectors = self.connectors.certificate_connectors();
        connectors.extend(self.websocket.certificate_connectors());
        connectors
    }
}

/// A destination with `forwardAuthCertificates` when the XSUAA binding has no certificate: the
/// configuration refuses it, so this only guards against sending without one.
fn no_certificate(destination: &Destination) -> Error {
    Error::UpstreamConnect {
        destination: destination.name.clone(),
        source: "forwardAuthCertificates: the XSUAA binding has no client certificate to present".into(),
    }
}

/// Refuses a response no client may get, from any of the pool's clients alike, and puts its
/// framing fields in the one form every client-side writer (the fast lane, hyper's HTTP/1.1 and
/// HTTP/2 servers) frames alike:
/// - a `101` is refused (no upgrade was asked for: websockets have their own connections);
/// - a `Content-Length` beside a `Transfer-Encoding` goes (RFC 9112 §6.3): the coding framed the
///   body, and the length would frame it again for the client, wrongly;
/// - a `Content-Length` given more than once or as a list becomes its one value; values that
///   differ (which hyper's client passes on a bodiless answer) are refused.
fn forwardable(mut response: http::Response<Body>) -> Result<http::Response<Body>, PoolError> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(PoolError::InvalidResponse("unexpected 101 response"));
    }
    let headers = response.headers_mut();
    // The inline client has already removed the coding; hyper's client keeps what was sent.
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
        return Ok(response);
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let plain = match (lengths.next(), lengths.next()) {
        (None, _) => true,
        (Some(only), None) => !only.as_bytes().contains(&b','),
        (Some(_), Some(_)) => false,
    };
    if plain {
        return Ok(response);
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        length = crate::http1::content_length_list(length, value.as_bytes()).map_err(PoolError::InvalidResponse)?;
    }
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from(length));
    }
    Ok(response)
}
