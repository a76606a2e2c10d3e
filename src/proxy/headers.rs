//! Header policy for both directions: hop-by-hop and internal headers removed (in every spelling,
//! including those named in `Connection:`), `X-Forwarded-*` set, our own cookies stripped.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub use crate::cookies::strip_cookies;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
const X_CORRELATIONID: HeaderName = HeaderName::from_static("x-correlationid");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `00-` + 32 hex digits + `-` + 16 hex digits + `-` + 2 hex digits.
const TRACEPARENT_LEN: usize = 55;

/// Hop-by-hop headers (RFC 9110 7.6.1) plus the legacy ones the reference also drops. A `match`
/// on the lower-case name: the compiler dispatches on its length before comparing bytes.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "public"
    )
}

/// Headers that carry identity or internal routing and must never reach a backend from a client.
fn is_internal(name: &str) -> bool {
    matches!(
        name,
        "x-approuter-authorization"
            | "x-approuter-access-token"
            | "x-custom-host"
            | "x-ias-token"
            | "sap-connectivity-authentication"
            | "sap-connectivity-scc-location_id"
            // Not stripped by the Node.js router; a client must not authenticate as a technical
            // user at the on-premise system either.
            | "sap-connectivity-technical-authentication"
    )
}

/// Whether `name` (lower case, with `_`) is a header the router manages spelt with `_` for `-`:
/// a backend that maps `_` to `-` (CGI-style servers do) would take it for the real one.
fn is_managed_look_alike(name: &str) -> bool {
    let mut dashed = [0u8; 40];
    let Some(slot) = dashed.get_mut(..name.len()) else {
        // Longer than every managed name.
        return false;
    };
    for (to, from) in slot.iter_mut().zip(name.bytes()) {
        *to = if from == b'_' { b'-' } else { from };
    }
    let Ok(dashed) = std::str::from_utf8(slot) else {
        return false;
    };
    is_hop_by_hop(dashed)
        || is_internal(dashed)
        || matches!(
            dashed,
            "host"
                | "content-length"
                | "authorization"
                | "cookie"
                | "forwarded"
                | "x-forwarded-for"
                | "x-forwarded-host"
                | "x-forwarded-proto"
                | "x-forwarded-path"
                | "x-correlationid"
                | "x-correlation-id"
                | "x-request-id"
                | "x-vcap-request-id"
                | "traceparent"
                | "tracestate"
                | "sap-connectivity-scc-location-id"
        )
}

/// What the request policy does beyond the fixed rules: settings of the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// A trusted proxy is in front (`CLIENT_IP_FORWARDED_HOPS` ≥ 1): the `X-Forwarded-Host`,
    /// `-Proto` and `-Path` it sent are kept; otherwise they are the client's and are replaced.
    pub trust_forwarded: bool,
    /// `ALLOW_UNDERSCORES_IN_HEADERS`: names with `_` pass, except look-alikes of managed headers.
    pub allow_underscores: bool,
}

impl Policy {
    /// Whether the client's header `name` is dropped for this policy.
    fn drops(self, name: &str) -> bool {
        // One byte scan per name; the rest only for the rare name with `_`.
        (memchr::memchr(b'_', name.as_bytes()).is_some() && (!self.allow_underscores || is_managed_look_alike(name)))
            || (!self.trust_forwarded && matches!(name, "x-forwarded-host" | "x-forwarded-proto" | "x-forwarded-path"))
    }
}

/// Removes hop-by-hop headers, including every header named in `Connection:`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_matching(headers, is_hop_by_hop, |_| {});
}

/// The names to remove: the first few on the stack (a message names two or three: `Connection`,
/// `Keep-Alive`), more in a list. No allocation per message in the common case.
#[derive(Default)]
struct Doomed {
    first: [Option<HeaderName>; 8],
    count: usize,
    more: Vec<HeaderName>,
}

impl Doomed {
    fn push(&mut self, name: HeaderName) {
        match self.first.get_mut(self.count) {
            Some(slot) => {
                *slot = Some(name);
                self.count += 1;
            }
            None => self.more.push(name),
        }
    }
}

/// Removes the headers `listed` says (it is given lower-case names) and every header named in
/// `Connection:`; `seen` is shown every name that stays, in the same pass. Passes over the names
/// present (a request carries a dozen) instead of a lookup for each listed name; a header is looked
/// up only to be removed.
fn remove_matching(headers: &mut HeaderMap, listed: impl Fn(&str) -> bool, mut seen: impl FnMut(&str)) {
    let mut doomed = Doomed::default();
    // The options of every `Connection` header: a message names one or two (`keep-alive`,
    // `close`); past the first few, the names are parsed and removed as they come.
    let mut options: [&[u8]; 8] = [b""; 8];
    let mut option_count = 0;
    for (name, value) in headers.iter() {
        if name != header::CONNECTION {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        for option in crate::http1::tokens(value.as_bytes()).filter(|option| !option.is_empty()) {
            match options.get_mut(option_count) {
                Some(slot) => {
                    *slot = option;
                    option_count += 1;
                }
                None => {
                    if let Ok(name) = HeaderName::from_bytes(option) {
                        doomed.push(name);
                    }
                }
            }
        }
    }
    let options = &options[..option_count];
    for name in headers.keys() {
        let name_text = name.as_str();
        if listed(name_text)
            || options
                .iter()
                .any(|option| option.eq_ignore_ascii_case(name_text.as_bytes()))
        {
            doomed.push(name.clone());
        } else {
            seen(name_text);
        }
    }
    for name in doomed.first.into_iter().flatten().chain(doomed.more) {
        headers.remove(name);
    }
}

/// An IP address as text, formatted on the stack (the longest IPv6 form has 45 characters).
struct IpText {
    bytes: [u8; 48],
    len: usize,
}

impl IpText {
    /// `address` as `Display` prints it; IPv4 without the formatting machinery.
    fn of(address: IpAddr) -> IpText {
        let mut text = IpText { bytes: [0; 48], len: 0 };
        match address {
            IpAddr::V4(v4) => {
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// What the forward phase knows about the request, for the header policy.
pub struct Forwarding<'a> {
    /// The client's address (appended to `X-Forwarded-For`).
    pub peer: IpAddr,
    /// `http` or `https`: how the client reached us.
    pub scheme: &'a str,
    /// The client's `Host` (or `:authority`).
    pub host: Option<HeaderValue>,
    /// The original request path, without the query.
    pub original_path: &'a str,
    /// Whether `X-Forwarded-*` headers are sent at all (`setXForwardedHeaders`).
    pub set_x_forwarded: bool,
    /// The correlation id of this request.
    pub correlation_id: &'a HeaderValue,
}

/// Applies the request policy to the headers that go to a destination.
pub fn upstream_request(headers: &mut HeaderMap, forwarding: &Forwarding<'_>, policy: Policy) {
    upstream_request_apart(headers, forwarding, policy).insert_into(headers);
}

/// Applies the request policy to `headers` except for the headers it adds, which it returns: the
/// inline client writes them straight into the request head ([`Added::write_to`]), without a hash
/// and an allocation per header; every other client puts them into the map ([`Added::insert_into`]).
pub fn upstream_request_apart<'a>(headers: &mut HeaderMap, forwarding: &Forwarding<'a>, policy: Policy) -> Added<'a> {
    // Which of the headers read below are there, noted in the policy's pass over the names
    // instead of a lookup each (mostly they are not).
    let mut present = Present::default();
    remove_matching(
        headers,
        |name| is_hop_by_hop(name) || is_internal(name) || policy.drops(name),
        |name| match name {
            "traceparent" => present.traceparent = true,
            "tracestate" => present.tracestate = true,
            "x-forwarded-for" => present.forwarded_for = true,
            "x-forwarded-host" => present.forwarded_host = true,
            "x-forwarded-proto" => present.forwarded_proto = true,
            "x-forwarded-path" => present.forwarded_path = true,
            "x-correlationid" => present.correlation_id = true,
            _ => {}
        },
    );
    let mut added = Added {
        traceparent: trace_context(headers, &present),
        forwarded_for: None,
        forwarded_host: None,
        forwarded_proto: None,
        forwarded_path: None,
        correlation_id: Some(forwarding.correlation_id),
    };
    if forwarding.set_x_forwarded {
        // Appending, never copying: the backend sees the whole chain with our peer last.
        let peer = IpText::of(forwarding.peer);
        let existing = match present.forwarded_for {
            true => headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
            false => None,
        };
        match existing {
            // A chain (a client behind another proxy, rare) is rebuilt in the map; our peer alone
            // is added apart.
            Some(existing) if !existing.trim().is_empty() => {
                let existing = existing.as_bytes();
                let mut chain = Vec::with_capacity(existing.len() + 2 + peer.len);
                chain.extend_from_slice(existing);
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(peer.as_bytes());
                if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)) {
                    headers.insert(X_FORWARDED_FOR, value);
                }
            }
            _ => {
                if present.forwarded_for {
                    headers.remove(X_FORWARDED_FOR);
                }
                added.forwarded_for = Some(peer);
            }
        }
        // What a trusted proxy sent is kept (the policy removed the client's own).
        if !present.forwarded_host {
            added.forwarded_host = forwarding.host.clone();
        }
        if !present.forwarded_proto {
            added.forwarded_proto = Some(if forwarding.scheme == "https" { "https" } else { "http" });
        }
        if !present.forwarded_path && is_header_text(forwarding.original_path.as_bytes()) {
            added.forwarded_path = Some(forwarding.original_path);
        }
    } else {
        let forwarded: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("x-forwarded-"))
            .cloned()
            .collect();
        for name in forwarded {
            headers.remove(name);
        }
    }
    // Ours replaces the client's.
    if present.correlation_id {
        headers.remove(X_CORRELATIONID);
    }
    added
}

/// What `HeaderValue` accepts: visible ASCII, space, tab and bytes above 127.
fn is_header_text(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// The headers the request policy adds, none of them in the request's map (where the client sent
/// one that ours replaces, the client's is gone from the map). `Added::default()`: none.
#[derive(Default)]
pub struct Added<'a> {
    traceparent: Option<[u8; TRACEPARENT_LEN]>,
    forwarded_for: Option<IpText>,
    forwarded_host: Option<HeaderValue>,
    forwarded_proto: Option<&'static str>,
    forwarded_path: Option<&'a str>,
    correlation_id: Option<&'a HeaderValue>,
}

impl Added<'_> {
    /// The fields, name and value, in the order they are written.
    fn fields(&self) -> [(&'static str, Option<&[u8]>); 6] {
        [
            ("traceparent", self.traceparent.as_ref().map(|text| &text[..])),
            ("x-forwarded-for", self.forwarded_for.as_ref().map(IpText::as_bytes)),
            (
                "x-forwarded-host",
                self.forwarded_host.as_ref().map(HeaderValue::as_bytes),
            ),
            ("x-forwarded-proto", self.forwarded_proto.map(str::as_bytes)),
            ("x-forwarded-path", self.forwarded_path.map(str::as_bytes)),
            ("x-correlationid", self.correlation_id.map(HeaderValue::as_bytes)),
        ]
    }

    /// The bytes [`Added::write_to`] writes.
    pub fn encoded_len(&self) -> usize {
        self.fields()
            .iter()
            .map(|(name, value)| value.map_or(0, |value| name.len() + value.len() + 4))
            .sum()
    }

    /// Writes the headers as HTTP/1.1 header lines (`name: value\r\n`).
    pub fn write_to(&self, head: &mut Vec<u8>) {
        for (name, value) in self.fields() {
            if let Some(value) = value {
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value);
                head.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Puts the headers into `headers`.
    pub fn insert_into(self, headers: &mut HeaderMap) {
        // Room for them all: growing the map rehashes it, once per doubling.
        headers.reserve(6);
        if let Some(text) = self.traceparent {
            // Always valid: hex digits and dashes.
            if let Ok(value) = HeaderValue::from_bytes(&text) {
                headers.insert(TRACEPARENT, value);
            }
        }
        if let Some(peer) = self.forwarded_for {
            if let Ok(value) = HeaderValue::from_bytes(peer.as_bytes()) {
                headers.insert(X_FORWARDED_FOR, value);
            }
        }
        if let Some(host) = self.forwarded_host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        if let Some(proto) = self.forwarded_proto {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if let Some(path) = self.forwarded_path {
            if let Ok(value) = HeaderValue::from_str(path) {
                headers.insert(X_FORWARDED_PATH, value);
            }
        }
        if let Some(id) = self.correlation_id {
            headers.insert(X_CORRELATIONID, id.clone());
        }
    }
}

/// Applies the response policy to the headers that go back to the client. A `Content-Length`
/// beside `Transfer-Encoding` is already gone (`proxy::forwardable`, every client path).
pub fn downstream_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

/// Removes every `Set-Cookie` that sets the cookie `name` (a backend's cookie named like the
/// router's session cookie, which would overwrite it in the browser).
pub fn remove_set_cookie_named(headers: &mut HeaderMap, name: &str) {
    let clashes = |value: &HeaderValue| {
        value
            .as_bytes()
            .split(|&b| b == b'=')
            .next()
            .is_some_and(|cookie| cookie.trim_ascii() == name.as_bytes())
    };
    if !headers.get_all(http::header::SET_COOKIE).iter().any(clashes) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter(|value| !clashes(value))
        .cloned()
        .collect();
    headers.remove(http::header::SET_COOKIE);
    for value in kept {
        headers.append(http::header::SET_COOKIE, value);
    }
    tracing::debug!(
        cookie = name,
        "a backend's cookie named like the session cookie was dropped"
    );
}

/// Which of the headers [`upstream_request`] reads were present before its removals: a header a
/// `Connection` option named is gone afterwards, so `true` means "look it up", never "it is
/// there" (each reader handles the lookup finding nothing).
#[derive(Default)]
struct Present {
    traceparent: bool,
    tracestate: bool,
    forwarded_for: bool,
    forwarded_host: bool,
    forwarded_proto: bool,
    forwarded_path: bool,
    correlation_id: bool,
}

/// W3C Trace Context: one valid `traceparent` passes through with its `tracestate`; a missing or
/// invalid one is replaced by a new trace id, and `tracestate` is dropped with it (the
/// specification ties it to the `traceparent` it came with). Returns the new one, to be added.
fn trace_context(headers: &mut HeaderMap, present: &Present) -> Option<[u8; TRACEPARENT_LEN]> {
    let valid = present.traceparent && {
        let mut values = headers.get_all(TRACEPARENT).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => valid_traceparent(value.as_bytes()),
            _ => false,
        }
    };
    if valid {
        return None;
    }
    if present.tracestate {
        headers.remove(TRACESTATE);
    }
    if present.traceparent {
        headers.remove(TRACEPARENT);
    }
    Some(new_traceparent())
}

/// `version-traceid-parentid-flags` in lowercase hex; version `ff` and all-zero ids are invalid,
/// and a later version may append fields after a `-`.
fn valid_traceparent(value: &[u8]) -> bool {
    const LEN: usize = TRACEPARENT_LEN;
    let hex = |bytes: &[u8]| bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let nonzero = |bytes: &[u8]| bytes.iter().any(|b| *b != b'0');
    if value.len() < LEN || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    let length_ok = match version {
        b"00" => value.len() == LEN,
        _ => value.len() == LEN || value[LEN] == b'-',
    };
    length_ok
        && hex(version)
        && version != b"ff"
        && hex(trace_id)
        && nonzero(trace_id)
        && hex(parent_id)
        && nonzero(parent_id)
        && hex(flags)
}

/// A new `traceparent`: version 00, random trace and parent ids, not sampled.
fn new_traceparent() -> [u8; TRACEPARENT_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut random = [0u8; 24];
    random[..16].copy_from_slice(&crate::util::fast_id());
    random[16..].copy_from_slice(&crate::util::fast_id()[..8]);
    let mut text = [0u8; 55];
    text[..3].copy_from_slice(b"00-");
    for (index, byte) in random.iter().enumerate() {
        // 16 bytes of trace id, then "-", then 8 bytes of parent id.
        let at = if index < 16 {
            3 + index * 2
        } else {
            36 + (index - 16) * 2
        };
        text[at] = DIGITS[usize::from(byte >> 4)];
        text[at + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
    text[35] = b'-';
    text[52..].copy_from_slice(b"-00");
    // Random ids are all-zero with negligible probability; that value would only be replaced by
    // the next hop, never trusted.
    text
}

#[cfg(test)]
mod tests;
