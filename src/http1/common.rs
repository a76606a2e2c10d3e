//! The wire rules both HTTP/1.1 directions share: the header limit, where a parsed field sits in
//! its head, how heads are written and a response head read, how a body is framed (the no-body
//! rule), and the one parser of `Content-Length` and of token lists such as `Connection`.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

/// At most this many header fields in a head, as hyper (more: hyper answers 431, or refuses the
/// response).
pub const MAX_HEADERS: usize = 100;

/// Uninitialised header slots for `httparse`: a hundred fields would otherwise be written before
/// every parse.
pub type Fields<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// A new set of [`Fields`].
pub const fn fields<'b>() -> Fields<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// How a message body is delimited on the wire (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes (`HEAD`, 204, 304, or an empty body).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (a response only).
    Close,
}

/// Whether a response with `status` never has a body, whatever its fields say (RFC 9110 §6.4.1:
/// 204 and 304; 1xx are interim and never the answer here).
pub fn status_has_no_body(status: StatusCode) -> bool {
    matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Whether the answer to a request (`is_head`: a `HEAD`) with `status` has no body.
pub fn response_has_no_body(is_head: bool, status: StatusCode) -> bool {
    is_head || status_has_no_body(status)
}

// === Content-Length ===

/// The length one `Content-Length` value gives: `1*DIGIT`, with optional whitespace around it,
/// as hyper reads it. Anything else (a sign, a list, a value past `u64::MAX`) is `None`.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |sum, digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        sum.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// The length a `Content-Length` field gives when it may be a list or repeated (RFC 9110 §8.6:
/// the same value repeated is that value), which must equal the `previous` field's.
///
/// # Errors
/// An element that is not a length, or a length that differs from another.
pub fn content_length_list(previous: Option<u64>, value: &[u8]) -> Result<Option<u64>, &'static str> {
    let mut length = previous;
    for part in value.split(|byte| *byte == b',') {
        let parsed = content_length(part).ok_or("invalid content-length")?;
        if length.is_some_and(|length| length != parsed) {
            return Err("conflicting content-length");
        }
        length = Some(parsed);
    }
    Ok(length)
}

// === token lists ===

/// The elements of a comma-separated field value (`Connection`, `Upgrade`, `Transfer-Encoding`),
/// trimmed; empty elements are included (a list may have them).
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|byte| *byte == b',').map(<[u8]>::trim_ascii)
}

/// True when the comma-separated `value` lists `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|item| item.eq_ignore_ascii_case(token))
}

// === parsed heads ===

/// Where one field's name and value sit in its head: offsets, so that both can share the head's
/// bytes once it is split off the read buffer (no copy per field).
#[derive(Debug, Clone, Copy, Default)]
pub struct Span([u32; 4]);

impl Span {
    /// The span of `field`, parsed from the buffer that starts at address `base`. A head is far
    /// below 4 GiB (both directions cap it), so its offsets fit.
    pub fn of(base: usize, field: &httparse::Header<'_>) -> Span {
        let at = |bytes: &[u8]| (bytes.as_ptr() as usize).wrapping_sub(base) as u32;
        Span([
            at(field.name.as_bytes()),
            field.name.len() as u32,
            at(field.value),
            field.value.len() as u32,
        ])
    }

    /// The field's name and value, sharing `head`'s bytes.
    ///
    /// # Errors
    /// A name or value that `http` does not accept.
    pub fn field(self, head: &Bytes) -> Result<(HeaderName, HeaderValue), &'static str> {
        let [name_at, name_length, value_at, value_length] = self.0.map(|n| n as usize);
        let name = head
            .get(name_at..name_at + name_length)
            .and_then(|name| HeaderName::from_bytes(name).ok())
            .ok_or("invalid header name")?;
        let value = match value_length {
            0 => HeaderValue::from_static(""),
            _ => head
                .get(value_at..value_at + value_length)
                .and_then(|_| HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_length)).ok())
                .ok_or("invalid header value")?,
        };
        Ok((name, value))
    }
}

// === head encoding ===

/// `HTTP/1.1 <code> <reason>` and CRLF.
pub fn write_status_line(out: &mut Vec<u8>, status: StatusCode) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `<method> <origin-form> HTTP/1.1` and CRLF; a path without its leading `/` gets one.
pub fn write_request_line(out: &mut Vec<u8>, method: &str, path: &str) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if !path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// `<name>: <value>` and CRLF.
pub fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `content-length: <length>` and CRLF.
pub fn write_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = length;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The status line and the fields of a response, with the framing hyper's server would choose
/// for a body of `known` length (`Some(0)`: empty; `None`: not known), and whether the response's
/// own `Connection` says `close`. When `close` is set, the head says `connection: close` (once);
/// without a `date` field, `date` writes its value.
pub fn encode_response_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    known: Option<u64>,
    is_head: bool,
    close: bool,
    date: impl FnOnce(&mut Vec<u8>),
) -> (Framing, bool) {
    let status = parts.status;
    write_status_line(out, status);
    let no_body = status_has_no_body(status);
    let mut framing = None;
    let mut wrote_date = false;
    let mut close_listed = false;
    let headers = &parts.headers;
    for (name, value) in headers.iter() {
        if *name == header::CONTENT_LENGTH {
            if no_body || framing.is_some() {
                continue;
            }
            let declared = content_length(value.as_bytes());
            match (known, declared) {
                // As hyper: a length header with an empty body is dropped, except for HEAD.
                (Some(0), _) if !is_head => continue,
                (_, Some(length)) => framing = Some(Framing::Length(length)),
                (_, None) => continue,
            }
        } else if *name == header::TRANSFER_ENCODING {
            // Our responses never carry one (the header policy removes it); hyper would frame by it.
            if no_body || framing.is_some() {
                continue;
            }
            framing = Some(Framing::Chunked);
            if !value.as_bytes().ends_with(b"chunked") {
                out.extend_from_slice(b"transfer-encoding: ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b", chunked\r\n");
                continue;
            }
        } else if *name == header::DATE {
            wrote_date = true;
        } else if *name == header::CONNECTION {
            close_listed |= has_token(value.as_bytes(), b"close");
        }
        write_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if close && !close_listed {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framing = match framing {
        Some(framing) => framing,
        None => match known {
            Some(0) => {
                if !no_body && !is_head {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(length) => {
                if !no_body {
                    write_content_length(out, length);
                }
                Framing::Length(length)
            }
            None if no_body => Framing::Empty,
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        },
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let framing = if no_body || is_head || framing == Framing::Length(0) {
        Framing::Empty
    } else {
        framing
    };
    (framing, close_listed)
}

// === response heads ===

/// A final response head and how its body is framed.
#[derive(Debug)]
pub struct ResponseHead {
    /// The final status (never 1xx).
    pub status: StatusCode,
    /// The fields kept, `Content-Length` removed when a coding frames the body.
    pub headers: HeaderMap,
    /// How the body's end is found.
    pub framing: Framing,
    /// The connection may carry another request once the body has been read.
    pub keep_alive: bool,
}

/// Parses the response head at the front of `buf` and removes it; interim (1xx) heads before it
/// are removed and skipped. `None`: the head is not complete yet. A field for which `keep` is
/// false is read for the framing but left out of the head's map.
///
/// # Errors
/// A malformed or oversized head, an invalid header or `Content-Length`, a `101` (no upgrade was
/// asked for), `Transfer-Encoding` in an HTTP/1.0 response.
pub fn parse_response_head(
    buf: &mut BytesMut,
    is_head: bool,
    max_head: usize,
    keep: impl Fn(&HeaderName, &HeaderValue) -> bool,
) -> Result<Option<ResponseHead>, &'static str> {
    loop {
        let mut slots = fields();
        let mut parsed = httparse::Response::new(&mut []);
        let length =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
                Ok(httparse::Status::Complete(length)) if length <= max_head => length,
                Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
                Ok(_) => return Err("response head too large"),
                Err(httparse::Error::TooManyHeaders) => return Err("too many response headers"),
                Err(_) => return Err("malformed response head"),
            };
        let code = parsed.code.unwrap_or_default();
        if code == 101 {
            return Err("unexpected 101 response");
        }
        if (100..200).contains(&code) {
            buf.advance(length);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| "invalid status code")?;
        let http10 = parsed.version == Some(0);
        // Where each name and value sits in the head, so that the values can share its bytes once
        // it is split off.
        let base = buf.as_ptr() as usize;
        let mut spans = [Span::default(); MAX_HEADERS];
        let count = parsed.headers.len();
        for (span, header) in spans.iter_mut().zip(parsed.headers.iter()) {
            *span = Span::of(base, header);
        }
        let head = buf.split_to(length).freeze();
        // Room for the response headers the router adds (security headers, request id).
        let mut headers = crate::util::spare_headers::take(count + 6);
        let mut seen = Seen::new(http10);
        for span in &spans[..count] {
            let (name, value) = span.field(&head)?;
            seen.header(&name, value.as_bytes());
            if keep(&name, &value) {
                headers.append(name, value);
            }
        }
        return framed(status, headers, seen, is_head).map(Some);
    }
}

/// What the framing and connection headers say, gathered as the headers are read (no lookups
/// afterwards).
struct Seen {
    http10: bool,
    /// `Transfer-Encoding` is present; whether its last coding is `chunked`.
    coding: Option<bool>,
    /// The `Content-Length`: one value, or the same value repeated (in several headers or a
    /// list); an error only matters when it frames the body.
    length: Result<Option<u64>, &'static str>,
    close: bool,
    keep_alive: bool,
}

impl Seen {
    fn new(http10: bool) -> Seen {
        Seen {
            http10,
            coding: None,
            length: Ok(None),
            close: false,
            keep_alive: false,
        }
    }

    fn header(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == header::CONTENT_LENGTH {
            self.length = self.length.and_then(|length| content_length_list(length, value));
        } else if *name == header::TRANSFER_ENCODING {
            let last = value.rsplit(|byte| *byte == b',').next().unwrap_or_default();
            self.coding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if *name == header::CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
}

/// The body's framing and the connection's reuse from the final head (RFC 9112 §6.3, §9.3):
/// HTTP/1.1 stays open unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
fn framed(status: StatusCode, mut headers: HeaderMap, seen: Seen, is_head: bool) -> Result<ResponseHead, &'static str> {
    let mut keep_alive = !seen.close && (seen.keep_alive || !seen.http10);
    let framing = if response_has_no_body(is_head, status) {
        Framing::Empty
    } else if let Some(chunked) = seen.coding {
        if seen.http10 {
            return Err("transfer-encoding in an HTTP/1.0 response");
        }
        // The coding overrides a length; a message with both is suspect, so its connection goes.
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        // The body is decoded by its reader; whoever passes it on frames it anew.
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match seen.length? {
            Some(length) => Framing::Length(length),
            None => Framing::Close,
        }
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
    })
}

#[cfg(test)]
mod tests;
