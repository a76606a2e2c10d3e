//! The chunked transfer coding (RFC 9112 §7.1): decoded in place from the read buffer (chunk data
//! is split off as frames without copying, the framing and trailers are dropped), and encoded as
//! a size line before each piece of data and the last chunk after them.

use bytes::{Buf, Bytes, BytesMut};

use super::Framing;

/// Longest chunk-size line, extensions included; hyper allows a similar amount.
const MAX_SIZE_LINE: usize = 8 * 1024;

/// Most bytes the trailer section may take; it is read and discarded.
const MAX_TRAILERS: usize = 64 * 1024;

/// Where the decoder is in the body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, with this many bytes of trailer lines seen.
    Trailers(usize),
    /// The final CRLF has been read.
    Done,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder { state: State::Size }
    }

    /// Whether the body has been read to its end (trailers included).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing (chunk-size lines, the CRLF after data, trailers) from the front of `buf`
    /// until chunk data is next, the body is done, or more input is needed. On an error nothing
    /// of the offending line is consumed, so calling again gives the same error.
    ///
    /// # Errors
    /// A malformed or oversized chunk-size line, a missing CRLF, oversized trailers.
    pub fn advance(&mut self, buf: &mut BytesMut) -> Result<(), &'static str> {
        loop {
            match self.state {
                State::Size => {
                    let Some(end) = line_end(buf, MAX_SIZE_LINE, "chunk size line too long")? else {
                        return Ok(());
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(_) | State::Done => return Ok(()),
                State::DataEnd => {
                    match buf.get(..2) {
                        Some(b"\r\n") => {}
                        Some(_) => return Err("chunk data not followed by CRLF"),
                        None if buf.first().is_some_and(|byte| *byte != b'\r') => {
                            return Err("chunk data not followed by CRLF")
                        }
                        None => return Ok(()),
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let limit = MAX_TRAILERS.saturating_sub(seen);
                    let Some(end) = line_end(buf, limit, "trailers too large")? else {
                        return Ok(());
                    };
                    if buf[..end].last() != Some(&b'\r') {
                        return Err("trailer line not ended by CRLF");
                    }
                    buf.advance(end + 1);
                    // The empty line ends the trailer section and the body.
                    self.state = if end == 1 {
                        State::Done
                    } else {
                        State::Trailers(seen + end + 1)
                    };
                }
            }
        }
    }

    /// Splits the next piece of chunk data off the front of `buf`, when the decoder is inside a
    /// chunk and `buf` holds some of it. Call [`ChunkedDecoder::advance`] first.
    pub fn data(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        let State::Data(remaining) = self.state else {
            return None;
        };
        if buf.is_empty() {
            return None;
        }
        let take = usize::try_from(remaining).map_or(buf.len(), |remaining| remaining.min(buf.len()));
        // `take` fits in u64: it is at most `remaining`.
        let left = remaining - take as u64;
        self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
        Some(buf.split_to(take).freeze())
    }
}

/// The index of the `\n` ending the first line of `buf`, or `None` when the line is not complete
/// yet; a line longer than `limit` is an error.
fn line_end(buf: &[u8], limit: usize, too_long: &'static str) -> Result<Option<usize>, &'static str> {
    let searched = &buf[..buf.len().min(limit.saturating_add(1))];
    match searched.iter().position(|byte| *byte == b'\n') {
        Some(end) => Ok(Some(end)),
        None if buf.len() > limit => Err(too_long),
        None => Ok(None),
    }
}

/// The size on a chunk-size line (without its `\n`): `1*HEXDIG [BWS] *( ";" chunk-ext ) CR`.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let line = line.strip_suffix(b"\r").ok_or("chunk size line not ended by CRLF")?;
    let digits = line.iter().take_while(|byte| byte.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("invalid chunk size");
    }
    let mut size: u64 = 0;
    for byte in &line[..digits] {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => byte - b'A' + 10,
        };
        size = size
            .checked_mul(16)
            .and_then(|size| size.checked_add(u64::from(digit)))
            .ok_or("chunk size too large")?;
    }
    let rest = &line[digits..];
    let rest = &rest[rest.iter().take_while(|byte| matches!(byte, b' ' | b'\t')).count()..];
    match rest.first() {
        None => Ok(size),
        // Extensions are ignored, but they must not hide control characters (a bare CR).
        Some(b';')
            if rest
                .iter()
                .all(|byte| *byte == b'\t' || (b' '..0x7f).contains(byte) || *byte >= 0x80) =>
        {
            Ok(size)
        }
        Some(b';') => Err("invalid chunk extension"),
        Some(_) => Err("invalid chunk size"),
    }
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder::new()
    }
}

// === reading ===

/// Where a reader is in a body framed by [`Framing`]: what the read buffer holds of it is split
/// off as data (no copy), the framing dropped.
#[derive(Debug)]
pub enum BodyReader {
    /// This many bytes not yet yielded.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// Until the connection closes.
    Close,
    /// The body has ended.
    Done,
}

impl BodyReader {
    /// A reader at the start of a body framed by `framing`; an empty body is read as one that
    /// ends at the connection's close, which a bodiless answer's reader never waits for.
    pub fn new(framing: Framing) -> BodyReader {
        match framing {
            Framing::Length(length) => BodyReader::Length(length),
            Framing::Chunked => BodyReader::Chunked(ChunkedDecoder::new()),
            Framing::Empty | Framing::Close => BodyReader::Close,
        }
    }

    /// Whether the body has been read to its end (a body read until close never ends here: the
    /// connection's end is the caller's to see).
    pub fn is_done(&self) -> bool {
        matches!(self, BodyReader::Done)
    }

    /// Splits what `buf` holds of the body off its front; past a chunk's data, what framing is
    /// buffered too is consumed, so that a body whose end has arrived is done at once.
    ///
    /// # Errors
    /// Malformed chunked framing.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, &'static str> {
        match self {
            BodyReader::Length(remaining) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = (*remaining).min(buf.len() as u64);
                *remaining -= take;
                let last = *remaining == 0;
                // `take` fits in usize: it is at most `buf.len()`.
                let data = buf.split_to(take as usize).freeze();
                if last {
                    *self = BodyReader::Done;
                }
                Ok(Some(data))
            }
            BodyReader::Chunked(decoder) => {
                decoder.advance(buf)?;
                let data = decoder.data(buf);
                let _later = decoder.advance(buf);
                if decoder.is_done() {
                    *self = BodyReader::Done;
                }
                Ok(data)
            }
            BodyReader::Close => Ok((!buf.is_empty()).then(|| buf.split().freeze())),
            BodyReader::Done => Ok(None),
        }
    }
}

// === encoding ===

/// The last chunk and the empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// `size` in lowercase hex and CRLF: the size line before a chunk's data (which is followed by
/// CRLF).
pub fn write_chunk_size(out: &mut Vec<u8>, size: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = size;
    loop {
        at -= 1;
        digits[at] = DIGITS[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
