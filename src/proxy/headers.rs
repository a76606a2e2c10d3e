//! Header policy for both directions: hop-by-hop and internal headers removed (in every spelling,
//! including those named in `Connection:`), `X-Forwarded-*` set, our own cookies stripped.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 7.6.1) plus the legacy ones the reference also drops.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "public",
];

/// Headers that carry identity or internal routing and must never reach a backend from a client.
const INTERNAL: &[&str] = &[
    "x-approuter-authorization",
    "x-approuter-access-token",
    "x-custom-host",
    "x-ias-token",
    "sap-connectivity-authentication",
    "sap-connectivity-scc-location_id",
];

/// Removes hop-by-hop headers, including every header named in `Connection:`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
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
pub fn upstream_request(headers: &mut HeaderMap, forwarding: &Forwarding<'_>) {
    remove_hop_by_hop(headers);
    for name in INTERNAL {
        headers.remove(*name);
    }
    if forwarding.set_x_forwarded {
        // Appending, never copying: the backend sees the whole chain with our peer last.
        let peer = forwarding.peer.to_string();
        let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(existing) if !existing.trim().is_empty() => format!("{existing}, {peer}"),
            _ => peer,
        };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", value);
        }
        if !headers.contains_key("x-forwarded-host") {
            if let Some(host) = &forwarding.host {
                headers.insert("x-forwarded-host", host.clone());
            }
        }
        if !headers.contains_key("x-forwarded-proto") {
            headers.insert(
                "x-forwarded-proto",
                HeaderValue::from_static(if forwarding.scheme == "https" { "https" } else { "http" }),
            );
        }
        if !headers.contains_key("x-forwarded-path") {
            if let Ok(value) = HeaderValue::from_str(forwarding.original_path) {
                headers.insert("x-forwarded-path", value);
            }
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
    headers.insert("x-correlationid", forwarding.correlation_id.clone());
}

/// Applies the response policy to the headers that go back to the client.
pub fn downstream_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

/// Removes the cookies for which `strip` is true from every `Cookie` header; drops the header when
/// nothing is left.
pub fn strip_cookies(headers: &mut HeaderMap, strip: impl Fn(&str) -> bool) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let mut kept: Vec<&str> = Vec::new();
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    for value in &values {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split('=').next().unwrap_or("").trim();
            if !strip(name) {
                kept.push(pair);
            }
        }
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// The value of cookie `name` in the request, if present (first occurrence).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("X-Hop, keep-alive"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("X-Stay", HeaderValue::from_static("1"));
        headers.insert("Keep-Alive", HeaderValue::from_static("timeout=5"));
        remove_hop_by_hop(&mut headers);
        assert!(headers.get("x-hop").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get("connection").is_none());
        assert_eq!(headers.get("x-stay").unwrap(), "1");
    }

    #[test]
    fn cookies_are_stripped_by_name() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("JSESSIONID=abc; a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2; JSESSIONID=def"));
        strip_cookies(&mut headers, |name| name == "JSESSIONID");
        assert_eq!(headers.get("cookie").unwrap(), "a=1; b=2");
        assert_eq!(cookie(&headers, "b"), Some("2"));
        strip_cookies(&mut headers, |_| true);
        assert!(headers.get("cookie").is_none());
    }
}
