//! Response compression with the reference's rules: a size threshold, compressible content types
//! only, `multipart/mixed` on request, and `Cache-Control: no-transform` respected.

use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use tower::{Layer, ServiceExt};
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::body::{self, Body};
use crate::config::CompressionConfig;

/// The request's `Accept-Encoding` values, kept for its response (none: nothing allocated).
pub fn accepted(request: &http::HeaderMap) -> Vec<HeaderValue> {
    if !request.contains_key(header::ACCEPT_ENCODING) {
        return Vec::new();
    }
    request.get_all(header::ACCEPT_ENCODING).iter().cloned().collect()
}

/// Compresses `response` as [`layer`] would for a request that accepted `accept`. Responses the
/// rules leave alone come back untouched, without passing through the compression body (a large
/// value moved on every response).
pub fn apply(response: Response<Body>, accept: Vec<HeaderValue>, config: CompressionConfig) -> Response<Body> {
    let headers = response.headers();
    let compress = !headers.contains_key(header::CONTENT_ENCODING)
        && !headers.contains_key(header::CONTENT_RANGE)
        && (Rules { config }).should_compress(&response);
    if !compress {
        return response;
    }
    // tower-http picks the encoding and wraps the body; its inner service hands over `response`.
    let mut slot = Some(response);
    let service = layer(config).layer(tower::service_fn(move |_: Request<()>| {
        let response = slot.take().unwrap_or_else(|| Response::new(body::empty()));
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    }));
    let mut request = Request::new(());
    for value in accept {
        request.headers_mut().append(header::ACCEPT_ENCODING, value);
    }
    match service.oneshot(request).now_or_never() {
        Some(Ok(response)) => response.map(body::boxed),
        // The inner service answers at once; this is not reached.
        None => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// The compression layer for `config` (gzip and brotli, as the client accepts).
pub fn layer(config: CompressionConfig) -> CompressionLayer<Rules> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        // Brotli's default level is far too slow for responses generated on the fly.
        .quality(CompressionLevel::Precise(4))
        .compress_when(Rules { config })
}

/// When to compress.
#[derive(Clone, Copy)]
pub struct Rules {
    config: CompressionConfig,
}

impl Predicate for Rules {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: http_body::Body,
    {
        if !self.config.enabled {
            return false;
        }
        let headers = response.headers();
        if headers.contains_key(header::CONTENT_ENCODING) {
            return false;
        }
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-transform"));
        if no_transform {
            return false;
        }
        let size = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| response.body().size_hint().exact());
        if let Some(size) = size {
            if size < self.config.min_size {
                return false;
            }
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        compressible(&content_type, self.config.compress_mixed_content)
    }
}

fn compressible(content_type: &str, mixed: bool) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == "multipart/mixed" {
        return mixed;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/ecmascript"
                | "application/wasm"
                | "image/svg+xml"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
        )
}
