//! The fixed order of phases for one request. Phases never call each other; the order lives here:
//! check → cors / websocket admission / framing allowlist → welcome → route → authenticate →
//! dispatch (static | service | forward | websocket) → response headers.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use tokio::time::Instant;

use crate::auth::session::Session;
use crate::auth::{self, Origin, Outcome};
use crate::body::{self, Body, BoxError};
use crate::config::{Config, Destination, RouteKind};
use crate::error::{self, GatewayError};
use crate::logging;
use crate::proxy::headers::{self, Forwarding};
use crate::proxy::{self, ForwardRequest};
use crate::state::{AppState, Snapshot};
use crate::{routing, static_files};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the connection knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Per-request data shared by the phases.
pub struct RequestCtx {
    pub connection: Connection,
    pub correlation_id: HeaderValue,
    /// The path and query as received (the request's own bytes, shared, not copied).
    pub target: Option<http::uri::PathAndQuery>,
    pub route_index: Option<usize>,
    pub started: Instant,
    /// CORS headers for the response of a cross-origin request.
    pub cors: crate::cors::ResponseHeaders,
}

impl RequestCtx {
    /// The path as received, without the query (empty for a target that is not a path, which
    /// `check` refuses).
    pub fn path(&self) -> &str {
        self.target.as_ref().map_or("", http::uri::PathAndQuery::path)
    }
}

/// A response, or why there is none.
type Answer = Result<Response<Body>, GatewayError>;

/// Handles one request; never fails (errors become responses here).
///
/// The request body is hyper's for requests hyper parsed, and empty for those of the HTTP/1 fast
/// lane ([`crate::server`]).
// A plain function returning an `async` block, not an `async fn`: an `async fn` keeps its
// arguments twice (as arguments and as the locals they are moved into), and this future is moved
// into place for every request.
pub fn handle<B>(
    state: &AppState,
    request: Request<B>,
    connection: Connection,
) -> impl std::future::Future<Output = Response<Body>> + Send + '_
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut ctx = RequestCtx {
        connection,
        correlation_id: correlation_id(request.headers()),
        target: request.uri().path_and_query().cloned(),
        route_index: None,
        started: Instant::now(),
        cors: Default::default(),
    };
    let method = request.method().clone();
    async move {
        let snapshot = state.snapshot();
        // `upstream`: how long the destination took to answer, when one was called.
        let (answer, upstream) = route(state, &snapshot, request, &mut ctx).await;
        let mut response = match answer {
            Ok(response) => response,
            Err(error) => {
                let error = error.reclassify();
                if let Some(kind) = error.metric() {
                    state.metrics.request_error(kind);
                }
                let status = error.status();
                // The same field names and types as the access log line, for one JSON schema.
                let correlation_id = ctx.correlation_id.to_str().unwrap_or("-");
                if status.is_server_error() {
                    tracing::error!(correlation_id, route = ctx.route_index, status = status.as_u16(), error = %crate::auth::xsuaa::error_chain(&error), "request failed");
                } else {
                    tracing::info!(correlation_id, route = ctx.route_index, status = status.as_u16(), error = %error, "request refused");
                }
                // Boxed: rare paths stay out of the hot future's size (it is moved on every poll setup).
                Box::pin(error::respond(&error, &snapshot.config, ctx.path())).await
            }
        };
        finish(&mut response, &snapshot.config, &ctx);
        let elapsed = ctx.started.elapsed();
        state
            .metrics
            .request(ctx.route_index, response.status(), elapsed, upstream);
        if snapshot.config.server.access_log {
            logging::access(&logging::AccessRecord {
                method: &method,
                path: ctx.path(),
                status: response.status().as_u16(),
                route: ctx.route_index,
                correlation_id: &ctx.correlation_id,
                duration_us: elapsed.as_micros() as u64,
                upstream_us: upstream.map(|upstream| upstream.as_micros() as u64),
            });
        }
        response
    }
}

/// What the phases that do not wait decided ([`decide`]).
// The forwarding variant is the large one on purpose: it is the common case, and boxing it would
// put an allocation on every public request.
#[allow(clippy::large_enum_variant)]
enum Step<'s, 'c> {
    /// Answered here: a preflight, a redirect, a refusal of the framing allowlist.
    Respond(Response<Body>),
    /// A public route's request, ready for its destination: nothing waited for before it, and
    /// nothing boxed (this is the path most requests take). The call itself is made where its
    /// future is kept, so that the future is not moved through the layers in between.
    Forward {
        parts: http::request::Parts,
        body: Body,
        request: ForwardRequest<'s, 'c>,
    },
    /// The phases that wait: login callback, logout, authentication, the session store, static
    /// files, the user API and websockets. Boxed: their state is large and public requests would
    /// otherwise carry and move it.
    Wait(std::pin::Pin<Box<dyn std::future::Future<Output = (Answer, Upstream)> + Send + 'c>>),
}

/// How long the destination took to answer, when one was called.
type Upstream = Option<std::time::Duration>;

/// The answer to a request after [`decide`], and how long its destination took: one future, of
/// the size of the destination's call, which the request's own future holds in one place.
fn route<'s, 'c, B>(
    state: &'s AppState,
    snapshot: &'s Snapshot,
    request: Request<B>,
    ctx: &'c mut RequestCtx,
) -> impl std::future::Future<Output = (Answer, Upstream)> + Send + 'c
where
    's: 'c,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use futures_util::future::{ready, Either, FutureExt};
    match decide(state, snapshot, request, ctx) {
        Ok(Step::Respond(response)) => Either::Left(ready((Ok(response), None))),
        Ok(Step::Forward { parts, body, request }) => {
            let started = request.started;
            Either::Right(Either::Left(
                proxy::forward(&snapshot.upstream, parts, body, request)
                    .map(move |sent| (sent.map_err(GatewayError::from), Some(started.elapsed()))),
            ))
        }
        Ok(Step::Wait(rest)) => Either::Right(Either::Right(rest)),
        Err(error) => Either::Left(ready((Err(error), None))),
    }
}

/// The route a request took, and what the waiting phases need of it.
struct Routed<'s, 'c> {
    route: &'s crate::config::Route,
    /// The URL after the route's `target` rewrite.
    url: std::borrow::Cow<'c, str>,
    destination: Option<&'s Destination>,
    /// `?sap_idp=`, taken out of the URL.
    idp_hint: Option<String>,
    websocket: bool,
}

/// check → cors / websocket admission / framing allowlist → callback / logout → welcome → route,
/// and for a public destination route the forwarding itself. Synchronous: the future a request
/// waits on is the destination's alone unless a phase must wait ([`Step::Wait`]).
fn decide<'s, 'c, B>(
    state: &'s AppState,
    snapshot: &'s Snapshot,
    request: Request<B>,
    ctx: &'c mut RequestCtx,
) -> Result<Step<'s, 'c>, GatewayError>
where
    's: 'c,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = &snapshot.config;
    let mut request = request;
    check(&request)?;
    normalize(&mut request, config, ctx)?;
    let (parts, incoming) = request.into_parts();
    let origin = Origin {
        scheme: ctx.connection.scheme,
        peer: Some(ctx.connection.peer.ip()),
    };
    // CORS, websocket admission and the framing allowlist run before routing, as in the reference.
    match crate::cors::check(config, &parts, ctx.connection.scheme)? {
        crate::cors::Decision::Respond(response) => return Ok(Step::Respond(response)),
        crate::cors::Decision::Continue(headers) => ctx.cors = headers,
    }
    let websocket = proxy::websocket::admit(config, &parts, ctx.connection.scheme)?;
    if let Some(response) = crate::clickjacking::respond(config, &parts) {
        return Ok(Step::Respond(response));
    }
    if let Some(auth) = &state.auth {
        if auth.is_callback(&parts) {
            return Ok(Step::Wait(Box::pin(async move {
                (auth.callback(&parts, &origin).await.map_err(GatewayError::from), None)
            })));
        }
        if is_logout(config, &parts) {
            return Ok(Step::Wait(Box::pin(async move {
                let answer = auth.logout(&parts, &origin, &snapshot.config, &snapshot.upstream).await;
                (answer.map_err(GatewayError::from), None)
            })));
        }
    }
    if let Some(response) = welcome(&parts, config) {
        return Ok(Step::Respond(response));
    }
    // Borrowed from the context's handle on the request's path and query, not from `parts`, which
    // moves on to the destination while the URL a route matched is still in use.
    let url = ctx.target.as_ref().map_or("/", |pq| pq.as_str());
    // `?sap_idp=` picks the identity provider; it is not part of what routes match.
    let (url, idp_hint) = strip_sap_idp(url);
    let matched = match url {
        std::borrow::Cow::Borrowed(url) => routing::match_route(config, &parts.method, url)?,
        // Without `sap_idp` the URL is a new string, which the match must not borrow.
        std::borrow::Cow::Owned(url) => routing::match_route(config, &parts.method, &url)?.into_owned(),
    };
    ctx.route_index = Some(matched.route.index);
    let routed = Routed {
        route: matched.route,
        url: matched.url,
        destination: matched.destination,
        idp_hint,
        websocket,
    };
    let ctx: &'c RequestCtx = ctx;
    match (&routed.route.kind, routed.destination) {
        (RouteKind::Destination(_), Some(destination)) if !routed.route.is_protected() && !websocket => {
            let (parts, body, request) = upstream_request(
                state,
                config,
                parts,
                incoming,
                routed.route,
                routed.url,
                destination,
                ctx,
                None,
            )?;
            Ok(Step::Forward { parts, body, request })
        }
        _ => Ok(Step::Wait(Box::pin(async move {
            let mut upstream = None;
            let answer = wait(state, snapshot, parts, incoming, ctx, &mut upstream, routed, origin).await;
            (answer, upstream)
        }))),
    }
}
/// authenticate → scope → csrf → dispatch (static | service | destination | websocket), for the
/// requests [`route`] could not send on at once.
#[allow(clippy::too_many_arguments)]
async fn wait<'s, 'c, B>(
    state: &'s AppState,
    snapshot: &'s Snapshot,
    mut parts: http::request::Parts,
    incoming: B,
    ctx: &'c RequestCtx,
    upstream: &mut Upstream,
    routed: Routed<'s, 'c>,
    origin: Origin<'_>,
) -> Answer
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = &snapshot.config;
    let route = routed.route;
    let mut user = None;
    let mut set_cookie = None;
    let mut csrf_token = None;
    if route.is_protected() {
        // Fail closed: a protected route without login machinery never forwards.
        let auth = state.auth.as_ref().ok_or(auth::Error::NotConfigured)?;
        let dynamic = route.dynamic_identity_provider || auth.settings.dynamic_identity_provider;
        let hint = routed.idp_hint.as_deref().filter(|_| dynamic);
        // Boxed here and below: the login, refresh and store futures are large, and requests that
        // do not need them would otherwise carry their space.
        match Box::pin(auth.authenticate(&parts, route, &origin, hint)).await? {
            Outcome::User {
                id,
                session,
                set_cookie: cookie,
            } => {
                if let Some(scope) = &route.scope {
                    let required = scope.required(&parts.method);
                    if !required.iter().any(|needed| session.user.scopes.contains(needed)) {
                        return Err(auth::Error::MissingScope.into());
                    }
                }
                if route.csrf_protection {
                    // A read passes without the store; only a token fetch may need it.
                    csrf_token = match auth.csrf_decision(&parts, &session, &origin)? {
                        crate::auth::csrf::Decision::Pass => None,
                        decision => Box::pin(auth.settle_csrf(&id, &session, decision)).await?,
                    };
                    parts.headers.remove(crate::auth::csrf::X_CSRF_TOKEN);
                }
                set_cookie = cookie;
                user = Some((id, session));
            }
            Outcome::Respond(response) => return Ok(response),
        }
    }

    let mut response = match &route.kind {
        RouteKind::LocalDir(dir) => {
            Box::pin(static_files::serve(static_files::StaticRequest {
                method: &parts.method,
                headers: &parts.headers,
                dir,
                url: &routed.url,
                original_path: ctx.path(),
                cache_control: route.cache_control.as_ref(),
            }))
            .await?
        }
        RouteKind::Service { .. } => {
            let (auth, (_, session)) = state
                .auth
                .as_ref()
                .zip(user.as_ref())
                .ok_or(auth::Error::Unauthenticated)?;
            Box::pin(auth.user_api(&routed.url, session)).await?
        }
        RouteKind::Destination(_) => {
            let destination = routed.destination.ok_or(routing::Error::RouteNotFound)?;
            let session = user.as_ref().map(|(_, session)| session.as_ref());
            let (parts, body, request) = upstream_request(
                state,
                config,
                parts,
                incoming,
                route,
                routed.url,
                destination,
                ctx,
                session,
            )?;
            let started = request.started;
            let forwarded = if routed.websocket {
                // A logged-in user's websocket closes when the session ends.
                let watch = state.auth.as_ref().zip(user.as_ref()).map(|(auth, (id, _))| {
                    proxy::websocket::SessionWatch::new(auth.store.clone(), *id, config.ws_session_check)
                });
                Box::pin(proxy::websocket::proxy(
                    &snapshot.upstream,
                    parts,
                    request,
                    watch,
                    state.metrics.websocket(),
                ))
                .await
                .map_err(GatewayError::from)
            } else {
                proxy::forward(&snapshot.upstream, parts, body, request)
                    .await
                    .map_err(GatewayError::from)
            };
            *upstream = Some(started.elapsed());
            let mut response = forwarded?;
            if let (true, Some(auth), Some((id, session))) =
                (keeps_backend_cookies(route, session_of(&user)), &state.auth, &user)
            {
                let cookies = auth::backend_cookies::take_session_cookies(response.headers_mut());
                if !cookies.is_empty() {
                    let updated = auth::backend_cookies::with_cookies(session, &destination.name, cookies);
                    // `update`, not `save`: a logout while the backend answered must not be undone.
                    auth.store
                        .update(id, Arc::new(updated))
                        .await
                        .map_err(auth::Error::from)?;
                }
            }
            response
        }
    };
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if let Some(token) = csrf_token.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(crate::auth::csrf::X_CSRF_TOKEN, token);
    }
    Ok(response)
}

fn session_of<I>(user: &Option<(I, Arc<Session>)>) -> Option<&Session> {
    user.as_ref().map(|(_, session)| session.as_ref())
}

/// True when the router keeps the destination's session cookies in the user's session instead of
/// passing them to the browser (`setBackendSessionCookies` off, a logged-in user).
fn keeps_backend_cookies(route: &crate::config::Route, session: Option<&Session>) -> bool {
    session.is_some() && !route.set_backend_session_cookies
}

/// The request as the destination gets it: the user's identity as the destination asks for it, the
/// kept backend cookies, the body under its limit, and what the forwarding headers say.
#[allow(clippy::too_many_arguments)]
fn upstream_request<'d, 'a, B>(
    state: &AppState,
    config: &Config,
    mut parts: http::request::Parts,
    incoming: B,
    route: &crate::config::Route,
    url: std::borrow::Cow<'a, str>,
    destination: &'d Destination,
    ctx: &'a RequestCtx,
    session: Option<&Session>,
) -> Result<(http::request::Parts, Body, ForwardRequest<'d, 'a>), GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    upstream_identity(&mut parts.headers, state, route.is_protected(), destination, session);
    if let (true, Some(session)) = (keeps_backend_cookies(route, session), session) {
        auth::backend_cookies::add_to_request(&mut parts.headers, session, &destination.name);
    }
    let forwarding = Forwarding {
        peer: ctx.connection.peer.ip(),
        scheme: ctx.connection.scheme,
        host,
        original_path: ctx.path(),
        set_x_forwarded: destination.set_x_forwarded_headers,
        correlation_id: &ctx.correlation_id,
    };
    let body = request_body(incoming, &parts.headers, config.server.max_request_body)?;
    let request = ForwardRequest {
        destination,
        url,
        forwarding,
        started: Instant::now(),
    };
    Ok((parts, body, request))
}

/// The request body with `MAX_REQUEST_BODY` applied: a declared `Content-Length` above the limit
/// is refused at once; a streamed body fails when it passes the limit
/// ([`error::is_body_too_large`]).
fn request_body<B>(incoming: B, headers: &http::HeaderMap, max: Option<u64>) -> Result<Body, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(max) = max else {
        return Ok(body::boxed(incoming));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    Ok(body::boxed(http_body_util::Limited::new(incoming, max)))
}

/// True when the request is for `logout.logoutEndpoint`.
fn is_logout(config: &Config, parts: &http::request::Parts) -> bool {
    config
        .logout
        .as_ref()
        .and_then(|logout| logout.endpoint.as_deref())
        .is_some_and(|endpoint| parts.uri.path() == endpoint)
}

/// Removes `sap_idp` from the query and returns it.
fn strip_sap_idp(url: &str) -> (std::borrow::Cow<'_, str>, Option<String>) {
    let Some((path, query)) = url.split_once('?') else {
        return (std::borrow::Cow::Borrowed(url), None);
    };
    if !query.split('&').any(|pair| pair.starts_with("sap_idp=")) {
        return (std::borrow::Cow::Borrowed(url), None);
    }
    let mut idp = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sap_idp=") {
            Some(value) => {
                idp = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .ok()
                    .map(|v| v.into_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    (std::borrow::Cow::Owned(url), idp.filter(|v| !v.is_empty()))
}

/// Refuses requests that are malformed in ways a proxy must not pass on.
fn check<B>(request: &Request<B>) -> Result<(), GatewayError> {
    // One pass over the fields (each value of a repeated name) instead of a lookup each.
    let (mut coded, mut lengths, mut hosts) = (false, 0, 0);
    for (name, _) in request.headers() {
        coded |= name == header::TRANSFER_ENCODING;
        lengths += usize::from(name == header::CONTENT_LENGTH);
        hosts += usize::from(name == header::HOST);
    }
    if coded && lengths > 0 {
        return Err(GatewayError::BadRequest("both Transfer-Encoding and Content-Length"));
    }
    if lengths > 1 {
        return Err(GatewayError::BadRequest("several Content-Length headers"));
    }
    // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host; HTTP/1.0 may have none, and
    // HTTP/2 names its authority in `:authority`.
    let http1 = request.version() <= http::Version::HTTP_11;
    if http1 && hosts > 1 {
        return Err(GatewayError::BadRequest("several Host headers"));
    }
    if hosts == 0 && request.version() == http::Version::HTTP_11 {
        return Err(GatewayError::BadRequest("no Host header"));
    }
    if request.uri().path_and_query().is_none() || !request.uri().path().starts_with('/') {
        return Err(GatewayError::BadRequest("request target must be a path"));
    }
    Ok(())
}

/// Gives the request the one path that the route table, the scope check and the backend all see
/// ([`routing::normalize_path`]: slashes merged, unreserved characters decoded, encoded slashes and
/// nested encodings refused), then refuses traversals in it.
fn normalize<B>(request: &mut Request<B>, config: &Config, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(target) = request.uri().path_and_query() else {
        return Ok(());
    };
    if let std::borrow::Cow::Owned(mut normal) =
        routing::normalize_path(target.path(), config.server.allow_encoded_slash)?
    {
        if let Some(query) = target.query() {
            normal.push('?');
            normal.push_str(query);
        }
        fn invalid<E>(_: E) -> GatewayError {
            GatewayError::BadRequest("request target is not a valid path")
        }
        let target = http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(normal)).map_err(invalid)?;
        // Scheme and authority (absolute-form, HTTP/2) stay; only the path changes.
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.path_and_query = Some(target.clone());
        *request.uri_mut() = http::Uri::from_parts(uri).map_err(invalid)?;
        ctx.target = Some(target);
    }
    if config.server.path_validation {
        routing::validate_path(request.uri().path())?;
    }
    Ok(())
}

/// What the backend learns about the user: the client's own credentials and our cookies are
/// removed, and the session's access token is added where the destination asks for it.
fn upstream_identity(
    headers: &mut http::HeaderMap,
    state: &AppState,
    protected: bool,
    destination: &Destination,
    session: Option<&Session>,
) {
    if let Some(auth) = &state.auth {
        let session_cookie = auth.settings.session_cookie.as_str();
        headers::strip_cookies(headers, |name| is_router_cookie(session_cookie, name));
    }
    if protected {
        headers.remove(header::AUTHORIZATION);
        if let (true, Some(session)) = (destination.forward_auth_token, session) {
            headers.insert(header::AUTHORIZATION, session.access_token.header().clone());
        }
    }
}

/// The router's own cookies, which backends never see: the session cookie, the login binding
/// cookie (`login::binding_cookie`, recognised here without building its name) and the fragment
/// cookie.
fn is_router_cookie(session_cookie: &str, name: &[u8]) -> bool {
    name.strip_prefix(session_cookie.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest == crate::auth::login::BINDING_SUFFIX.as_bytes())
        || name == crate::auth::login::FRAGMENT_COOKIE.as_bytes()
}

/// `welcomeFile`: a request for exactly `/` is redirected there.
fn welcome(parts: &http::request::Parts, config: &Config) -> Option<Response<Body>> {
    let file = config.welcome_file.as_ref()?;
    if parts.uri.path() != "/" {
        return None;
    }
    Some(body::found(file))
}

/// Headers every response carries: the configured ones (a backend's own value wins) and the ids.
fn finish(response: &mut Response<Body>, config: &Config, ctx: &RequestCtx) {
    let headers = response.headers_mut();
    // One lookup each: what the response already has is kept.
    for (name, value) in &config.response_headers {
        if let header::Entry::Vacant(slot) = headers.entry(name) {
            slot.insert(value.clone());
        }
    }
    headers
        .entry(X_REQUEST_ID)
        .or_insert_with(|| ctx.correlation_id.clone());
    ctx.cors.apply(headers);
}

/// The correlation id: taken from the request (`x-correlationid`, `x-correlation-id`, `x-request-id`,
/// `x-vcap-request-id`) when it is a sane token, else a new random UUID.
fn correlation_id(headers: &http::HeaderMap) -> HeaderValue {
    // One pass over the request's headers instead of a lookup (a hash of the name) for each
    // source; the first value of each counts, as `get` would return it.
    let mut found: [Option<&HeaderValue>; 4] = [None; 4];
    for (name, value) in headers {
        let source = match name.as_str() {
            "x-correlationid" => 0,
            "x-correlation-id" => 1,
            "x-request-id" => 2,
            "x-vcap-request-id" => 3,
            _ => continue,
        };
        found[source].get_or_insert(value);
    }
    for value in found.into_iter().flatten() {
        let ok = value.len() <= 128
            && value
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok && !value.is_empty() {
            return value.clone();
        }
    }
    crate::util::uuid_header()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_cookies_are_the_session_binding_and_fragment_cookies() {
        let session = "JSESSIONID";
        assert_eq!(crate::auth::login::binding_cookie(session), "JSESSIONID_STATE");
        for (name, expected) in [
            ("JSESSIONID", true),
            ("JSESSIONID_STATE", true),
            (crate::auth::login::FRAGMENT_COOKIE, true),
            ("JSESSIONID_STATEX", false),
            ("JSESSIONIDX", false),
            ("jsessionid", false),
            ("XJSESSIONID", false),
            ("", false),
        ] {
            assert_eq!(is_router_cookie(session, name.as_bytes()), expected, "{name:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_correlation_id_comes_from_the_first_sane_source_in_order() {
        // Request headers, and the id expected (`None`: a new UUID).
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let table: &[Row<'_>] = &[
            (&[("x-request-id", "r"), ("x-correlationid", "c")], Some("c")),
            (&[("x-vcap-request-id", "v"), ("x-correlation-id", "d")], Some("d")),
            (&[("x-vcap-request-id", "v"), ("x-request-id", "r")], Some("r")),
            (&[("x-vcap-request-id", "v")], Some("v")),
            // Insane values are passed over.
            (&[("x-correlationid", "a b"), ("x-request-id", "r")], Some("r")),
            (&[("x-correlationid", ""), ("x-vcap-request-id", "v")], Some("v")),
            // The first of several values counts, as a lookup returns it.
            (&[("x-request-id", "first"), ("x-request-id", "second")], Some("first")),
            (&[("x-request-id", "no way"), ("x-request-id", "second")], None),
            (&[("accept", "text/html")], None),
        ];
        for (pairs, expected) in table {
            let id = correlation_id(&headers(pairs));
            let id = id.to_str().unwrap();
            match expected {
                Some(expected) => assert_eq!(id, *expected, "{pairs:?}"),
                None => assert_eq!(id.len(), 36, "a new UUID for {pairs:?}, got {id}"),
            }
        }
    }
}
