//! The first phases: `check` refuses what a proxy must not pass on, `normalize` gives the request
//! the one path every later phase and the backend see.

use http::header;
use http::request::Parts;

use super::{Flow, Phase, RequestCtx};
use crate::error::GatewayError;
use crate::routing;

/// Refuses requests that are malformed in ways a proxy must not pass on.
pub(super) fn check(parts: &mut Parts, _ctx: &mut RequestCtx<'_>) -> Phase {
    // One pass over the fields (each value of a repeated name) instead of a lookup each.
    let (mut coded, mut lengths, mut hosts) = (false, 0, 0);
    for (name, _) in &parts.headers {
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
    let http1 = parts.version <= http::Version::HTTP_11;
    if http1 && hosts > 1 {
        return Err(GatewayError::BadRequest("several Host headers"));
    }
    if hosts == 0 && parts.version == http::Version::HTTP_11 {
        return Err(GatewayError::BadRequest("no Host header"));
    }
    if parts.uri.path_and_query().is_none() || !parts.uri.path().starts_with('/') {
        return Err(GatewayError::BadRequest("request target must be a path"));
    }
    Ok(Flow::Next)
}

/// Gives the request the one path that the route table, the scope check and the backend all see
/// ([`routing::normalize_path`]: slashes merged, unreserved characters decoded, encoded slashes and
/// nested encodings refused), then refuses traversals in it.
pub(super) fn normalize(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let config = &ctx.snapshot.config;
    let Some(target) = parts.uri.path_and_query() else {
        return Ok(Flow::Next);
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
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = Some(target.clone());
        parts.uri = http::Uri::from_parts(uri).map_err(invalid)?;
        ctx.target = Some(target);
    }
    if config.server.path_validation {
        routing::validate_path(parts.uri.path())?;
    }
    Ok(Flow::Next)
}
