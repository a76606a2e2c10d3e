//! Range requests on static files (RFC 9110 §14): the `Range` header parser, the `If-Range`
//! precondition, and the choice between the whole file, one part of it, or 416.

use std::time::SystemTime;

use http::header::{self, HeaderMap};

#[cfg(test)]
mod tests;

/// A `Range` header listing more ranges than this is ignored without parsing the rest.
const MAX_RANGES: usize = 16;

/// One `range-spec` as the client wrote it, before the file size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    /// `first-last`, or `first-` when `last` is `None`.
    FromTo { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// What a GET or HEAD of a file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// 200 with the whole file: no `Range`, one that is ignored, or an `If-Range` that does not match.
    Full,
    /// 206 with the bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416: the one range asked for starts beyond the end of the file.
    Unsatisfiable,
}

/// Decides how to answer a request for a file of `length` bytes whose validators are `etag` and
/// `modified` (the conditional requests that give 304 have already been answered).
///
/// An invalid header, a unit other than `bytes`, several ranges, or more than [`MAX_RANGES`] of them
/// give [`Plan::Full`], as RFC 9110 lets a server ignore `Range`. Several ranges are not coalesced
/// or sent as `multipart/byteranges`: the whole file is always a correct answer.
pub(crate) fn plan(headers: &HeaderMap, length: u64, etag: &str, modified: SystemTime) -> Plan {
    let mut values = headers.get_all(header::RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Plan::Full;
    };
    let Ok(value) = value.to_str() else {
        return Plan::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        let matches = if_range
            .to_str()
            .is_ok_and(|if_range| if_range_matches(if_range, etag, modified));
        if !matches {
            return Plan::Full;
        }
    }
    match parse(value).as_deref() {
        Some([spec]) => select(*spec, length),
        _ => Plan::Full,
    }
}

/// Parses a `Range` value; `None` when it must be ignored (invalid, another unit, too many ranges).
pub(crate) fn parse(value: &str) -> Option<Vec<Spec>> {
    let (unit, set) = value.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // The list syntax allows empty elements and whitespace around the commas (RFC 9110 §5.6.1).
    for element in set.split(',').map(|element| element.trim_matches([' ', '\t'])) {
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        specs.push(parse_spec(element)?);
    }
    (!specs.is_empty()).then_some(specs)
}

fn parse_spec(element: &str) -> Option<Spec> {
    let (first, last) = element.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::FromTo { first, last: None });
    }
    let last = digits(last)?;
    // RFC 9110 §14.1.1: a range whose last position is before its first makes the header invalid.
    (last >= first).then_some(Spec::FromTo {
        first,
        last: Some(last),
    })
}

/// `1*DIGIT`, saturating: a position past `u64::MAX` is still beyond any file, not an error.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |value, byte| {
        value.saturating_mul(10).saturating_add(u64::from(byte - b'0'))
    }))
}

/// The part of a file of `length` bytes that `spec` selects, with the last position clamped.
fn select(spec: Spec, length: u64) -> Plan {
    let Some(last_byte) = length.checked_sub(1) else {
        return Plan::Unsatisfiable;
    };
    match spec {
        Spec::FromTo { first, .. } if first >= length => Plan::Unsatisfiable,
        Spec::FromTo { first, last } => Plan::Part {
            start: first,
            end: last.map_or(last_byte, |last| last.min(last_byte)),
        },
        Spec::Suffix(0) => Plan::Unsatisfiable,
        Spec::Suffix(count) => Plan::Part {
            start: length - count.min(length),
            end: last_byte,
        },
    }
}

/// `If-Range` (RFC 9110 §13.1.5): an entity tag must be strong and equal to `etag` (a weak one never
/// matches), a date must equal the Last-Modified date exactly.
pub(crate) fn if_range_matches(value: &str, etag: &str, modified: SystemTime) -> bool {
    let value = value.trim();
    if value.starts_with("W/") || value.starts_with('"') {
        return !value.starts_with("W/") && !etag.starts_with("W/") && value == etag;
    }
    let Ok(date) = httpdate::parse_http_date(value) else {
        return false;
    };
    seconds(date).is_some_and(|date| seconds(modified) == Some(date))
}

/// Whole seconds since the epoch: the resolution of an HTTP date.
fn seconds(time: SystemTime) -> Option<u64> {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|duration| duration.as_secs())
}
