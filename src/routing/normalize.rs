//! The one path a request is for: repeated slashes merged and percent-encoded unreserved characters
//! decoded (RFC 3986 §6.2.2.2), before the route table, the scope check or a backend sees it.
//! Encoded slashes and encodings of encodings are refused: a backend that decodes them would see a
//! path the route table never did.

use std::borrow::Cow;

use super::Error;

/// The normal form of `path` (a request path without its query), borrowed when it already is one.
///
/// - `//` and longer runs of slashes become one `/`, as nginx's `merge_slashes` does;
/// - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) becomes that character;
/// - `%2F` (an encoded `/`) is refused unless `allow_encoded_slash`, and then kept encoded;
/// - `%25` (an encoded `%`) followed by the encoding of an unreserved character, a `/` or another
///   `%` is refused: it is one decode away from a different path;
/// - every other byte, and every other escape, is kept as it is (case and `;` parameters are the
///   backend's).
///
/// # Errors
/// [`Error::EncodedSlash`] or [`Error::NestedEncoding`].
pub fn normalize_path(path: &str, allow_encoded_slash: bool) -> Result<Cow<'_, str>, Error> {
    let bytes = path.as_bytes();
    // Most paths have neither a `%` nor a `//`: one scan, no copy.
    let Some(start) = first_change(bytes) else {
        return Ok(Cow::Borrowed(path));
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..start]);
    // Where a `%` that starts no escape was copied to: a decoded character after it may complete one.
    let mut stray = Vec::new();
    let mut index = start;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'/' if out.last() == Some(&b'/') => index += 1,
            b'%' => match escaped(bytes, index) {
                Some(decoded) if is_unreserved(decoded) => {
                    out.push(decoded);
                    index += 3;
                }
                Some(b'/') if !allow_encoded_slash => return Err(Error::EncodedSlash),
                // `%2561`: once decoded, `%61`; twice, `a`.
                Some(b'%') if encodes_an_escape(bytes, index) => return Err(Error::NestedEncoding),
                Some(_) => {
                    out.push(byte);
                    index += 1;
                }
                None => {
                    stray.push(out.len());
                    out.push(byte);
                    index += 1;
                }
            },
            _ => {
                out.push(byte);
                index += 1;
            }
        }
    }
    // Every change shortens the path: the same length is the same path.
    if out.len() == bytes.len() {
        return Ok(Cow::Borrowed(path));
    }
    // A decoded character can complete an escape with what is before it: a stray `%` (`%%34%31`
    // is `%41` once decoded, `%a%61` is `%aa`) or a kept `%25` (`%255%61` is `%255a`, which is `Z`
    // twice decoded). A backend would decode what the route table saw as text.
    if stray.iter().any(|&at| escaped(&out, at).is_some()) || still_changes(&out, allow_encoded_slash) {
        return Err(Error::NestedEncoding);
    }
    // Only ASCII bytes were replaced, by ASCII bytes: the text is still UTF-8.
    match String::from_utf8(out) {
        Ok(normalized) => Ok(Cow::Owned(normalized)),
        Err(_) => Err(Error::PathTraversal),
    }
}

/// Where the first byte that normalisation may change is: a `%`, or the second slash of a run.
fn first_change(bytes: &[u8]) -> Option<usize> {
    let mut previous_slash = false;
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' => return Some(index),
            b'/' if previous_slash => return Some(index),
            b'/' => previous_slash = true,
            _ => previous_slash = false,
        }
    }
    None
}

/// True when `bytes` holds an escape that [`normalize_path`] would decode or refuse.
fn still_changes(bytes: &[u8], allow_encoded_slash: bool) -> bool {
    memchr::memchr_iter(b'%', bytes).any(|index| match escaped(bytes, index) {
        Some(decoded) if is_unreserved(decoded) => true,
        Some(b'/') => !allow_encoded_slash,
        Some(b'%') => encodes_an_escape(bytes, index),
        _ => false,
    })
}

/// True when the `%25` at `index` is followed by two hex digits that, decoded once more, are
/// something normalisation decodes or refuses: an unreserved character, a `/` or a `%`.
fn encodes_an_escape(bytes: &[u8], index: usize) -> bool {
    hex_pair(bytes, index + 3).is_some_and(|next| is_unreserved(next) || matches!(next, b'/' | b'%'))
}

/// The byte that `%XX` at `index` encodes, if `bytes` has a valid escape there.
fn escaped(bytes: &[u8], index: usize) -> Option<u8> {
    if bytes.get(index) != Some(&b'%') {
        return None;
    }
    hex_pair(bytes, index + 1)
}

/// The byte that the two hex digits at `index` spell, if they are hex digits.
fn hex_pair(bytes: &[u8], index: usize) -> Option<u8> {
    let high = hex(*bytes.get(index)?)?;
    let low = hex(*bytes.get(index + 1)?)?;
    Some(high << 4 | low)
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
