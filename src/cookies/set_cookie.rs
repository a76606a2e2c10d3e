//! `Set-Cookie` values for the router's own cookies, built through the `cookie` crate with the
//! flags the security rules require.

use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, SameSite};
use http::header::{HeaderMap, HeaderValue};
use regex::Regex;

/// `COOKIES.Partitioned`: when the router's cookies carry `Partitioned` (CHIPS), so that a browser
/// that blocks third-party cookies still keeps them for an app embedded in another site.
#[derive(Debug, Clone, Default)]
pub enum Partitioning {
    /// Never (the default).
    #[default]
    Never,
    /// On every cookie (`"Partitioned": true`).
    Always,
    /// For browsers whose `User-Agent` matches `supported` (any, when absent) and not
    /// `unsupported`, and for requests whose `Sec-Fetch-Storage-Access` is `none` or `inactive`.
    Agents {
        supported: Option<Regex>,
        unsupported: Option<Regex>,
    },
}

impl Partitioning {
    /// Whether the cookies of the answer to a request with `headers` are partitioned.
    pub fn applies(&self, headers: &HeaderMap) -> bool {
        match self {
            Partitioning::Never => false,
            Partitioning::Always => true,
            Partitioning::Agents { supported, unsupported } => {
                // The browser says it keeps cookies apart for this embedding: partition them.
                let storage_access_off = headers
                    .get("sec-fetch-storage-access")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("inactive"));
                if storage_access_off {
                    return true;
                }
                let agent = headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                supported.as_ref().is_none_or(|regex| regex.is_match(agent))
                    && !unsupported.as_ref().is_some_and(|regex| regex.is_match(agent))
            }
        }
    }
}

/// Flags of the router's cookies for one answer.
#[derive(Debug, Clone, Copy)]
pub struct CookieFlags<'a> {
    /// `Secure` (also added for `SameSite=None` and partitioned cookies, which need it).
    pub secure: bool,
    /// `SameSite`: `None`, `Lax` or `Strict`.
    pub same_site: &'a str,
    /// `Partitioned`.
    pub partitioned: bool,
}

/// One cookie and its attributes; always `Path=/`.
pub struct CookieSpec<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub max_age: Option<u64>,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: &'a str,
    pub partitioned: bool,
}

impl CookieSpec<'_> {
    /// The header value.
    pub fn header(&self) -> HeaderValue {
        let mut cookie = Cookie::new(self.name, self.value);
        cookie.set_path("/");
        if let Some(max_age) = self.max_age {
            cookie.set_max_age(Duration::seconds(i64::try_from(max_age).unwrap_or(i64::MAX)));
            if max_age == 0 {
                cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
            }
        }
        if self.http_only {
            cookie.set_http_only(true);
        }
        let same_site = same_site(self.same_site);
        // SameSite=None is only honoured together with Secure, and so is Partitioned.
        cookie.set_secure(self.secure || same_site == SameSite::None || self.partitioned);
        cookie.set_same_site(same_site);
        if self.partitioned {
            cookie.set_partitioned(true);
        }
        HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static("invalid=; Max-Age=0"))
    }
}

/// A cookie that deletes `name` (its partitioned copy when `flags` say so).
pub fn deletion(name: &str, flags: &CookieFlags<'_>) -> HeaderValue {
    CookieSpec {
        name,
        value: "",
        max_age: Some(0),
        http_only: true,
        secure: flags.secure,
        same_site: flags.same_site,
        partitioned: flags.partitioned,
    }
    .header()
}

fn same_site(text: &str) -> SameSite {
    match text {
        "None" => SameSite::None,
        "Strict" => SameSite::Strict,
        _ => SameSite::Lax,
    }
}

#[cfg(test)]
mod tests;
