//! The one body type every response and forwarded request uses: boxed, streaming.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body with nothing in it.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A bodiless `302 Found` to `location` (already a valid header value, or `/` when it is not).
pub fn found(location: &str) -> http::Response<Body> {
    let mut response = http::Response::new(empty());
    *response.status_mut() = http::StatusCode::FOUND;
    let value = http::HeaderValue::from_str(location).unwrap_or(http::HeaderValue::from_static("/"));
    response.headers_mut().insert(http::header::LOCATION, value);
    response
}
