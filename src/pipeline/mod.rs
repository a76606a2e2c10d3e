//! The request pipeline: [`RequestCtx`], what one request's phases share, and [`handle`], the one
//! place that runs the phases in their order (`docs/pipeline.md` draws it). Phases live in files
//! by concern and never call each other.

mod admission;
mod checks;
mod finish;
mod login;
mod route;
mod serve;
mod subscription;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::request::Parts;
use http::{Request, Response};
use tokio::time::Instant;

use crate::auth::Origin;
use crate::body::{Body, BoxError};
use crate::config::{Destination, Route, RouteKind};
use crate::error::{self, GatewayError};
use crate::logging;
use crate::proxy::{self, ForwardRequest};
use crate::session::{Session, SessionId};
use crate::state::{AppState, Snapshot};

/// What the connection knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Per-request data shared by the phases: what the request arrived with, and what each phase
/// found out for the ones after it. Built on the stack of the request's own future.
pub struct RequestCtx<'s> {
    pub state: &'s AppState,
    /// The snapshot this request loaded, used throughout.
    pub snapshot: &'s Snapshot,
    pub connection: Connection,
    pub correlation_id: HeaderValue,
    /// The path and query as received (the request's own bytes, shared, not copied); `normalize`
    /// replaces it with the normal form.
    pub target: Option<http::uri::PathAndQuery>,
    pub started: Instant,
    /// CORS headers for the response of a cross-origin request (`cors`).
    pub cors: crate::cors::ResponseHeaders,
    /// An admitted websocket upgrade (`admit_websocket`).
    pub websocket: bool,
    /// The route taken, its index and its destination (`route`): one of the `destinations`
    /// variable, or one the Destination service must find.
    pub route: Option<&'s Route>,
    pub route_index: Option<usize>,
    pub destination: Option<&'s Destination>,
    pub lookup: Option<crate::routing::Lookup>,
    /// The destination the Destination service found (`find_destination`).
    pub found: Option<Arc<crate::destination::Resolved>>,
    /// Headers the destination adds after the header policy: its credentials, the on-premise
    /// proxy's token (`find_destination`).
    pub extra_headers: Vec<(http::HeaderName, HeaderValue)>,
    /// The URL after `sap_idp` removal and the route's `target` rewrite, when it is not `target`.
    rewritten: Option<String>,
    /// The tenant the host names (`tenant`), with multitenancy.
    pub tenant: Option<Arc<str>>,
    /// `?sap_idp=`, taken out of the URL (`route`).
    pub idp_hint: Option<String>,
    /// The logged-in user (`authenticate`).
    pub user: Option<(SessionId, Arc<Session>)>,
    /// A service-to-approuter caller's user (`authenticate`): a session for this request only,
    /// which nothing stores, so CSRF, kept backend cookies and the websocket's session watch do
    /// not apply.
    pub caller: Option<Arc<Session>>,
    /// A new session cookie for the response (`authenticate`).
    pub set_cookie: Option<HeaderValue>,
    /// A CSRF token fetched by this request (`csrf`).
    pub csrf_token: Option<String>,
    /// How long the destination took to answer, when one was called.
    pub upstream: Option<Duration>,
}

impl RequestCtx<'_> {
    /// The path as received, without the query (empty for a target that is not a path, which
    /// `check` refuses).
    pub fn path(&self) -> &str {
        self.target.as_ref().map_or("", http::uri::PathAndQuery::path)
    }

    /// The URL the route's handler gets: path and query after the `target` rewrite.
    pub fn url(&self) -> &str {
        match &self.rewritten {
            Some(url) => url,
            None => self.target.as_ref().map_or("/", http::uri::PathAndQuery::as_str),
        }
    }

    /// How the client reached us, for login cookies and redirects.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            scheme: self.connection.scheme,
            peer: Some(self.connection.peer.ip()),
            tenant: self.tenant.as_deref(),
        }
    }

    /// The session of the logged-in user or of a service-to-approuter caller, if any.
    pub fn session(&self) -> Option<&Session> {
        match &self.user {
            Some((_, session)) => Some(session),
            None => self.caller.as_deref(),
        }
    }

    /// Where the request goes: the destination the Destination service found, or the one of
    /// the `destinations` variable.
    pub fn target_destination(&self) -> Option<&Destination> {
        match &self.found {
            Some(found) => Some(&found.destination),
            None => self.destination,
        }
    }
}

/// The host the request was sent to, as tenants and `"*"` destinations are told apart by it:
/// `X-Custom-Host` with `EXTERNAL_REVERSE_PROXY`, then `X-Forwarded-Host` only behind trusted
/// proxies (`CLIENT_IP_FORWARDED_HOPS`), else `Host` or the request target's authority; the first
/// of a list, port kept.
fn request_host<'p>(parts: &'p Parts, config: &crate::config::Config) -> Option<&'p str> {
    let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
    let custom = match config.auth.external_reverse_proxy {
        true => header("x-custom-host"),
        false => None,
    };
    let forwarded = || match config.server.forwarded_hops > 0 {
        true => header("x-forwarded-host"),
        false => None,
    };
    custom
        .or_else(forwarded)
        .or_else(|| header("host"))
        .or_else(|| parts.uri.authority().map(|authority| authority.as_str()))
        .map(|host| host.split(',').next().unwrap_or("").trim())
}

/// What a phase decided: the request goes on to the next phase, or is answered here.
pub enum Flow {
    Next,
    Answer(Response<Body>),
}

/// A synchronous phase's result; a waiting phase returns it from its future.
type Phase = Result<Flow, GatewayError>;

/// A response, or why there is none.
type Answer = Result<Response<Body>, GatewayError>;

/// Runs one phase: on to the next, or out of the runner with the phase's answer.
macro_rules! run {
    ($phase:expr) => {
        if let Flow::Answer(response) = $phase? {
            return Ok(response.into());
        }
    };
}

/// Handles one request; never fails (errors become responses here).
///
/// The request body is hyper's for requests hyper parsed, and empty for those of the HTTP/1 fast
/// lane ([`crate::server`]).
// A plain function returning a future (ARCHITECTURE.md, "Hot-path idioms"): this future is moved into place per request.
pub fn handle<B>(
    state: &AppState,
    request: Request<B>,
    connection: Connection,
) -> impl std::future::Future<Output = Response<Body>> + Send + '_
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let correlation_id = finish::correlation_id(request.headers());
    let target = request.uri().path_and_query().cloned();
    let started = Instant::now();
    let method = request.method().clone();
    async move {
        let snapshot = state.snapshot();
        let mut ctx = RequestCtx {
            state,
            snapshot: &snapshot,
            connection,
            correlation_id,
            target,
            started,
            cors: Default::default(),
            websocket: false,
            route: None,
            route_index: None,
            destination: None,
            lookup: None,
            found: None,
            extra_headers: Vec::new(),
            rewritten: None,
            idp_hint: None,
            tenant: None,
            user: None,
            caller: None,
            set_cookie: None,
            csrf_token: None,
            upstream: None,
        };
        let (answer, upstream) = phases(request, &mut ctx).await;
        ctx.upstream = upstream;
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
                    tracing::error!(correlation_id, route = ctx.route_index, status = status.as_u16(), error = %crate::idp::xsuaa::error_chain(&error), "request failed");
                } else {
                    tracing::info!(correlation_id, route = ctx.route_index, status = status.as_u16(), error = %error, "request refused");
                }
                // A boxed rare path (ARCHITECTURE.md, "Hot-path idioms").
                let mut response = Box::pin(error::respond(&error, &snapshot.config, ctx.path())).await;
                if snapshot.config.server.return_error_source {
                    response
                        .headers_mut()
                        .insert("x-error-source", HeaderValue::from_static("gateway"));
                }
                response
            }
        };
        finish::finish(&mut response, &ctx);
        let elapsed = ctx.started.elapsed();
        state
            .metrics
            .request(ctx.route_index, response.status(), elapsed, ctx.upstream);
        if snapshot.config.server.access_log {
            logging::access(&logging::AccessRecord {
                method: &method,
                path: ctx.path(),
                status: response.status().as_u16(),
                route: ctx.route_index,
                correlation_id: &ctx.correlation_id,
                duration_us: elapsed.as_micros() as u64,
                upstream_us: ctx.upstream.map(|upstream| upstream.as_micros() as u64),
            });
        }
        response
    }
}

/// What the phases that do not wait decided ([`decide`]).
// The forwarding variant is the large one on purpose: it is the common case, and boxing it would
// put an allocation on every public request.
#[expect(clippy::large_enum_variant, reason = "the common case, kept unboxed")]
enum Step<'c> {
    /// Answered here: a preflight, a redirect, a refusal.
    Respond(Response<Body>),
    /// A public route's request, ready for its destination: nothing waited for before it, and
    /// nothing boxed (this is the path most requests take). The call itself is made where its
    /// future is kept, so that the future is not moved through the layers in between.
    Forward {
        parts: Parts,
        body: Body,
        request: ForwardRequest<'c, 'c>,
    },
    /// The phases that wait, boxed as a rare path (ARCHITECTURE.md, "Hot-path idioms"): public requests do not carry
    /// their state.
    Wait(std::pin::Pin<Box<dyn std::future::Future<Output = (Answer, Upstream)> + Send + 'c>>),
}

impl From<Response<Body>> for Step<'_> {
    fn from(response: Response<Body>) -> Self {
        Step::Respond(response)
    }
}

/// How long the destination took to answer, when one was called.
type Upstream = Option<Duration>;

/// The answer to a request and how long its destination took: one future, of the size of the
/// destination's call for a public route, which the request's own future holds in one place.
fn phases<'s, 'c, B>(
    request: Request<B>,
    ctx: &'c mut RequestCtx<'s>,
) -> impl std::future::Future<Output = (Answer, Upstream)> + Send + 'c
where
    's: 'c,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use futures_util::future::{ready, Either, FutureExt};
    let snapshot = ctx.snapshot;
    match decide(request, ctx) {
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

/// The phases that do not wait, in order: check → normalize → (subscription callbacks) → cors → admit_websocket → framing →
/// tenant → secure_only → (login callback | logout) → welcome → route, and for a public destination route
/// upstream_identity and the request for the destination. Synchronous: the future a request waits
/// on is the destination's alone unless a phase must wait ([`Step::Wait`]).
fn decide<'s, 'c, B>(request: Request<B>, ctx: &'c mut RequestCtx<'s>) -> Result<Step<'c>, GatewayError>
where
    's: 'c,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    run!(checks::check(&mut parts, ctx));
    run!(checks::normalize(&mut parts, ctx));
    // The SaaS registry's callbacks come before CORS, login and routing, as in the reference.
    if subscription::is_callback(&parts, ctx) {
        return Ok(Step::Wait(Box::pin(async move {
            (subscription::answer(parts, body, ctx).await, None)
        })));
    }
    // CORS, websocket admission and the framing allowlist run before routing, as in the reference.
    run!(admission::cors(&mut parts, ctx));
    run!(admission::admit_websocket(&mut parts, ctx));
    run!(admission::framing(&mut parts, ctx));
    run!(admission::tenant(&mut parts, ctx));
    run!(admission::secure_only(&mut parts, ctx));
    if let Some(endpoint) = login::endpoint(&parts, ctx) {
        return Ok(Step::Wait(Box::pin(async move {
            (login::answer_endpoint(endpoint, &parts, ctx).await, None)
        })));
    }
    run!(admission::welcome(&mut parts, ctx));
    run!(route::route(&mut parts, ctx));
    if !ctx.public_destination() {
        return Ok(Step::Wait(Box::pin(async move {
            let answer = wait(parts, body, ctx).await;
            (answer, ctx.upstream)
        })));
    }
    run!(upstream::upstream_identity(&mut parts, ctx));
    let ctx: &'c RequestCtx<'s> = ctx;
    let (body, request) = upstream::request(&parts, body, ctx)?;
    Ok(Step::Forward { parts, body, request })
}

/// The phases that wait, in order: authenticate → scope → csrf → dispatch (static files | user
/// API | find_destination, upstream_identity and forward | websocket) → keep_backend_cookies →
/// session_headers.
async fn wait<B>(mut parts: Parts, body: B, ctx: &mut RequestCtx<'_>) -> Answer
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    run!(login::authenticate(&mut parts, ctx).await);
    run!(login::scope(&mut parts, ctx));
    run!(login::csrf(&mut parts, ctx).await);
    let kind = ctx.route.map(|route| &route.kind);
    let mut response = match kind {
        Some(RouteKind::LocalDir(_)) => serve::static_files(&parts, ctx).await?,
        Some(RouteKind::Service { .. }) => serve::user_api(&parts, ctx).await?,
        Some(RouteKind::Destination(_)) | None => {
            run!(upstream::find_destination(&mut parts, ctx).await);
            run!(upstream::upstream_identity(&mut parts, ctx));
            if ctx.websocket {
                upstream::websocket(parts, body, ctx).await?
            } else {
                upstream::forward(parts, body, ctx).await?
            }
        }
    };
    upstream::keep_backend_cookies(&mut response, ctx).await?;
    login::session_headers(&mut response, ctx);
    Ok(response)
}

impl RequestCtx<'_> {
    /// A public destination route's plain request: it leaves for its destination without waiting.
    fn public_destination(&self) -> bool {
        matches!(
            (self.route, self.destination),
            (Some(route), Some(destination)) if matches!(route.kind, RouteKind::Destination(_))
                && !route.is_protected()
                && !destination.on_premise
        ) && !self.websocket
            && self.lookup.is_none()
    }
}

#[cfg(test)]
mod tests;
