//! One forwarded request: URL joined onto the destination, header policy applied, body streamed
//! both ways, the destination's `timeout` enforced until the response head arrives.

use std::future::Future;

use futures_util::future::{Either, FutureExt};
use http::header;
use http::{Response, Uri, Version};

use super::headers::{self, Forwarding};
use super::{Error, Upstream};
use crate::body::Body;
use crate::config::Destination;

/// What to forward where. The destination outlives the call (`'d`: the configuration); the rest is
/// only read while the request is prepared (`'a`).
pub struct ForwardRequest<'d, 'a> {
    pub destination: &'d Destination,
    /// Path and query after the route's `target` rewrite.
    pub url: std::borrow::Cow<'a, str>,
    pub forwarding: Forwarding<'a>,
    /// Headers the destination itself adds, after the header policy ran (which removes a
    /// client's `Proxy-Authorization` and `SAP-Connectivity-*`): its credentials and the
    /// on-premise proxy's.
    pub extra: &'a [(http::HeaderName, http::HeaderValue)],
    /// `REMOVE_CLASHING_BACKEND_SESSION_COOKIE`: the router's session cookie name, whose
    /// `Set-Cookie` from a backend is dropped instead of overwriting the router's session.
    pub clashing_cookie: Option<&'d str>,
    /// When the request left for the destination: its `timeout` counts from here.
    pub started: tokio::time::Instant,
}

/// Sends the request to its destination and returns the response, streaming.
///
/// # Errors
/// [`Error::UpstreamConnect`] (502), [`Error::UpstreamTimeout`] (504), [`Error::InvalidUpstreamUri`].
// A plain function returning a future (ARCHITECTURE.md, "Hot-path idioms"): the request is prepared before the future
// exists, which holds only the upstream call and borrows only the upstream and the destination.
pub fn forward<'d>(
    upstream: &'d Upstream,
    mut parts: http::request::Parts,
    body: Body,
    request: ForwardRequest<'d, '_>,
) -> impl Future<Output = Result<Response<Body>, Error>> + Send + 'd {
    let destination = request.destination;
    let clashing_cookie = request.clashing_cookie;
    let uri = match upstream_uri(destination, &request.url) {
        Ok(uri) => uri,
        Err(error) => return Either::Left(std::future::ready(Err(error))),
    };
    parts.uri = uri;
    // The upstream connection picks its own protocol (ALPN); hyper wants HTTP/1.1 semantics here.
    parts.version = Version::HTTP_11;
    let added = headers::upstream_request_apart(&mut parts.headers, &request.forwarding, upstream.header_policy);
    for (name, value) in request.extra {
        parts.headers.insert(name.clone(), value.clone());
    }
    if !destination.preserve_host_header || !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, destination.host_header.clone());
    }
    let sent = upstream.send(
        destination,
        http::Request::from_parts(parts, body),
        added,
        request.started,
    );
    Either::Right(sent.map(move |response| {
        let (mut parts, body) = response?.into_parts();
        // The client's connection has its own protocol; an HTTP/1.0 backend must not downgrade it.
        parts.version = Version::HTTP_11;
        headers::downstream_response(&mut parts.headers);
        if let Some(name) = clashing_cookie {
            headers::remove_set_cookie_named(&mut parts.headers, name);
        }
        Ok(Response::from_parts(parts, body))
    }))
}

/// The destination's path, one `/`, and the routed URL without its own leading `/`. Only that one
/// slash goes: the reference trims every leading slash, which let `//admin` match one route and
/// reach the backend as `/admin`.
fn upstream_uri(destination: &Destination, url: &str) -> Result<Uri, Error> {
    let url = url.strip_prefix('/').unwrap_or(url);
    let mut path = String::with_capacity(destination.base_path.len() + 1 + url.len());
    path.push_str(&destination.base_path);
    path.push('/');
    path.push_str(url);
    // The joined text becomes the URI's bytes as it is: no second copy.
    let invalid =
        |error: &dyn std::fmt::Display| Error::InvalidUpstreamUri(format!("{}/{url}: {error}", destination.base_path));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(destination.scheme.clone());
    parts.authority = Some(destination.authority.clone());
    parts.path_and_query =
        Some(http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(path)).map_err(|error| invalid(&error))?);
    Uri::from_parts(parts).map_err(|error| invalid(&error))
}
