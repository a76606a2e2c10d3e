//! The phases of login and authorization: the login callback and logout endpoints,
//! `authenticate` (session or login redirect), `scope`, `csrf`, and the session's headers on the
//! response.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::Response;

use super::{Answer, Flow, Phase, RequestCtx};
use crate::auth::{self, Outcome};
use crate::body::Body;
use crate::error::GatewayError;

/// An endpoint of the login machinery, answered before welcome and routing.
pub(super) enum Endpoint {
    /// The login callback (`/login/callback`).
    Callback,
    /// `logout.logoutEndpoint`.
    Logout,
}

/// Which endpoint of the login machinery the request is for, if any.
pub(super) fn endpoint(parts: &Parts, ctx: &RequestCtx<'_>) -> Option<Endpoint> {
    let auth = ctx.state.auth.as_ref()?;
    if auth.is_callback(parts) {
        return Some(Endpoint::Callback);
    }
    let logout = ctx.snapshot.config.logout.as_ref()?.endpoint.as_deref()?;
    (parts.uri.path() == logout).then_some(Endpoint::Logout)
}

/// The login callback (state, binding cookie, code exchange, new session) or the logout (session
/// ended, backend logout calls, redirect to the identity provider).
pub(super) async fn answer_endpoint(endpoint: Endpoint, parts: &Parts, ctx: &RequestCtx<'_>) -> Answer {
    let auth = ctx.state.auth.as_ref().ok_or(auth::Error::NotConfigured)?;
    let origin = ctx.origin();
    let answer = match endpoint {
        Endpoint::Callback => auth.callback(parts, &origin).await,
        Endpoint::Logout => {
            let snapshot = ctx.snapshot;
            auth.logout(parts, &origin, &snapshot.config, &snapshot.upstream).await
        }
    };
    answer.map_err(GatewayError::from)
}

/// A protected route's user: the session the cookie names (refreshed when due), else the login
/// redirect for a navigation or 401 for an API call.
pub(super) async fn authenticate(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let state = ctx.state;
    let Some(route) = ctx.route.filter(|route| route.is_protected()) else {
        return Ok(Flow::Next);
    };
    // Fail closed: a protected route without login machinery never forwards.
    let auth = state.auth.as_ref().ok_or(auth::Error::NotConfigured)?;
    let dynamic = route.dynamic_identity_provider || auth.settings.dynamic_identity_provider;
    let hint = ctx.idp_hint.as_deref().filter(|_| dynamic);
    // Not boxed: `authenticate` boxes its own rare paths (a store across the network, the
    // refresh, the login), so what remains is small, and this future is boxed already.
    match auth.authenticate(parts, route, &ctx.origin(), hint).await? {
        Outcome::User {
            id,
            session,
            set_cookie,
        } => {
            ctx.user = Some((id, session));
            ctx.set_cookie = set_cookie;
            Ok(Flow::Next)
        }
        Outcome::Caller(session) => {
            ctx.caller = Some(session);
            Ok(Flow::Next)
        }
        Outcome::Respond(response) => Ok(Flow::Answer(response)),
    }
}

/// The route's scopes: the user needs any one of those listed for the method.
pub(super) fn scope(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let (Some(route), Some(session)) = (ctx.route, ctx.session()) else {
        return Ok(Flow::Next);
    };
    if let Some(scope) = &route.scope {
        let required = scope.required(&parts.method);
        if !required.iter().any(|needed| session.user.scopes.contains(needed)) {
            return Err(auth::Error::MissingScope.into());
        }
    }
    Ok(Flow::Next)
}

/// `csrfProtection`: a state-changing request needs the session's token; a token fetch gets it.
pub(super) async fn csrf(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let state = ctx.state;
    let (Some(route), Some(auth), Some((id, session))) = (ctx.route, &state.auth, &ctx.user) else {
        return Ok(Flow::Next);
    };
    if !route.csrf_protection {
        return Ok(Flow::Next);
    }
    // A read passes without the store; only a token fetch may need it.
    let token = match auth.csrf_decision(parts, session, &ctx.origin())? {
        crate::auth::csrf::Decision::Pass => None,
        decision => Box::pin(auth.settle_csrf(id, session, decision)).await?,
    };
    parts.headers.remove(crate::auth::csrf::X_CSRF_TOKEN);
    ctx.csrf_token = token;
    Ok(Flow::Next)
}

/// The session's headers on the response: a new session cookie, a fetched CSRF token.
pub(super) fn session_headers(response: &mut Response<Body>, ctx: &mut RequestCtx<'_>) {
    if let Some(cookie) = ctx.set_cookie.take() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if let Some(token) = ctx.csrf_token.take().and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(crate::auth::csrf::X_CSRF_TOKEN, token);
    }
}
