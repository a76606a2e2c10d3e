//! `Set-Cookie` values for the router's own cookies, with the flags the security rules require.

use http::HeaderValue;

/// Flags of one cookie.
pub struct CookieSpec<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub max_age: Option<u64>,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: &'a str,
}

impl CookieSpec<'_> {
    /// The header value.
    pub fn header(&self) -> HeaderValue {
        let mut text = format!("{}={}; Path=/", self.name, self.value);
        if let Some(max_age) = self.max_age {
            text.push_str(&format!("; Max-Age={max_age}"));
            if max_age == 0 {
                text.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
            }
        }
        if self.http_only {
            text.push_str("; HttpOnly");
        }
        // SameSite=None is only honoured together with Secure.
        if self.secure || self.same_site == "None" {
            text.push_str("; Secure");
        }
        text.push_str("; SameSite=");
        text.push_str(self.same_site);
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("invalid=; Max-Age=0"))
    }
}

/// A cookie that deletes `name`.
pub fn deletion(name: &str, secure: bool, same_site: &str) -> HeaderValue {
    CookieSpec {
        name,
        value: "",
        max_age: Some(0),
        http_only: true,
        secure,
        same_site,
    }
    .header()
}
