//! What every request carries in and out: the correlation id, and the headers every response
//! gets (`finish`).

use http::header::{self, HeaderName, HeaderValue};
use http::Response;

use super::RequestCtx;
use crate::body::Body;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers every response carries: the configured ones (a backend's own value wins, but with
/// `MERGE_CSP_HEADERS` a backend's `Content-Security-Policy` is enforced beside the configured
/// one), the ids, and the CORS headers of a cross-origin request.
pub(super) fn finish(response: &mut Response<Body>, ctx: &RequestCtx<'_>) {
    let config = &ctx.snapshot.config;
    let headers = response.headers_mut();
    // A policy the response has now is the router's own page's or a backend's (looked at only
    // when there is a frame-ancestors policy to add).
    let own_csp = ctx.state.frame_ancestors.is_some()
        && (ctx.upstream.is_none() || !headers.contains_key(header::CONTENT_SECURITY_POLICY));
    // One lookup each: what the response already has is kept.
    for (name, value) in &config.response_headers {
        match headers.entry(name) {
            header::Entry::Vacant(slot) => {
                slot.insert(value.clone());
            }
            // Only a backend's policy: the router's own pages (the login page) set theirs to fit.
            header::Entry::Occupied(mut slot)
                if config.server.merge_csp_headers
                    && ctx.upstream.is_some()
                    && slot.key() == header::CONTENT_SECURITY_POLICY =>
            {
                if let Some(merged) = crate::csp::merge(slot.iter().chain([value])) {
                    slot.insert(merged);
                }
            }
            header::Entry::Occupied(_) => {}
        }
    }
    // Beside a configured policy it is enforced too; a backend's own policy wins unless
    // `MERGE_CSP_HEADERS`, as for the configured ones.
    if let Some(csp) = ctx
        .state
        .frame_ancestors
        .as_ref()
        .and_then(|frames| frames.header(ctx.tenant.as_deref()))
    {
        match headers.entry(header::CONTENT_SECURITY_POLICY) {
            header::Entry::Vacant(slot) => {
                slot.insert(csp);
            }
            header::Entry::Occupied(mut slot)
                if own_csp || (config.server.merge_csp_headers && ctx.upstream.is_some()) =>
            {
                if let Some(merged) = crate::csp::merge(slot.iter().chain([&csp])) {
                    slot.insert(merged);
                }
            }
            header::Entry::Occupied(_) => {}
        }
    }
    headers
        .entry(X_REQUEST_ID)
        .or_insert_with(|| ctx.correlation_id.clone());
    ctx.cors.apply(headers);
}

/// The correlation id: taken from the request (`x-correlationid`, `x-correlation-id`, `x-request-id`,
/// `x-vcap-request-id`) when it is a sane token, else a new random UUID.
pub(super) fn correlation_id(headers: &http::HeaderMap) -> HeaderValue {
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
