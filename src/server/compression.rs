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
    // The rules look at `Content-Encoding` (and whether compression is on) first.
    let compress = (Rules { config }).should_compress(&response) && !headers.contains_key(header::CONTENT_RANGE);
    if !compress {
        return response;
    }
    if accept.is_empty() {
        // Nothing accepted but identity: the layer would only add its `Vary`.
        let mut response = response;
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
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
        // One pass over the response's dozen headers instead of a lookup for each of four; the
        // first `Content-Length` and `Content-Type` count, as a lookup would return them.
        let (mut encoded, mut no_transform, mut length, mut content_type) = (false, false, None, None);
        for (name, value) in response.headers() {
            if name == header::CONTENT_ENCODING {
                encoded = true;
            } else if name == header::CACHE_CONTROL {
                no_transform |= value
                    .as_bytes()
                    .windows(b"no-transform".len())
                    .any(|w| w.eq_ignore_ascii_case(b"no-transform"));
            } else if name == header::CONTENT_LENGTH {
                length = length.or(Some(value));
            } else if name == header::CONTENT_TYPE {
                content_type = content_type.or(Some(value));
            }
        }
        if encoded || no_transform {
            return false;
        }
        let size = length
            .and_then(|v| crate::http1::content_length(v.as_bytes()))
            .or_else(|| response.body().size_hint().exact());
        if let Some(size) = size {
            if size < self.config.min_size {
                return false;
            }
        }
        let content_type = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
        // Lower case is the common spelling: then nothing is allocated.
        let content_type = match content_type.bytes().any(|b| b.is_ascii_uppercase()) {
            true => std::borrow::Cow::Owned(content_type.to_ascii_lowercase()),
            false => std::borrow::Cow::Borrowed(content_type),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: &str, length: usize) -> Response<Body> {
        let mut response = Response::new(body::full(bytes::Bytes::from(vec![b'a'; length])));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        response
    }

    fn config() -> CompressionConfig {
        CompressionConfig {
            enabled: true,
            min_size: 1024,
            compress_mixed_content: false,
        }
    }

    #[test]
    fn without_accept_encoding_the_layers_headers_are_kept_and_the_body_is_untouched() {
        for (content_type, length, vary) in [
            ("text/plain", 4096, true),
            ("Text/HTML; charset=UTF-8", 4096, true),
            ("text/plain", 10, false),
            ("image/png", 4096, false),
        ] {
            // The shortcut, and the layer itself with an `Accept-Encoding` that allows identity only.
            let short = apply(response(content_type, length), Vec::new(), config());
            let layered = apply(
                response(content_type, length),
                vec![HeaderValue::from_static("identity")],
                config(),
            );
            assert_eq!(short.headers(), layered.headers(), "{content_type} {length}");
            assert_eq!(
                short.headers().contains_key(header::VARY),
                vary,
                "{content_type} {length}"
            );
            assert_eq!(
                http_body::Body::size_hint(short.body()).exact(),
                Some(length as u64),
                "{content_type}"
            );
        }
    }

    #[test]
    fn no_transform_is_found_in_any_case() {
        let mut no_transform = response("text/plain", 4096);
        no_transform
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, No-Transform"));
        let out = apply(no_transform, vec![HeaderValue::from_static("gzip")], config());
        assert!(!out.headers().contains_key(header::CONTENT_ENCODING));
        let out = apply(
            response("text/plain", 4096),
            vec![HeaderValue::from_static("gzip")],
            config(),
        );
        assert_eq!(out.headers()[header::CONTENT_ENCODING], "gzip");
    }
}
