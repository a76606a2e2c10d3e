//! Response compression with the reference's rules: a size threshold, compressible content types
//! only, `multipart/mixed` on request, and `Cache-Control: no-transform` respected.

use http::header;
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::config::CompressionConfig;

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
