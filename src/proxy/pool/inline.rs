//! The inline HTTP/1.1 client: a bodiless request to a plain `http` origin is written and its
//! response read by the request's own task, on a `TcpStream` from this thread's idle list: no
//! connection task and no channels between it and the request, whose hand-offs made up a good part
//! of a proxied request's CPU time (about 2 µs of ~12 µs). Everything else (request bodies, TLS,
//! HTTP/2, proxies, upgrades) stays with hyper.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{keep_idle, with_origin, Home, PoolError, IDLE_TIMEOUT};
use crate::body::{self, Body};
use crate::connect::CONNECT_TIMEOUT;
use crate::http1::common::{parse_response_head, write_field, write_request_line, ResponseHead as Head};
use crate::http1::{tokens, BodyReader, Framing};
use crate::proxy::headers::Added;

/// The first read of a response: the head and, mostly, the whole body.
const HEAD_BUFFER: usize = 8 * 1024;
/// The largest response head accepted (hyper's client allows ~400 KiB; nothing real comes near).
const MAX_HEAD: usize = 64 * 1024;
/// Body reads start at this size and double while they fill the buffer, up to `READ_MAX`.
const READ_MIN: usize = 16 * 1024;
const READ_MAX: usize = 64 * 1024;

/// An idle connection of the inline client.
pub(super) struct IdleStream {
    conn: Conn,
    since: Instant,
}

/// A connection of the inline client with its response-head timer and its read buffer, which stay
/// with it from request to request: moving a registered timer to a later deadline takes no lock,
/// where a new timer for each request would take the timer wheel's lock twice. (An idle
/// connection's timer may still fire at its last deadline and wake the task that last waited on it,
/// for nothing.) The buffer's allocation is taken back for the next response once the previous
/// response's head and body, which share it, have been dropped; a buffer still shared gets a new
/// allocation.
struct Conn {
    stream: TcpStream,
    timer: Pin<Box<Sleep>>,
    /// Empty between responses.
    buf: BytesMut,
    /// The last answer had no body (`HEAD`, 204, 304): the socket itself is asked for stray bytes
    /// before reuse ([`is_quiet`]).
    bodiless: bool,
}

/// Whether the inline client takes `request`: plain `http`, no body, no upgrade, no framing or
/// connection headers of the caller's own (the forwarder removes them; a request with them keeps
/// hyper's handling).
pub(super) fn applies(request: &Request<Body>) -> bool {
    let body = request.body();
    let headers = request.headers();
    request.uri().scheme() == Some(&Scheme::HTTP)
        && (body.is_end_stream() || body.size_hint().exact() == Some(0))
        && request.method() != Method::CONNECT
        // A pass over the dozen names present instead of three lookups.
        && !headers
            .keys()
            .any(|name| name == header::UPGRADE || name == header::TRANSFER_ENCODING || name == header::CONNECTION)
}

/// Sends `request` (absolute `http` URI, empty body) on an idle connection of this thread or a
/// new one. When a reused connection turns out closed before any of the response arrived (the
/// server dropped it as the request went out), an idempotent request is sent once more on a new
/// connection. Dropping the future drops the connection it holds.
///
/// The head is encoded before the future is made, which then holds neither the request nor a
/// second copy of it (as an `async fn`'s arguments would).
///
/// # Errors
/// [`PoolError::Connect`], [`PoolError::Io`] or [`PoolError::InvalidResponse`].
pub(super) fn send(
    home: Home,
    request: Request<Body>,
    added: &Added<'_>,
    deadline: Instant,
) -> impl Future<Output = Result<Response<Body>, PoolError>> + Send {
    let head = encode_head(&request, added);
    let method = request.method();
    let is_head = method == Method::HEAD;
    let idempotent = method == Method::GET
        || is_head
        || method == Method::OPTIONS
        || method == Method::TRACE
        || method == Method::PUT
        || method == Method::DELETE;
    // Written: the map serves a later message on this thread.
    crate::util::spare_headers::give(request.into_parts().0.headers);
    async move {
        if let Some(conn) = checkout(&home) {
            match exchange(conn, &head, is_head, &home, deadline).await {
                Ok(response) => return Ok(response),
                Err(failure) if failure.unanswered && idempotent => {}
                Err(failure) => return Err(failure.error),
            }
        }
        // A new connection is rare next to reuse: boxed (ARCHITECTURE.md, "Hot-path idioms").
        Box::pin(async {
            let conn = connect(&home.authority, deadline).await?;
            exchange(conn, &head, is_head, &home, deadline)
                .await
                .map_err(|failure| failure.error)
        })
        .await
    }
}

/// Why an exchange failed, and whether the server had answered nothing (a retry is safe for an
/// idempotent request).
struct Failure {
    error: PoolError,
    unanswered: bool,
}

impl Failure {
    /// A closed or reset connection before any answer is the keep-alive race; other errors are not.
    fn io(error: io::Error, answered: bool) -> Failure {
        let reset = matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
        );
        Failure {
            error: PoolError::Io(error),
            unanswered: reset && !answered,
        }
    }
}

/// Writes the request head and reads the response head by `deadline`; the body follows in the
/// response.
async fn exchange(
    mut conn: Conn,
    request: &[u8],
    is_head: bool,
    home: &Home,
    deadline: Instant,
) -> Result<Response<Body>, Failure> {
    conn.timer.as_mut().reset(deadline);
    let Conn { stream, timer, buf, .. } = &mut conn;
    let head = tokio::select! {
        biased;
        head = read_head(stream, buf, request, is_head) => head?,
        () = timer.as_mut() => {
            return Err(Failure {
                error: PoolError::TimedOut,
                unanswered: false,
            })
        }
    };
    Ok(respond(head, conn, home))
}

/// Writes the request head and reads into the connection's empty `buf` until a final response
/// head is complete; returns it, leaving what was read past it in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut, request: &[u8], is_head: bool) -> Result<Head, Failure> {
    if let Err(error) = stream.write_all(request).await {
        return Err(Failure::io(error, false));
    }
    // Takes back the allocation the last response left when nothing shares it any more.
    if buf.capacity() < HEAD_BUFFER / 2 {
        buf.reserve(HEAD_BUFFER);
    }
    // Interim (1xx) heads are consumed from `buf`, so its being empty does not mean nothing came.
    let mut answered = false;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().max(HEAD_BUFFER));
        }
        match stream.read_buf(buf).await {
            Ok(0) => {
                let error = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response head",
                );
                return Err(Failure::io(error, answered));
            }
            Ok(_) => answered = true,
            Err(error) => return Err(Failure::io(error, answered)),
        }
        match parse_head(buf, is_head) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(message) => {
                return Err(Failure {
                    error: PoolError::InvalidResponse(message),
                    unanswered: false,
                })
            }
        }
    }
}

/// The response for `head`, with the connection's buffer holding what was read past it. A body
/// that is already complete there (or absent) frees the connection right away.
fn respond(head: Head, mut conn: Conn, home: &Home) -> Response<Body> {
    let complete = match head.framing {
        Framing::Empty => Some(Bytes::new()),
        Framing::Length(length) if length <= conn.buf.len() as u64 => {
            // `length` fits in usize: it is at most `buf.len()`.
            Some(conn.buf.split_to(length as usize).freeze())
        }
        _ => None,
    };
    let body = match complete {
        Some(data) => {
            // Bytes beyond the message would be read as the next response: the connection goes.
            if head.keep_alive && conn.buf.is_empty() {
                // A buffer grown for a large head is not kept for the idle connection.
                if conn.buf.capacity() > HEAD_BUFFER {
                    conn.buf = BytesMut::new();
                }
                conn.bodiless = matches!(head.framing, Framing::Empty);
                checkin(home, conn);
            }
            if data.is_empty() {
                body::empty()
            } else {
                body::full(data)
            }
        }
        None => body::boxed(InlineBody {
            buf: std::mem::take(&mut conn.buf),
            conn: Some(conn),
            reading: BodyReader::new(head.framing),
            home: head.keep_alive.then(|| home.clone()),
            read_size: READ_MIN,
        }),
    };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = head.headers;
    response
}

// === impl idle list ===

/// The newest idle connection of this thread for `home` that is still usable; older than
/// [`IDLE_TIMEOUT`], closed or with stray bytes to read, a connection met on the way is closed.
fn checkout(home: &Home) -> Option<Conn> {
    with_origin(home, |origin| {
        let now = Instant::now();
        while let Some(idle) = origin.plain.pop() {
            if now.duration_since(idle.since) < IDLE_TIMEOUT && is_quiet(&idle.conn.stream, idle.conn.bodiless) {
                return Some(idle.conn);
            }
        }
        None
    })
}

/// Whether an idle connection has nothing to read: neither the server's close nor stray bytes.
///
/// After a bodiless answer the socket itself is asked (a non-blocking peek, one system call), not
/// tokio's cached readiness: a read shorter than its buffer marks the socket drained until the
/// reactor's next turn, and a body that a server wrongly sent after a `HEAD`, 204 or 304 head,
/// arriving since, would be read as the next request's answer. After an answer framed by its
/// length or chunks, the cached readiness is asked (no system call unless the socket became
/// readable): the framing said where the answer ended, and this is the path most requests take.
fn is_quiet(stream: &TcpStream, bodiless: bool) -> bool {
    let would_block =
        |result: io::Result<usize>| matches!(result, Err(error) if error.kind() == io::ErrorKind::WouldBlock);
    if bodiless {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        would_block(socket2::SockRef::from(stream).peek(&mut byte))
    } else {
        would_block(stream.try_read(&mut [0; 1]))
    }
}

/// Puts a connection whose last response was read to its end on this thread's idle list.
fn checkin(home: &Home, conn: Conn) {
    if home.max_idle == 0 {
        return;
    }
    let idle = IdleStream {
        conn,
        since: Instant::now(),
    };
    with_origin(home, |origin| keep_idle(&mut origin.plain, idle, home.max_idle));
}

/// A new connection to `authority` (port 80 by default), resolving the host unless it is an IP
/// address, within [`CONNECT_TIMEOUT`]; past `deadline` (the request's), [`PoolError::TimedOut`].
async fn connect(authority: &Authority, deadline: Instant) -> Result<Conn, PoolError> {
    let port = authority.port_u16().unwrap_or(80);
    let limit = Instant::now() + CONNECT_TIMEOUT;
    let stream = tokio::time::timeout_at(
        limit.min(deadline),
        crate::connect::tcp(authority.host(), port, CONNECT_TIMEOUT),
    )
    .await
    .map_err(|_elapsed| match deadline <= limit {
        true => PoolError::TimedOut,
        false => PoolError::Connect("connect timed out".into()),
    })?
    .map_err(|error| PoolError::Connect(error.into()))?;
    Ok(Conn {
        stream,
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        buf: BytesMut::new(),
        bodiless: false,
    })
}

// === impl request head ===

/// `METHOD origin-form HTTP/1.1`, the headers as they are, those `added`, and a `host` from the
/// URI when the caller set none, in one buffer for one write.
fn encode_head(request: &Request<Body>, added: &Added<'_>) -> Vec<u8> {
    let method = request.method().as_str();
    let uri = request.uri();
    let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let headers = request.headers();
    // One pass for the size and the two headers that matter here, instead of a lookup each.
    let (mut has_host, mut has_length, mut fields) = (false, false, 0);
    for (name, value) in headers {
        has_host |= name == header::HOST;
        has_length |= name == header::CONTENT_LENGTH;
        fields += name.as_str().len() + value.len() + 4;
    }
    let host = match has_host {
        true => None,
        false => uri.authority(),
    };
    // A body that is empty without having ended gets the length hyper would give it.
    let zero_length = !request.body().is_end_stream() && !has_length;
    let size = method.len()
        + path.len()
        + 16
        + host.map_or(0, |host| host.as_str().len() + 8)
        + fields
        + added.encoded_len()
        + if zero_length { 20 } else { 0 };
    let mut head = Vec::with_capacity(size);
    write_request_line(&mut head, method, path);
    if let Some(host) = host {
        write_field(&mut head, b"host", host.as_str().as_bytes());
    }
    for (name, value) in headers {
        write_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    added.write_to(&mut head);
    if zero_length {
        head.extend_from_slice(b"content-length: 0\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

// === impl response head ===

/// The final response head at the front of `buf` (see [`parse_response_head`]). Hop-by-hop
/// fields end here (the connection's own were read for the framing); a `Connection` that names
/// other fields stays for the response policy, which removes them.
fn parse_head(buf: &mut BytesMut, is_head: bool) -> Result<Option<Head>, &'static str> {
    parse_response_head(buf, is_head, MAX_HEAD, |name, value| {
        !(crate::proxy::headers::is_hop_by_hop(name.as_str())
            && (name != header::CONNECTION || names_only_hop_by_hop(value.as_bytes())))
    })
}

/// Whether a `Connection` value names only hop-by-hop headers and `close`: nothing left for the
/// response policy to remove.
fn names_only_hop_by_hop(value: &[u8]) -> bool {
    tokens(value).all(|option| {
        let mut lower = [0u8; 24];
        let Some(slot) = lower.get_mut(..option.len()) else {
            return false;
        };
        slot.copy_from_slice(option);
        slot.make_ascii_lowercase();
        match std::str::from_utf8(slot) {
            Ok(name) => name.is_empty() || name == "close" || crate::proxy::headers::is_hop_by_hop(name),
            Err(_) => false,
        }
    })
}

// === impl InlineBody ===

/// A response body read from its connection as it is polled. Read to its end, it puts the
/// connection back on the idle list when the response allowed that; dropped before its end or
/// failed, it closes the connection, whose state is unknown.
struct InlineBody {
    /// `None` once the body has ended.
    conn: Option<Conn>,
    /// Read but not yet yielded.
    buf: BytesMut,
    reading: BodyReader,
    /// Where the connection goes at the end; `None` when it must close.
    home: Option<Home>,
    read_size: usize,
}

impl InlineBody {
    fn finish(&mut self) {
        self.reading = BodyReader::Done;
        let conn = self.conn.take();
        // The body's buffer, grown for the body, is not kept: the connection reads its next
        // head into a new one.
        if let (Some(home), Some(mut conn)) = (self.home.take(), conn) {
            if self.buf.is_empty() {
                conn.bodiless = false;
                checkin(&home, conn);
            }
        }
    }

    fn fail(
        &mut self,
        error: impl Into<crate::body::BoxError>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::body::BoxError>>> {
        self.reading = BodyReader::Done;
        self.conn = None;
        self.home = None;
        Poll::Ready(Some(Err(error.into())))
    }

    /// What `buf` holds of the body now, ending the body when that is all of it.
    fn buffered(&mut self) -> Result<Option<Bytes>, &'static str> {
        let data = self.reading.decode(&mut self.buf)?;
        // When the body is complete the connection goes back now rather than at a poll that may
        // never come.
        if self.reading.is_done() && self.conn.is_some() {
            self.finish();
        }
        Ok(data)
    }
}

impl HttpBody for InlineBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match this.buffered() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) => {}
                Err(message) => return this.fail(PoolError::InvalidResponse(message)),
            }
            let Some(Conn { stream, .. }) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let mut spare = this.buf.capacity() - this.buf.len();
            if spare < READ_MIN / 4 {
                let wanted = match this.reading {
                    BodyReader::Length(remaining) => remaining.min(this.read_size as u64) as usize,
                    _ => this.read_size,
                };
                this.buf.reserve(wanted);
                spare = this.buf.capacity() - this.buf.len();
            }
            match ready!(tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut this.buf)) {
                Ok(0) if matches!(this.reading, BodyReader::Close) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(PoolError::InvalidResponse("response body ended early")),
                Ok(read) => {
                    if read == spare && this.read_size < READ_MAX {
                        this.read_size *= 2;
                    }
                }
                Err(error) => return this.fail(error),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, BodyReader::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            BodyReader::Length(remaining) => SizeHint::with_exact(remaining),
            BodyReader::Done => SizeHint::with_exact(0),
            BodyReader::Chunked(_) | BodyReader::Close => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
