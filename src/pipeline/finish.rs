//! What every request carries in and out: the correlation id, and the headers every response
//! gets (`finish`).

use http::header::{self, HeaderName, HeaderValue};
use http::Response;

use super::RequestCtx;
use crate::body::Body;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers every response carries: the configured ones (a backend's own value wins), the ids, and
/// the CORS headers of a cross-origin request.
pub(super) fn finish(response: &mut Response<Body>, ctx: &RequestCtx<'_>) {
    let headers = response.headers_mut();
    // One lookup each: what the response already has is kept.
    for (name, value) in &ctx.snapshot.config.response_headers {
        if let header::Entry::Vacant(slot) = headers.entry(name) {
            slot.insert(value.clone());
        }
    }
    // Kept apart from the configured headers: a backend's own policy wins, as theirs do.
    if let Some(frames) = &ctx.state.frame_ancestors {
        if let Some(csp) = frames.header(ctx.tenant.as_deref()) {
            if let header::Entry::Vacant(slot) = headers.entry(header::CONTENT_SECURITY_POLICY) {
                slot.insert(csp);
            }
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
