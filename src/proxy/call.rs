//! Requests the router makes on its own to a destination (the backend logout calls), through the
//! same pooled clients as forwarded traffic.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};

use super::{Error, Upstream};
use crate::body;
use crate::config::Destination;

/// Sends a bodiless request to `path` on `destination` and returns the status.
///
/// # Errors
/// [`Error::UpstreamConnect`], [`Error::UpstreamTimeout`], [`Error::InvalidUpstreamUri`].
pub async fn call(
    upstream: &Upstream,
    destination: &Destination,
    method: Method,
    path: &str,
    headers: HeaderMap,
) -> Result<StatusCode, Error> {
    let full = format!("{}/{}", destination.base_path, path.trim_start_matches('/'));
    let uri = http::Uri::builder()
        .scheme(destination.scheme.clone())
        .authority(destination.authority.clone())
        .path_and_query(full.as_str())
        .build()
        .map_err(|error| Error::InvalidUpstreamUri(format!("{full}: {error}")))?;
    let mut request = Request::new(body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
        .headers_mut()
        .insert(header::HOST, destination.host_header.clone());
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(upstream
        .send(destination, request, Default::default(), tokio::time::Instant::now())
        .await?
        .status())
}
