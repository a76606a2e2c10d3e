//! Web origins (`scheme://host[:port]`): parsing the values browsers send in `Origin`, the router's
//! own origin as the browser sees it, and the allowlists of `CJ_PROTECT_WHITELIST`,
//! `WS_ALLOWED_ORIGINS` and CORS `allowedOrigin`.

use http::header::{self, HeaderMap};

/// A web origin, normalised: lowercase scheme and host, the port always explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl WebOrigin {
    /// Parses an origin as browsers serialise it: `http(s)://host[:port]`, nothing after it but an
    /// optional `/`. `null`, user info, paths, queries and other schemes are not origins.
    pub fn parse(text: &str) -> Option<WebOrigin> {
        // `Url::parse` forgives surrounding blanks and backslashes; an origin must not need that.
        if text.len() > 2048 || text.bytes().any(|b| b <= b' ' || b == b'\\' || b >= 0x7f) {
            return None;
        }
        let url = url::Url::parse(text).ok()?;
        let bare = url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        let after_authority = text.split_once("://")?.1;
        let path_given = after_authority.find('/').map(|at| &after_authority[at..]);
        if !bare || !matches!(path_given, None | Some("/")) {
            return None;
        }
        WebOrigin::of_url(&url)
    }

    /// The origin of an absolute `http(s)` URL (its path is ignored).
    pub fn of_url(url: &url::Url) -> Option<WebOrigin> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        Some(WebOrigin {
            scheme: scheme.to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

impl std::fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let default = matches!((self.scheme.as_str(), self.port), ("http", 80) | ("https", 443));
        if default {
            write!(f, "{}://{}", self.scheme, self.host)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Why the router's own origin cannot be told from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OwnOriginError {
    #[error("x-forwarded-proto must be http or https")]
    ForwardedProto,
    #[error("no valid Host header")]
    Host,
}

/// The router's origin as the browser sees it: `APPROUTER_URL` (or the application URI) when
/// configured, else `X-Forwarded-Proto`/`X-Forwarded-Host` when `trust_forwarded` (a trusted proxy
/// in front, `CLIENT_IP_FORWARDED_HOPS` ≥ 1, set them), else the connection's scheme and `Host`;
/// with `custom_host` (`EXTERNAL_REVERSE_PROXY`), `X-Custom-Host` before any other host. The same
/// sources the login redirect URI is built from.
///
/// # Errors
/// An `X-Forwarded-Proto` other than http/https, or no usable host.
pub fn own_origin(
    headers: &HeaderMap,
    scheme: &str,
    external_url: Option<&str>,
    trust_forwarded: bool,
    custom_host: bool,
) -> Result<WebOrigin, OwnOriginError> {
    if let Some(url) = external_url {
        // Checked at start-up; a value that does not parse leaves only the request to go by.
        if let Some(origin) = url::Url::parse(url).ok().as_ref().and_then(WebOrigin::of_url) {
            return Ok(origin);
        }
    }
    // Without a trusted proxy in front, these are the client's word: it must not choose the host
    // the router believes it serves.
    let forwarded = |name: &str| headers.get(name).filter(|_| trust_forwarded);
    let scheme = match forwarded("x-forwarded-proto") {
        Some(value) => {
            let first = value.to_str().map_err(|_| OwnOriginError::ForwardedProto)?;
            match first
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "https" => "https",
                "http" => "http",
                _ => return Err(OwnOriginError::ForwardedProto),
            }
        }
        None => scheme,
    };
    let custom = headers.get("x-custom-host").filter(|_| custom_host);
    let host = custom
        .or_else(|| forwarded("x-forwarded-host"))
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(|h| h.split(',').next().unwrap_or("").trim())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
        })
        .ok_or(OwnOriginError::Host)?;
    WebOrigin::parse(&format!("{scheme}://{host}")).ok_or(OwnOriginError::Host)
}

/// Which hosts an allowlist entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: every host.
    Any,
    /// `*.example.com`: every subdomain of `example.com` (not `example.com` itself); holds
    /// `.example.com`.
    Subdomains(String),
    /// Exactly this host.
    Exact(String),
}

/// One allowlist entry `{protocol?, host, port?}`; a missing protocol or port matches any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    pub protocol: Option<String>,
    pub host: HostPattern,
    pub port: Option<u16>,
}

impl OriginPattern {
    /// Builds an entry from its parts as configured; `host` may start with `*.` or be `*`.
    ///
    /// # Errors
    /// A sentence saying what is wrong with the protocol or host.
    pub fn new(protocol: Option<&str>, host: &str, port: Option<u16>) -> Result<OriginPattern, String> {
        let protocol = match protocol {
            Some(text) => {
                let scheme = text.trim_end_matches("://").trim_end_matches(':').to_ascii_lowercase();
                if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
                    return Err(format!("protocol {text:?} is not a URI scheme"));
                }
                Some(scheme)
            }
            None => None,
        };
        let host = host.to_ascii_lowercase();
        let valid = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid(domain) {
                return Err(format!("host {host:?} is not a host name or *.domain"));
            }
            HostPattern::Subdomains(format!(".{domain}"))
        } else if valid(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(format!("host {host:?} is not a host name or *.domain"));
        };
        Ok(OriginPattern { protocol, host, port })
    }

    /// True when `origin` is covered by this entry.
    pub fn matches(&self, origin: &WebOrigin) -> bool {
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => {
                origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
            }
            HostPattern::Exact(host) => origin.host == *host,
        };
        host && self.protocol.as_ref().is_none_or(|p| *p == origin.scheme) && self.port.is_none_or(|p| p == origin.port)
    }
}

/// A list of [`OriginPattern`]s; an origin is allowed when any entry matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    pub entries: Vec<OriginPattern>,
}

impl Allowlist {
    /// True when some entry covers `origin`.
    pub fn matches(&self, origin: &WebOrigin) -> bool {
        self.entries.iter().any(|entry| entry.matches(origin))
    }
}

#[cfg(test)]
mod tests;
