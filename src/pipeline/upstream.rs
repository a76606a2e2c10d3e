//! The phases toward a destination: `find_destination` (at the Destination service),
//! `upstream_identity` (what the backend learns about the user), the request as the destination
//! gets it, `forward` or `websocket`, and `keep_backend_cookies`.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::Response;
use tokio::time::Instant;

use super::{Answer, Flow, Phase, RequestCtx};
use crate::body::{self, Body, BoxError};
use crate::config::Route;
use crate::destination::DestinationError;
use crate::error::GatewayError;
use crate::proxy::headers::{self, Forwarding};
use crate::proxy::{self, ForwardRequest};
use crate::routing::Lookup;
use crate::session::Session;
use crate::{auth, routing};

/// A destination the `destinations` variable does not define is found at the Destination
/// service: with the user's exchanged token for a logged-in user, with the binding's own on a
/// public route. Its `URL.headers.*` go with the request unless the client sent the same. An
/// on-premise destination of the `destinations` variable gets the connectivity proxy's token.
pub(super) async fn find_destination(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let Some(Lookup::Name { name, dynamic }) = ctx.lookup.take() else {
        if let Some(destination) = ctx.destination.filter(|destination| destination.on_premise) {
            let services = ctx.state.destinations.as_ref().ok_or(routing::Error::RouteNotFound)?;
            let header = services.proxy_authorization(&destination.name, tenant_of(ctx)).await?;
            ctx.extra_headers.push(header);
        }
        return Ok(Flow::Next);
    };
    let services = ctx.state.destinations.as_ref().ok_or(routing::Error::RouteNotFound)?;
    let user = ctx.session().map(|session| session.access_token.as_str());
    let correlation_id = ctx.correlation_id.to_str().unwrap_or("-");
    let find = crate::destination::Find {
        name: &name,
        dynamic,
        user,
        tenant: tenant_of(ctx),
        prefer_local: ctx.route.is_some_and(|route| route.prefer_local),
        correlation_id,
    };
    let ready = match services.resolve(find).await {
        Ok(ready) => ready,
        // A name from the request that the service does not know is no route, not a failure.
        Err(DestinationError::NotFound { .. }) if dynamic => {
            return Err(routing::Error::UnknownDestination(name).into())
        }
        Err(error) => return Err(error.into()),
    };
    for (header, value) in &ready.resolved.found.headers {
        if !parts.headers.contains_key(header) {
            parts.headers.insert(header.clone(), value.clone());
        }
    }
    ctx.found = Some(ready.resolved);
    ctx.extra_headers = ready.headers;
    Ok(Flow::Next)
}

/// The tenant whose destinations a request uses (multitenancy): the logged-in user's zone, else
/// the host's tenant. `None` without multitenancy: the provider's.
fn tenant_of<'c>(ctx: &'c RequestCtx<'_>) -> Option<&'c str> {
    ctx.snapshot.config.tenancy.as_ref()?;
    ctx.session()
        .and_then(|session| session.user.tenant.as_deref())
        .or(ctx.tenant.as_deref())
}

/// What the backend learns about the user: the client's own credentials and our cookies are
/// removed, the session's access token is added where the destination asks for it, and the
/// backend cookies kept for the destination go with the request.
pub(super) fn upstream_identity(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let (route, destination) = ctx
        .route
        .zip(ctx.target_destination())
        .ok_or(routing::Error::RouteNotFound)?;
    let session = ctx.session();
    let headers = &mut parts.headers;
    if let Some(auth) = &ctx.state.auth {
        let session_cookie = auth.settings.session_cookie.as_str();
        headers::strip_cookies(headers, |name| is_router_cookie(session_cookie, name));
    }
    if route.is_protected() {
        headers.remove(header::AUTHORIZATION);
        if let (true, Some(session)) = (destination.forward_auth_token, session) {
            headers.insert(header::AUTHORIZATION, session.access_token.header().clone());
        }
    }
    // Multitenancy: the backend learns the user's tenant (zone), as from the Node.js router.
    // A client's own value never passes.
    if ctx.snapshot.config.tenancy.is_some() {
        let tenantid = http::HeaderName::from_static("tenantid");
        headers.remove(&tenantid);
        if let Some(zone) = session.and_then(|session| session.user.zone_id.as_deref()) {
            if let Ok(zone) = HeaderValue::from_str(zone) {
                headers.insert(tenantid, zone);
            }
        }
    }
    if let (true, Some(session)) = (keeps_backend_cookies(route, session), session) {
        auth::backend_cookies::add_to_request(headers, session, &destination.name);
    }
    Ok(Flow::Next)
}

/// The request as the destination gets it: the body under its limit, and what the forwarding
/// headers say.
pub(super) fn request<'c, B>(
    parts: &Parts,
    incoming: B,
    ctx: &'c RequestCtx<'_>,
) -> Result<(Body, ForwardRequest<'c, 'c>), GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let destination = ctx.target_destination().ok_or(routing::Error::RouteNotFound)?;
    // The host the client asked for: `X-Custom-Host` behind an external reverse proxy.
    let custom_host = match ctx.snapshot.config.auth.external_reverse_proxy {
        true => parts.headers.get("x-custom-host").cloned(),
        false => None,
    };
    let host = custom_host
        .or_else(|| parts.headers.get(header::HOST).cloned())
        .or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
    let forwarding = Forwarding {
        peer: ctx.connection.peer.ip(),
        scheme: ctx.connection.scheme,
        host,
        original_path: ctx.path(),
        set_x_forwarded: destination.set_x_forwarded_headers,
        correlation_id: &ctx.correlation_id,
    };
    let server = &ctx.snapshot.config.server;
    let body = request_body(
        incoming,
        &parts.headers,
        server.max_request_body,
        server.request_timeout,
        ctx.started,
    )?;
    let request = ForwardRequest {
        destination,
        url: std::borrow::Cow::Borrowed(ctx.url()),
        forwarding,
        extra: &ctx.extra_headers,
        clashing_cookie: match ctx.snapshot.config.server.remove_clashing_cookie {
            true => ctx
                .state
                .auth
                .as_ref()
                .map(|auth| auth.settings.session_cookie.as_str()),
            false => None,
        },
        started: Instant::now(),
    };
    Ok((body, request))
}

/// Forwards the request to its destination, streaming both ways.
pub(super) async fn forward<B>(parts: Parts, incoming: B, ctx: &mut RequestCtx<'_>) -> Answer
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (body, request) = request(&parts, incoming, ctx)?;
    let started = request.started;
    let forwarded = proxy::forward(&ctx.snapshot.upstream, parts, body, request).await;
    ctx.upstream = Some(started.elapsed());
    Ok(forwarded?)
}

/// Opens the websocket tunnel to the destination; a logged-in user's websocket closes when the
/// session ends.
pub(super) async fn websocket<B>(parts: Parts, incoming: B, ctx: &mut RequestCtx<'_>) -> Answer
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // The body limit applies to the upgrade request too; the body itself is not sent on.
    let (_body, request) = request(&parts, incoming, ctx)?;
    let started = request.started;
    let state = ctx.state;
    let watch = state.auth.as_ref().zip(ctx.user.as_ref()).map(|(auth, (id, _))| {
        proxy::websocket::SessionWatch::new(auth.store.clone(), *id, ctx.snapshot.config.ws_session_check)
    });
    let opened = Box::pin(proxy::websocket::proxy(
        &ctx.snapshot.upstream,
        parts,
        request,
        watch,
        state.metrics.websocket(),
    ))
    .await;
    ctx.upstream = Some(started.elapsed());
    Ok(opened?)
}

/// A logged-in user's backend session cookies stay in the session instead of reaching the browser
/// (`setBackendSessionCookies` off).
pub(super) async fn keep_backend_cookies(
    response: &mut Response<Body>,
    ctx: &mut RequestCtx<'_>,
) -> Result<(), GatewayError> {
    let state = ctx.state;
    let (Some(route), Some(destination), Some(auth), Some((id, session))) =
        (ctx.route, ctx.target_destination(), &state.auth, &ctx.user)
    else {
        return Ok(());
    };
    if !keeps_backend_cookies(route, Some(session)) {
        return Ok(());
    }
    let cookies = auth::backend_cookies::take_session_cookies(response.headers_mut());
    if !cookies.is_empty() {
        let updated = auth::backend_cookies::with_cookies(session, &destination.name, cookies);
        // `update`, not `save`: a logout while the backend answered must not be undone.
        auth.store
            .update(id, Arc::new(updated))
            .await
            .map_err(auth::Error::from)?;
    }
    Ok(())
}

/// True when the router keeps the destination's session cookies in the user's session instead of
/// passing them to the browser (`setBackendSessionCookies` off, a logged-in user).
fn keeps_backend_cookies(route: &Route, session: Option<&Session>) -> bool {
    session.is_some() && !route.set_backend_session_cookies
}

/// The request body with `MAX_REQUEST_BODY` applied: a declared `Content-Length` above the limit
/// is refused at once; a streamed body fails when it passes the limit
/// ([`crate::error::is_body_too_large`]). A body still arriving `timeout` after `started`
/// (`INCOMING_REQUEST_TIMEOUT`) fails too.
fn request_body<B>(
    incoming: B,
    headers: &http::HeaderMap,
    max: Option<u64>,
    timeout: Option<Duration>,
    started: Instant,
) -> Result<Body, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // Only a body that is still to come gets a timer: requests without one pay nothing.
    match timeout {
        Some(timeout) if !incoming.is_end_stream() => {
            limited(body::Deadline::new(incoming, started + timeout), headers, max)
        }
        _ => limited(incoming, headers, max),
    }
}

fn limited<B>(incoming: B, headers: &http::HeaderMap, max: Option<u64>) -> Result<Body, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(max) = max else {
        return Ok(body::boxed(incoming));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| crate::http1::content_length(value.as_bytes()));
    if declared.is_some_and(|length| length > max) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    Ok(body::boxed(http_body_util::Limited::new(incoming, max)))
}

/// The router's own cookies, which backends never see: the session cookie, the login binding
/// cookie (`login::binding_cookie`, recognised here without building its name) and the fragment
/// cookie.
pub(super) fn is_router_cookie(session_cookie: &str, name: &[u8]) -> bool {
    name.strip_prefix(session_cookie.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest == crate::auth::login::BINDING_SUFFIX.as_bytes())
        || name == crate::auth::login::FRAGMENT_COOKIE.as_bytes()
}
