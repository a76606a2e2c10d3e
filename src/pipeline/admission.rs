//! The phases that answer or admit a request before routing, as the reference does: CORS, the
//! websocket admission, the framing allowlist service, and the `welcomeFile` redirect.

use http::request::Parts;

use super::{Flow, Phase, RequestCtx};
use crate::body;
use crate::error::GatewayError;

/// CORS: a preflight is answered here; an actual cross-origin request goes on with the headers
/// its response will carry.
pub(super) fn cors(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    match crate::cors::check(&ctx.snapshot.config, parts, ctx.connection.scheme)? {
        crate::cors::Decision::Respond(response) => Ok(Flow::Answer(response)),
        crate::cors::Decision::Continue(headers) => {
            ctx.cors = headers;
            Ok(Flow::Next)
        }
    }
}

/// Websocket admission: an upgrade is refused unless websockets are on and its origin is allowed.
pub(super) fn admit_websocket(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    ctx.websocket = crate::proxy::websocket::admit(&ctx.snapshot.config, parts, ctx.connection.scheme)?;
    Ok(Flow::Next)
}

/// The framing allowlist service (`whitelistService`) answers at its endpoint.
pub(super) fn framing(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    Ok(match crate::clickjacking::respond(&ctx.snapshot.config, parts) {
        Some(response) => Flow::Answer(response),
        None => Flow::Next,
    })
}

/// Multitenancy: the tenant is group 1 of `TENANT_HOST_PATTERN` on the host (the forwarded host
/// only behind trusted proxies). A host that names no tenant is refused here, before any login:
/// the Node.js router sent it to the bare `uaadomain`, where the login fails.
pub(super) fn tenant(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let config = &ctx.snapshot.config;
    let Some(tenancy) = &config.tenancy else {
        return Ok(Flow::Next);
    };
    let host = super::request_host(parts, config).unwrap_or("");
    match tenancy.tenant_of_host(host) {
        Some(tenant) => {
            ctx.tenant = Some(tenant);
            Ok(Flow::Next)
        }
        None => Err(GatewayError::UnknownTenantHost(host.chars().take(255).collect())),
    }
}

/// `SECURE_SESSION_COOKIE=true`: a request that did not come over HTTPS is refused with 403, as
/// in the Node.js router, so that no session cookie is ever set or sent in the clear. HTTPS is
/// the connection's, or `X-Forwarded-Proto: https` from a trusted proxy (`CLIENT_IP_FORWARDED_HOPS`).
pub(super) fn secure_only(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let config = &ctx.snapshot.config;
    if config.auth.secure_cookie != Some(true) || ctx.connection.scheme == "https" {
        return Ok(Flow::Next);
    }
    let forwarded_https = config.server.forwarded_hops > 0
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    match forwarded_https {
        true => Ok(Flow::Next),
        false => Err(GatewayError::InsecureRequest),
    }
}

/// `welcomeFile`: a request for exactly `/` is redirected there.
pub(super) fn welcome(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    Ok(match &ctx.snapshot.config.welcome_file {
        Some(file) if parts.uri.path() == "/" => Flow::Answer(body::found(file)),
        _ => Flow::Next,
    })
}
