//! The wire rules both HTTP/1.1 directions share: the header limit, where a parsed field sits in
//! its head, how a head is written, how a body is framed, the no-body rule, and the parsers of
//! `Content-Length` and of comma-separated token lists such as `Connection`.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
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

/// The length one `Content-Length` value gives: `1*DIGIT`, with optional whitespace around it.
/// Anything else (a sign, a list, more than 19 digits, which no real body comes near) is `None`.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 19 digits: below `u64::MAX`, no overflow.
    Some(
        digits
            .iter()
            .fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0')),
    )
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

#[cfg(test)]
mod tests;
