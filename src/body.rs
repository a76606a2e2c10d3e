//! The one body type every response and forwarded request uses: boxed, streaming; and the
//! deadline a client's request body must keep.

use std::future::Future;

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

pin_project_lite::pin_project! {
    /// A request body that fails with [`RequestTimedOut`] when it has not ended by a deadline
    /// (`INCOMING_REQUEST_TIMEOUT`): the timer is polled only while the client has nothing ready.
    pub struct Deadline<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: tokio::time::Sleep,
    }
}

impl<B> Deadline<B> {
    /// `inner`, which must have ended by `deadline`.
    pub fn new(inner: B, deadline: tokio::time::Instant) -> Deadline<B> {
        Deadline {
            inner,
            timer: tokio::time::sleep_until(deadline),
        }
    }
}

/// The client did not send its whole request within `INCOMING_REQUEST_TIMEOUT`.
#[derive(Debug, thiserror::Error)]
#[error("the client did not send the whole request in time")]
pub struct RequestTimedOut;

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => match this.timer.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(RequestTimedOut)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
