//! The request body limit (declared and streamed) and how its breach is reported.

use http::header::{self, HeaderMap};

use crate::body::{self, Body, BoxError};
use crate::error::GatewayError;

/// The request body with `MAX_REQUEST_BODY` applied: a declared `Content-Length` above the limit
/// is refused at once; a streamed body fails when it passes the limit (see [`is_body_too_large`]).
///
/// # Errors
/// [`GatewayError::PayloadTooLarge`] for a declared length above `max`.
pub fn request_body<B>(incoming: B, headers: &HeaderMap, max: Option<u64>) -> Result<Body, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(max) = max else {
        return Ok(body::boxed(incoming));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    Ok(body::boxed(http_body_util::Limited::new(incoming, max)))
}

/// True when `error`'s causes include the body limit tripping: the forward failed because the
/// client sent too much, not because the destination did something wrong.
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = cause.source();
    }
    false
}

/// A forward that failed because the request body passed the limit is the client's fault: 413,
/// not a destination failure.
pub fn reclassify(error: GatewayError) -> GatewayError {
    if is_body_too_large(&error) {
        GatewayError::PayloadTooLarge
    } else {
        error
    }
}
