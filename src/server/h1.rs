//! The HTTP/1.1 fast lane: a connection's requests are read and answered here while each is a
//! complete, well-formed HTTP/1.1 request head without a body (the bulk of API and asset
//! traffic). The first request that is anything else — a body, `Expect`, `Upgrade`, HTTP/1.0, an
//! HTTP/2 preface, a head hyper would refuse or one past the size limit — hands the connection,
//! with every byte read so far, to hyper, which serves it from then on. So hyper's behaviour at
//! the edges (error answers, bodies, upgrades, HTTP/2) stays exactly as it was, and the common
//! request skips hyper's dispatcher: one task, one read and one write per request.
//!
//! Two heads are the fast lane's although hyper would serve them: one with both `Content-Length`
//! and `Transfer-Encoding` (hyper drops the length; here the pipeline refuses it and the
//! connection closes), and an HTTP/2 preface after a request (400 and closed: a connection never
//! changes protocol; a later handover goes to an HTTP/1-only hyper connection).
//!
//! What a request sees is the same on both paths: the same [`http::Request`] goes through the same
//! service, and the answer is framed as hyper frames it (`content-length` when the body's length is
//! known, chunked otherwise, nothing for `HEAD`, 204 and 304, a `date` header, `connection: close`
//! when the client asked for it).

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as HttpBody;
use http_body_util::Empty;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::body::Body;
use crate::http1::common::encode_response_head;
use crate::http1::{has_token, write_chunk_size, Framing, Span, LAST_CHUNK, MAX_HEADERS};

/// The read buffer's first size; it grows up to the header limit.
const READ_BUFFER: usize = 8 * 1024;
/// Body bytes gathered before a write; bigger frames are written as they come.
const WRITE_BATCH: usize = 16 * 1024;

/// Why [`serve`] returned.
pub(super) enum Next {
    /// The connection is done (closed by either side, timed out, or stopped).
    Close,
    /// A request the fast lane does not take: hyper serves the connection from here, starting
    /// with the bytes in the buffer.
    Handover {
        prefix: Bytes,
        /// No request has been answered on the connection yet: it may still turn out to be
        /// HTTP/2 by prior knowledge. After a request, it stays HTTP/1.
        fresh: bool,
    },
}

/// The first bytes of the HTTP/2 connection preface (RFC 9113 3.4), as far as they tell it from
/// an HTTP/1 request line.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2";

/// The connection's settings for the fast lane.
pub(super) struct Limits {
    /// How long a request head may take to arrive, counted from the end of the previous answer
    /// (so it also bounds an idle keep-alive connection), as hyper's `header_read_timeout`.
    pub header_read_timeout: Duration,
    /// Past this many buffered bytes without a complete head, hyper takes over (and answers 431).
    pub max_head: usize,
}

/// Serves requests on `io` until the connection ends or a request needs hyper. `stop` turns true
/// when the server shuts down: an idle connection closes at once, one with a request in flight
/// after its answer.
pub(super) async fn serve<I, S, F>(
    io: &mut I,
    respond: &mut S,
    limits: &Limits,
    stop: &mut watch::Receiver<bool>,
) -> Next
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: FnMut(Request<Empty<Bytes>>) -> F,
    F: std::future::Future<Output = Response<Body>>,
{
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut out = Vec::with_capacity(READ_BUFFER);
    // One timer for the connection, moved on for each head: a later deadline costs no lock.
    let timer = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(timer);
    // One registration for the connection's life, not one per request.
    let mut watcher = stop.clone();
    let stopped = async move {
        let _ = watcher.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    let mut fresh = true;
    loop {
        let head = match read_head(io, &mut buf, limits, timer.as_mut(), stopped.as_mut()).await {
            Read::Head(head) => head,
            Read::Close => return Next::Close,
            // A connection never changes its protocol after a request: an HTTP/2 preface now is
            // refused (400, as hyper answers a head it cannot parse), not served as HTTP/2.
            Read::Handover if !fresh && buf.starts_with(H2_PREFACE_START) => {
                tracing::debug!("HTTP/2 preface after an HTTP/1.1 request; closing");
                let mut refused = Response::new(crate::body::empty());
                *refused.status_mut() = StatusCode::BAD_REQUEST;
                let _ = write_response(io, &mut out, refused, false, true).await;
                let _ = io.shutdown().await;
                return Next::Close;
            }
            Read::Handover => {
                return Next::Handover {
                    prefix: buf.freeze(),
                    fresh,
                }
            }
        };
        fresh = false;
        let Head {
            request,
            close: client_close,
        } = head;
        let is_head = request.method() == Method::HEAD;
        let call = respond(request);
        tokio::pin!(call);
        // While the answer is prepared the connection is watched, as hyper does: a client that goes
        // away cancels its request, and an inactivity timeout on the stream can fire. (After the
        // head's read drained the socket, tokio knows it is not readable: no extra read happens.)
        let response = loop {
            tokio::select! {
                biased;
                response = &mut call => break response,
                read = io.read_buf(&mut buf), if buf.len() < limits.max_head => match read {
                    // Pipelined bytes wait in the buffer for their turn.
                    Ok(read) if read > 0 => {}
                    _ => return Next::Close,
                },
            }
        };
        // Shutting down: this answer is the connection's last, and says so.
        let close = client_close || *stop.borrow();
        match write_response(io, &mut out, response, is_head, close).await {
            Ok(true) if !close => {}
            _ => {
                let _ = io.shutdown().await;
                return Next::Close;
            }
        }
    }
}

struct Head {
    request: Request<Empty<Bytes>>,
    /// The client sent `Connection: close`.
    close: bool,
}

#[expect(
    clippy::large_enum_variant,
    reason = "the head travels by value once per request; a box would allocate each time"
)]
enum Read {
    Head(Head),
    Close,
    Handover,
}

/// Reads until `buf` holds a complete request head and takes it off the buffer within the header
/// timeout; `timer` is armed at or before that deadline (an earlier head's), `stopped` completes
/// when the server stops.
async fn read_head<I, F>(
    io: &mut I,
    buf: &mut BytesMut,
    limits: &Limits,
    mut timer: Pin<&mut tokio::time::Sleep>,
    mut stopped: Pin<&mut F>,
) -> Read
where
    I: AsyncRead + Unpin,
    F: std::future::Future<Output = ()>,
{
    // The timer is moved only when it fires early: a deadline later than the armed one needs no
    // trip to the timer wheel (and its lock) for every request.
    let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
    loop {
        if !buf.is_empty() {
            match parse(buf, limits.max_head) {
                Parsed::Head(head) => return Read::Head(head),
                Parsed::Other => return Read::Handover,
                Parsed::Partial if buf.len() >= limits.max_head => return Read::Handover,
                Parsed::Partial => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_BUFFER);
        }
        let idle = buf.is_empty();
        let read = tokio::select! {
            biased;
            read = io.read_buf(buf) => read,
            () = timer.as_mut() => {
                if tokio::time::Instant::now() < deadline {
                    timer.as_mut().reset(deadline);
                    continue;
                }
                tracing::debug!("no request head in time; closing");
                return Read::Close;
            },
            // Between requests a stopping server closes the connection; a head being read is
            // waited for (and answered with `connection: close`).
            // Once it has completed the connection closes, so it is never polled again.
            () = stopped.as_mut(), if idle => return Read::Close,
        };
        match read {
            Ok(0) | Err(_) => return Read::Close,
            Ok(_) => {}
        }
    }
}

#[expect(clippy::large_enum_variant, reason = "as `Read`: the head is the common case")]
enum Parsed {
    Head(Head),
    Partial,
    /// Not for the fast lane: hyper decides.
    Other,
}

/// Parses the head at the start of `buf`. Only a request the fast lane can answer exactly as
/// hyper would is taken off the buffer; anything else is left for hyper, including a head longer
/// than `max_head` (hyper answers it 431).
fn parse(buf: &mut BytesMut, max_head: usize) -> Parsed {
    let mut fields = crate::http1::common::fields();
    let mut parsed = httparse::Request::new(&mut []);
    let head_length = match parsed.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(length)) if length <= max_head => length,
        Ok(httparse::Status::Complete(_)) => return Parsed::Other,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    if parsed.version != Some(1) {
        return Parsed::Other;
    }
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return Parsed::Other;
    };
    if !path.starts_with('/') {
        return Parsed::Other;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    if method == Method::CONNECT {
        return Parsed::Other;
    }
    // Offsets into the buffer: names and values share its bytes once it is frozen.
    let base = buf.as_ptr() as usize;
    let offset = |slice: &[u8]| slice.as_ptr() as usize - base;
    let path_range = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    let mut close = false;
    // A head hyper would serve: noted, not returned at once, because a head with both
    // `Content-Length` and `Transfer-Encoding` is refused here (hyper drops the length and
    // serves the request, so the pipeline's check would never see the conflict).
    let mut other = false;
    let (mut length, mut coded) = (false, false);
    // Name and value of each field as offsets, on the stack (no allocation per request).
    let mut spans = [Span::default(); MAX_HEADERS];
    let count = parsed.headers.len();
    for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            length = true;
            // `Content-Length: 0` is a bodiless request; any other length has a body.
            other |= field.value != b"0";
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            coded = true;
        } else if name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"upgrade") {
            other = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            other |= has_token(field.value, b"upgrade");
            close |= has_token(field.value, b"close");
        }
        // Offsets fit: a head past `max_head` (far below 4 GiB) was left to hyper above.
        *span = Span::of(base, field);
    }
    let conflict = length && coded;
    if conflict {
        // Answered here (the pipeline refuses it) and the connection closed: where the body
        // ends is unknowable, so nothing after this head can be read as a request.
        close = true;
    } else if other || coded {
        return Parsed::Other;
    }
    let head = buf.split_to(head_length).freeze();
    match request(&head, method, path_range, &spans[..count]) {
        Some(request) => Parsed::Head(Head { request, close }),
        None => {
            // Put the head back for hyper, which answers it (400).
            let mut restored = BytesMut::with_capacity(head.len() + buf.len());
            restored.extend_from_slice(&head);
            restored.extend_from_slice(buf);
            *buf = restored;
            Parsed::Other
        }
    }
}

/// The request of a parsed head; `None` when the target or a field is not valid for `http`.
fn request(
    head: &Bytes,
    method: Method,
    path: std::ops::Range<usize>,
    spans: &[Span],
) -> Option<Request<Empty<Bytes>>> {
    let uri = Uri::from_maybe_shared(head.slice(path)).ok()?;
    // Room for the headers a proxied request gains (`X-Forwarded-*`, trace and correlation ids):
    // growing the map would rehash it.
    let mut headers = crate::util::spare_headers::take(spans.len() + 8);
    for span in spans {
        let (name, value) = span.field(head).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(Empty::new());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// Writes `response`; returns whether the connection can carry another request (the body was
/// written whole and framed).
async fn write_response<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    response: Response<Body>,
    is_head: bool,
    close: bool,
) -> std::io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let (mut parts, mut body) = response.into_parts();
    out.clear();
    let status = parts.status;
    if status.is_informational() {
        // As hyper: a 1xx cannot be the answer.
        tracing::warn!(status = status.as_u16(), "response with 1xx status code not supported");
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        parts.headers.clear();
        body = crate::body::empty();
    }
    let (framing, close_listed) = encode_head(out, &parts, &body, is_head, close);
    // Written: the map serves a later message on this thread.
    crate::util::spare_headers::give(std::mem::take(&mut parts.headers));
    let mut close = close || close_listed;
    match framing {
        Framing::Empty | Framing::Close => {
            drop(body);
            io.write_all(out).await?;
        }
        Framing::Length(length) => {
            let complete = write_body(io, out, &mut body, Some(length)).await?;
            close |= !complete;
        }
        Framing::Chunked => {
            let complete = write_body(io, out, &mut body, None).await?;
            close |= !complete;
        }
    }
    io.flush().await?;
    Ok(!close)
}

/// The status line and the headers as [`encode_response_head`] frames them for `body`, with this
/// thread's `date` of the current second.
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &Body,
    is_head: bool,
    close: bool,
) -> (Framing, bool) {
    let known = if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    };
    encode_response_head(out, parts, known, is_head, close, |out| {
        with_date(|date| out.extend_from_slice(date))
    })
}

/// Streams `body` after the head in `out`: exactly `length` bytes, or chunked. Returns whether the
/// body ended where its framing says (a shorter, longer or failed body ends the connection).
async fn write_body<I>(io: &mut I, out: &mut Vec<u8>, body: &mut Body, length: Option<u64>) -> std::io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let mut remaining = length;
    loop {
        // Frames that are ready join the buffer; the buffer is written when the body has to wait.
        let frame = poll_fn(|cx: &mut Context<'_>| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Some(frame)),
            Poll::Pending if !out.is_empty() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        let frame = match frame {
            None => {
                io.write_all(out).await?;
                out.clear();
                io.flush().await?;
                continue;
            }
            Some(frame) => frame,
        };
        match frame {
            Some(Ok(frame)) => {
                let Ok(mut data) = frame.into_data() else {
                    // Trailers: dropped, as hyper does for fields not announced in `Trailer`.
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                match &mut remaining {
                    Some(left) => {
                        if data.len() as u64 > *left {
                            tracing::warn!("response body longer than its content-length; closing");
                            data.truncate(*left as usize);
                            put(io, out, &data).await?;
                            io.write_all(out).await?;
                            out.clear();
                            return Ok(false);
                        }
                        *left -= data.len() as u64;
                        put(io, out, &data).await?;
                    }
                    None => {
                        write_chunk_size(out, data.len());
                        put(io, out, &data).await?;
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            Some(Err(error)) => {
                tracing::debug!(error = %error, "response body failed; closing the connection");
                io.write_all(out).await?;
                out.clear();
                return Ok(false);
            }
            None => {
                let complete = match remaining {
                    Some(left) => left == 0,
                    None => {
                        out.extend_from_slice(LAST_CHUNK);
                        true
                    }
                };
                io.write_all(out).await?;
                out.clear();
                return Ok(complete);
            }
        }
    }
}

/// Adds `data` to the pending bytes, or writes both when `data` is big (no copy of large frames).
async fn put<I>(io: &mut I, out: &mut Vec<u8>, data: &Bytes) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    if out.len() + data.len() <= WRITE_BATCH {
        out.extend_from_slice(data);
        return Ok(());
    }
    io.write_all(out).await?;
    out.clear();
    io.write_all(data).await
}

thread_local! {
    /// The `date` value of the current second, formatted once per second and thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn with_date(use_date: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            } else {
                drop(cached);
                use_date(text.as_bytes());
                return;
            }
        }
        use_date(&cached.1);
    });
}

/// `io` with bytes already read from it in front: what hyper reads after a handover.
pub(super) struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    pub(super) fn new(prefix: Bytes, inner: I) -> Prefixed<I> {
        Prefixed { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
