//! The router's cookies in one place: the byte-level `Cookie` reader used on every request (lookups
//! and stripping the router's own cookies) and the `Set-Cookie` values the router sends.

mod set_cookie;

use http::header::{self, HeaderMap, HeaderValue};

pub use self::set_cookie::{deletion, CookieFlags, CookieSpec, Partitioning};

/// Removes the cookies for which `strip` is true from every `Cookie` header; drops the header when
/// nothing is left.
///
/// The values are read as bytes: a `Cookie` header with bytes outside visible ASCII (which
/// `HeaderValue::to_str` refuses) still has the router's cookies taken out of it, so that a stray
/// byte beside the session cookie cannot carry it to the backend.
pub fn strip_cookies(headers: &mut HeaderMap, strip: impl Fn(&[u8]) -> bool) {
    // One lookup: the entry serves the check, the rebuild and the removal.
    let header::Entry::Occupied(mut entry) = headers.entry(header::COOKIE) else {
        return;
    };
    let stripped = |pair: &[u8]| strip(cookie_split(pair).0);
    if !entry
        .iter()
        .flat_map(|value| cookie_pairs(value.as_bytes()))
        .any(stripped)
    {
        return;
    }
    let mut kept = Vec::new();
    for pair in entry
        .iter()
        .flat_map(|value| cookie_pairs(value.as_bytes()))
        .filter(|pair| !stripped(pair))
    {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    match HeaderValue::from_bytes(&kept) {
        Ok(value) if !kept.is_empty() => {
            entry.insert(value);
        }
        // Nothing left (or nothing that makes a header): the header goes.
        _ => {
            entry.remove();
        }
    }
}

/// The `name=value` pairs of one `Cookie` value, trimmed of whitespace, empty ones skipped.
fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let text = rest?;
        let pair = match memchr::memchr(b';', text) {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                &text[..at]
            }
            None => {
                rest = None;
                text
            }
        };
        let pair = pair.trim_ascii();
        if !pair.is_empty() {
            return Some(pair);
        }
    })
}

/// The name and value of a `name=value` pair, trimmed; a pair without `=` is all name.
fn cookie_split(pair: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'=', pair) {
        Some(at) => (pair[..at].trim_ascii(), Some(pair[at + 1..].trim_ascii())),
        None => (pair.trim_ascii(), None),
    }
}

/// The value of cookie `name` in the request, if present: the first occurrence whose value is
/// text.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    cookie_values(headers, name).find_map(|value| std::str::from_utf8(value).ok())
}

/// The value of cookie `name` in the request as bytes, if present (first occurrence).
pub fn cookie_bytes<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    cookie_values(headers, name).next()
}

/// The values of cookie `name`, in order.
fn cookie_values<'h, 'n>(headers: &'h HeaderMap, name: &'n str) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| cookie_pairs(value.as_bytes()))
        .filter_map(move |pair| match cookie_split(pair) {
            (key, Some(value)) if key == name.as_bytes() => Some(value),
            _ => None,
        })
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stripped_by_name() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("JSESSIONID=abc; a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2; JSESSIONID=def"));
        strip_cookies(&mut headers, |name| name == b"JSESSIONID");
        assert_eq!(headers.get("cookie").unwrap(), "a=1; b=2");
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(headers.get_all("cookie").iter().count(), 1);
        // Nothing to strip: the headers stay as they were, one per line.
        let mut untouched = HeaderMap::new();
        untouched.append("cookie", HeaderValue::from_static("a=1;;b=2"));
        untouched.append("cookie", HeaderValue::from_static("c=3"));
        strip_cookies(&mut untouched, |name| name == b"JSESSIONID");
        let values: Vec<_> = untouched.get_all("cookie").iter().collect();
        assert_eq!(values, ["a=1;;b=2", "c=3"]);
        strip_cookies(&mut headers, |_| true);
        assert!(headers.get("cookie").is_none());
        strip_cookies(&mut headers, |_| true);
        assert!(headers.is_empty());
    }

    #[test]
    fn cookies_beside_bytes_outside_visible_ascii_are_still_read() {
        // `to_str` refuses these values; the session cookie in them must still be found and taken
        // out, and the other cookies kept byte for byte.
        let mut headers = HeaderMap::new();
        headers.append(
            "cookie",
            HeaderValue::from_bytes(b"caf\xe9=cr\xe8me; JSESSIONID=abc ;\tx=1").unwrap(),
        );
        assert_eq!(cookie(&headers, "JSESSIONID"), Some("abc"));
        assert_eq!(cookie(&headers, "x"), Some("1"));
        // A value that is not text is not returned, and a later text one is.
        headers.append("cookie", HeaderValue::from_bytes(b"v=\xff; v=ok").unwrap());
        assert_eq!(cookie(&headers, "v"), Some("ok"));
        strip_cookies(&mut headers, |name| name == b"JSESSIONID");
        let values: Vec<&[u8]> = headers.get_all("cookie").iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(values, [&b"caf\xe9=cr\xe8me; x=1; v=\xff; v=ok"[..]]);
        // Names and values are trimmed of spaces and tabs; a pair without `=` is a name.
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static(" JSESSIONID ; a = 1 ;; JSESSIONID"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "JSESSIONID"), None);
        strip_cookies(&mut headers, |name| name == b"JSESSIONID");
        assert_eq!(headers.get("cookie").unwrap(), "a = 1");
    }
}
