//! Websocket proxying. An upgrade request is routed, authenticated (401 without a session on a
//! protected route, never a login redirect) and scope-checked like any request; this module adds
//! the admission check (`websockets.enabled`, `Origin` equal to the router's own origin or allowed
//! by `WS_ALLOWED_ORIGINS`, else 403), the upgrade handshake with the destination over a fresh
//! HTTP/1.1 connection with the HTTP header policy and bearer token, and then the relay, which
//! copies bytes both ways without parsing payloads (see `relay`).
//!
//! Websockets over HTTP/2 (RFC 8441 extended CONNECT) are not supported: the server does not
//! announce `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so browsers open websockets over HTTP/1.1, and a
//! `CONNECT` request without a path is answered 400.

mod relay;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub use self::relay::SessionWatch;
use super::headers;
use super::ForwardRequest;
use crate::body::{self, Body, BoxError};
use crate::config::{Config, Destination};
use crate::connect::Connector;
use crate::origin::{OwnOriginError, WebOrigin};

/// Why a websocket cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `websockets.enabled` is not set.
    #[error("websockets are not enabled")]
    Disabled,
    /// The upgrade carries no `Origin`.
    #[error("websocket upgrade without Origin")]
    OriginMissing,
    /// The `Origin` is neither the router's own nor in `WS_ALLOWED_ORIGINS`.
    #[error("websocket origin not allowed")]
    OriginNotAllowed,
    /// The router's own origin cannot be told from the forwarded headers.
    #[error("cannot determine the router's origin: {0}")]
    OwnOrigin(#[from] OwnOriginError),
    /// The client connection offers no upgrade (not HTTP/1.1).
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
    /// The destination did not accept a connection or broke the handshake.
    #[error("cannot open a websocket to destination {destination}: {source}")]
    UpstreamConnect {
        destination: String,
        #[source]
        source: BoxError,
    },
    /// The destination did not answer the upgrade within its `timeout`.
    #[error("destination {0} did not answer the websocket upgrade in time")]
    UpstreamTimeout(String),
    /// The URL built for the destination is not valid.
    #[error("invalid upstream URL: {0}")]
    InvalidUpstreamUri(String),
}

impl Error {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Disabled | Error::OriginMissing | Error::OriginNotAllowed => StatusCode::FORBIDDEN,
            Error::OwnOrigin(_) | Error::NotUpgradable | Error::InvalidUpstreamUri(_) => StatusCode::BAD_REQUEST,
            Error::UpstreamConnect { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// True for a websocket handshake: `GET` with `Connection: upgrade` and `Upgrade: websocket`.
pub fn is_upgrade(parts: &Parts) -> bool {
    // `Upgrade` first: most requests have no such header, and then one lookup decides.
    parts.method == Method::GET
        && has_token(&parts.headers, header::UPGRADE, "websocket")
        && has_token(&parts.headers, header::CONNECTION, "upgrade")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| crate::http1::has_token(value.as_bytes(), token.as_bytes()))
}

/// Admission of a websocket handshake, before routing; other requests pass. Returns whether the
/// request is a handshake ([`is_upgrade`]).
///
/// # Errors
/// [`Error::Disabled`], [`Error::OriginMissing`], [`Error::OriginNotAllowed`] (403), and
/// [`Error::OwnOrigin`] (400) for an invalid `X-Forwarded-Proto`.
pub fn admit(config: &Config, parts: &Parts, scheme: &str) -> Result<bool, Error> {
    if !is_upgrade(parts) {
        return Ok(false);
    }
    if !config.websockets_enabled {
        return Err(Error::Disabled);
    }
    let value = parts.headers.get(header::ORIGIN).ok_or(Error::OriginMissing)?;
    let origin = value
        .to_str()
        .ok()
        .and_then(WebOrigin::parse)
        .ok_or(Error::OriginNotAllowed)?;
    if config.ws_allowed_origins.matches(&origin) {
        return Ok(true);
    }
    if origin == config.own_origin(&parts.headers, scheme)? {
        Ok(true)
    } else {
        Err(Error::OriginNotAllowed)
    }
}

/// Opens the websocket at the destination and answers the client: 101 with the destination's
/// `Sec-WebSocket-*` answer, after which a spawned task relays bytes until either side closes or
/// `session` ends. A destination that refuses the upgrade has its response passed on.
///
/// # Errors
/// [`Error::NotUpgradable`], [`Error::UpstreamConnect`] (502), [`Error::UpstreamTimeout`] (504),
/// [`Error::InvalidUpstreamUri`].
pub async fn proxy(
    upstream: &super::Upstream,
    mut parts: Parts,
    request: ForwardRequest<'_, '_>,
    session: Option<SessionWatch>,
    open: crate::metrics::GaugeGuard,
) -> Result<Response<Body>, Error> {
    let client_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(Error::NotUpgradable)?;
    let destination = request.destination;
    let (target, path) = upstream_target(destination, &request.url)?;
    // HTTP/1.1 only (an upgrade needs it, so TLS offers no ALPN `h2`), one connection per
    // websocket, never pooled.
    let connector = upstream
        .websocket
        .get(destination)
        .ok_or_else(|| Error::UpstreamConnect {
            destination: destination.name.clone(),
            source: "forwardAuthCertificates: the XSUAA binding has no client certificate to present".into(),
        })?;
    // A forward proxy (the on-premise one) takes the absolute URL on the request line.
    parts.uri = match connector.is_forward_proxy() {
        true => target.clone(),
        false => path,
    };
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    headers::upstream_request(&mut parts.headers, &request.forwarding, upstream.header_policy);
    for (name, value) in request.extra {
        parts.headers.insert(name.clone(), value.clone());
    }
    if !destination.preserve_host_header || !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, destination.host_header.clone());
    }
    // The header policy drops hop-by-hop headers; these two are the handshake itself.
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let outgoing = Request::from_parts(parts, body::empty());
    let handshake = handshake(connector, target, outgoing, destination);
    let (response, sender) = tokio::time::timeout(destination.timeout, handshake)
        .await
        .map_err(|_| Error::UpstreamTimeout(destination.name.clone()))??;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The destination refused: its answer (401, 404, …) goes to the client like any response.
        let (mut head, incoming) = response.into_parts();
        head.version = Version::HTTP_11;
        headers::downstream_response(&mut head.headers);
        return Ok(Response::from_parts(head, body::boxed(incoming)));
    }
    let mut answer = Response::new(body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let answer_headers = answer.headers_mut();
    answer_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    answer_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in [
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        if let Some(value) = response.headers().get(&name) {
            answer_headers.insert(name, value.clone());
        }
    }
    let backend_upgrade = hyper::upgrade::on(response);
    let name = destination.name.clone();
    tokio::spawn(async move {
        // `approuter_websockets_active` counts this tunnel until the task ends.
        let _open = open;
        let upgraded = tokio::try_join!(client_upgrade, backend_upgrade);
        // The handshake connection has handed its socket over; the sender is no longer needed.
        drop(sender);
        match upgraded {
            Ok((client, backend)) => {
                relay::relay(TokioIo::new(client), TokioIo::new(backend), session)
                    .await
                    .log(&name);
            }
            Err(error) => tracing::debug!(destination = %name, %error, "websocket upgrade failed"),
        }
    });
    Ok(answer)
}

/// Connects, performs the HTTP/1.1 handshake, and sends the upgrade request.
async fn handshake(
    connector: &Connector,
    target: Uri,
    request: Request<Body>,
    destination: &Destination,
) -> Result<(Response<Incoming>, hyper::client::conn::http1::SendRequest<Body>), Error> {
    let failed = |source: BoxError| Error::UpstreamConnect {
        destination: destination.name.clone(),
        source,
    };
    let io = connector.connect(&target).await.map_err(|error| failed(error.into()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Body>(io)
        .await
        .map_err(|error| failed(error.into()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "websocket upstream connection ended with an error");
        }
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| failed(error.into()))?;
    Ok((response, sender))
}

/// The absolute URL to connect to, and the origin-form target of the request line.
fn upstream_target(destination: &Destination, url: &str) -> Result<(Uri, Uri), Error> {
    let path = format!("{}/{}", destination.base_path, url.trim_start_matches('/'));
    let invalid = |error: http::Error| Error::InvalidUpstreamUri(format!("{path}: {error}"));
    let absolute = Uri::builder()
        .scheme(destination.scheme.clone())
        .authority(destination.authority.clone())
        .path_and_query(path.as_str())
        .build()
        .map_err(invalid)?;
    let origin_form = Uri::builder().path_and_query(path.as_str()).build().map_err(invalid)?;
    Ok((absolute, origin_form))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn upgrade_detection() {
        // Method, headers, and whether it asks for a websocket.
        type Case<'a> = (Method, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case<'_>] = &[
            (
                Method::GET,
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                true,
            ),
            (
                Method::GET,
                &[("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")],
                true,
            ),
            (Method::GET, &[("connection", "upgrade"), ("upgrade", "h2c")], false),
            (Method::GET, &[("upgrade", "websocket")], false),
            (Method::GET, &[("connection", "upgrade")], false),
            (
                Method::POST,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
                false,
            ),
        ];
        for (method, headers, expected) in cases {
            assert_eq!(
                is_upgrade(&parts(method.clone(), headers)),
                *expected,
                "{method} {headers:?}"
            );
        }
    }
}
