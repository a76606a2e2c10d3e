//! The routes the router answers itself: `localDir` folders and the user API service.

use http::request::Parts;

use super::{Answer, RequestCtx};
use crate::auth;
use crate::config::RouteKind;
use crate::routing;
use crate::static_files::{self, StaticRequest};

/// A `localDir` route: the file the rewritten URL names.
pub(super) async fn static_files(parts: &Parts, ctx: &RequestCtx<'_>) -> Answer {
    let route = ctx.route.ok_or(routing::Error::RouteNotFound)?;
    let RouteKind::LocalDir(dir) = &route.kind else {
        return Err(routing::Error::RouteNotFound.into());
    };
    let request = StaticRequest {
        method: &parts.method,
        headers: &parts.headers,
        dir,
        url: ctx.url(),
        original_path: ctx.path(),
        cache_control: route.cache_control.as_ref(),
        replace: route.replace.as_deref(),
    };
    // A boxed rare path (ARCHITECTURE.md, "Hot-path idioms"): other routes do not carry its state.
    Ok(Box::pin(static_files::serve(request)).await?)
}

/// The user API service (`sap-approuter-userapi`): the logged-in user's details.
pub(super) async fn user_api(_parts: &Parts, ctx: &RequestCtx<'_>) -> Answer {
    let (auth, session) = ctx
        .state
        .auth
        .as_ref()
        .zip(ctx.session())
        .ok_or(auth::Error::Unauthenticated)?;
    Ok(Box::pin(auth.user_api(ctx.url(), session)).await?)
}
