//! The `route` phase: the first route of `xs-app.json` that takes the request, its destination and
//! the URL after its `target` rewrite.

use std::borrow::Cow;

use http::request::Parts;

use super::{Flow, Phase, RequestCtx};
use crate::routing::{self, Lookup};

/// Matches the URL with its query, as the reference does, after `sap_idp` is removed; a route
/// whose source matches the path alone is taken too, at its place in the table.
pub(super) fn route(parts: &mut Parts, ctx: &mut RequestCtx<'_>) -> Phase {
    let snapshot = ctx.snapshot;
    let config = &snapshot.config;
    let url = ctx.target.as_ref().map_or("/", |pq| pq.as_str());
    // `?sap_idp=` picks the identity provider; it is not part of what routes match.
    let (url, idp_hint) = strip_sap_idp(url);
    let (route, destination, lookup, rewritten) = match url {
        Cow::Borrowed(url) => {
            let matched = routing::match_route(config, &parts.method, url)?;
            let rewritten = match matched.url {
                Cow::Owned(url) => Some(url),
                Cow::Borrowed(_) => None,
            };
            (matched.route, matched.destination, matched.lookup, rewritten)
        }
        // Without `sap_idp` the URL is a new string, which the context keeps when no rewrite
        // replaces it.
        Cow::Owned(url) => {
            let matched = routing::match_route(config, &parts.method, &url)?;
            let rewritten = match matched.url {
                Cow::Owned(rewritten) => Some(rewritten),
                Cow::Borrowed(_) => None,
            };
            let (route, destination, lookup) = (matched.route, matched.destination, matched.lookup);
            (route, destination, lookup, Some(rewritten.unwrap_or(url)))
        }
    };
    ctx.route = Some(route);
    ctx.route_index = Some(route.index);
    let (destination, lookup) = match lookup {
        Some(Lookup::Host) => by_host(parts, ctx)?,
        lookup => (destination, lookup),
    };
    ctx.destination = destination;
    ctx.lookup = lookup;
    ctx.rewritten = rewritten;
    ctx.idp_hint = idp_hint;
    Ok(Flow::Next)
}

/// `"destination": "*"`: group 1 of `DESTINATION_HOST_PATTERN` on the request's host (the
/// forwarded host only behind trusted proxies, the port kept, as in the reference) names the
/// destination. A host the pattern does not match has no route.
fn by_host<'s>(
    parts: &Parts,
    ctx: &RequestCtx<'s>,
) -> Result<(Option<&'s crate::config::Destination>, Option<Lookup>), routing::Error> {
    let config = &ctx.snapshot.config;
    let pattern = config
        .services
        .lookup
        .host_pattern
        .as_ref()
        .ok_or(routing::Error::RouteNotFound)?;
    let host = super::request_host(parts, config).ok_or(routing::Error::RouteNotFound)?;
    let name = pattern
        .captures(host)
        .and_then(|groups| groups.get(1))
        .map(|group| group.as_str())
        .ok_or(routing::Error::RouteNotFound)?;
    routing::dynamic_destination(config, name)
}

/// Removes `sap_idp` from the query and returns it.
fn strip_sap_idp(url: &str) -> (Cow<'_, str>, Option<String>) {
    let Some((path, query)) = url.split_once('?') else {
        return (Cow::Borrowed(url), None);
    };
    if !query.split('&').any(|pair| pair.starts_with("sap_idp=")) {
        return (Cow::Borrowed(url), None);
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
    (Cow::Owned(url), idp.filter(|v| !v.is_empty()))
}
