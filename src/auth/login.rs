//! The OAuth 2.0 authorization-code flow: the redirect to XSUAA (state, PKCE S256, exact
//! redirect URI) and the callback (single-use state bound to the browser, code exchange, a new
//! session).

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::Response;

use crate::body::{self, Body};
use crate::cookies::{self, CookieFlags, CookieSpec};
use crate::session::LoginAttempt;
use crate::util::random_bytes;

/// Name of the cookie that binds login attempts to one browser.
pub fn binding_cookie(session_cookie: &str) -> String {
    format!("{session_cookie}{BINDING_SUFFIX}")
}

/// What the binding cookie's name adds to the session cookie's.
pub const BINDING_SUFFIX: &str = "_STATE";

/// Name of the cookie in which the login page keeps the URL fragment.
pub const FRAGMENT_COOKIE: &str = "fragmentAfterLogin";

/// 32 random bytes as base64url: states, verifiers, binding nonces.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// How the authorize URL names the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpParameter {
    /// `idp=<origin>`, as XSUAA on Cloud Foundry takes it.
    Idp,
    /// `login_hint={"origin":"<origin>"}`, as the UAA of XS advanced takes it.
    LoginHint,
}

/// The authorize URL for one attempt; `idp` is the identity provider's origin key, if one is
/// chosen, named as `parameter` says.
pub fn authorize_url(
    base: &str,
    clientid: &str,
    attempt: &LoginAttempt,
    state: &str,
    idp: Option<(&str, IdpParameter)>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", clientid)
        .append_pair("redirect_uri", &attempt.redirect_uri)
        .append_pair("state", state)
        .append_pair("code_challenge", &pkce_challenge(&attempt.code_verifier))
        .append_pair("code_challenge_method", "S256");
    match idp {
        Some((origin, IdpParameter::Idp)) => {
            query.append_pair("idp", origin);
        }
        Some((origin, IdpParameter::LoginHint)) => {
            query.append_pair("login_hint", &serde_json::json!({ "origin": origin }).to_string());
        }
        None => {}
    }
    format!("{}/oauth/authorize?{}", base.trim_end_matches('/'), query.finish())
}

/// Only same-origin relative paths: a single leading `/`, no `\`, no control characters.
pub fn safe_return_path(candidate: &str) -> Option<&str> {
    let ok = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.contains('\\')
        && !candidate.chars().any(|c| c.is_control())
        && candidate.len() <= 4096;
    ok.then_some(candidate)
}

/// A URL fragment from the fragment cookie, if it is a harmless one.
pub fn safe_fragment(cookie: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(cookie).decode_utf8().ok()?;
    let ok = decoded.starts_with('#')
        && decoded.len() > 1
        && decoded.len() <= 2048
        && !decoded
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '<' || c == '>' || c == '\\');
    ok.then(|| decoded.into_owned())
}

/// The answer that sends the browser to XSUAA: a small page that keeps the URL fragment (default),
/// or a plain 302 (`PRESERVE_FRAGMENT=false`).
pub fn redirect_response(
    authorize_url: &str,
    preserve_fragment: bool,
    binding_name: &str,
    binding_value: &str,
    ttl_secs: u64,
    flags: &CookieFlags<'_>,
) -> Response<Body> {
    let mut response = if preserve_fragment {
        let nonce = base64::engine::general_purpose::STANDARD.encode(random_bytes::<16>());
        // JSON string escaping makes the URL a safe JS literal; `<` is escaped so the script
        // element cannot be closed from inside it.
        let url_js = serde_json::to_string(authorize_url)
            .unwrap_or_else(|_| "\"/\"".into())
            .replace('<', "\\u003c");
        let url_html = html_escape(authorize_url);
        let page = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Signing in</title>\
             <script nonce=\"{nonce}\">(function(){{var h=location.hash;\
             if(h){{document.cookie=\"{FRAGMENT_COOKIE}=\"+encodeURIComponent(h)+\";path=/;max-age={ttl_secs};samesite=lax\";}}\
             location.replace({url_js});}})();</script></head>\
             <body><noscript><a href=\"{url_html}\">Continue to sign in</a></noscript></body></html>"
        );
        let mut response = Response::new(body::full(page));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(csp) = HeaderValue::from_str(&format!("script-src 'nonce-{nonce}'; frame-ancestors *")) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    } else {
        body::found(authorize_url)
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.append(
        header::SET_COOKIE,
        CookieSpec {
            name: binding_name,
            value: binding_value,
            max_age: Some(ttl_secs),
            http_only: true,
            secure: flags.secure,
            same_site: "Lax",
            partitioned: flags.partitioned,
        }
        .header(),
    );
    response
}

/// The answer after a successful callback: the new session cookie, the fragment cookie deleted,
/// and a 302 back to where the user was going.
pub fn success_response(
    location: &str,
    session_cookie: &str,
    session_value: &str,
    flags: &CookieFlags<'_>,
) -> Response<Body> {
    let mut response = body::found(location);
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.append(
        header::SET_COOKIE,
        CookieSpec {
            name: session_cookie,
            value: session_value,
            max_age: None,
            http_only: true,
            secure: flags.secure,
            same_site: flags.same_site,
            partitioned: flags.partitioned,
        }
        .header(),
    );
    // The binding cookie stays (it expires with its Max-Age): other tabs of this browser may still
    // be logging in with it, and their callbacks must not fail once this one has succeeded.
    headers.append(
        header::SET_COOKIE,
        // The login page set it from script, unpartitioned and `Lax`: that is the one to delete.
        cookies::deletion(
            FRAGMENT_COOKIE,
            &CookieFlags {
                same_site: "Lax",
                partitioned: false,
                ..*flags
            },
        ),
    );
    response
}

/// True when the request is a browser navigation that may be redirected to the login; XHR, fetch
/// and every method but GET get 401 instead, and so does a websocket handshake (an `Upgrade`
/// request cannot follow a redirect to the login).
pub fn is_navigation(method: &http::Method, headers: &HeaderMap) -> bool {
    if method != http::Method::GET || headers.contains_key(header::UPGRADE) {
        return false;
    }
    if headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
    {
        return false;
    }
    match headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok()) {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => true,
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_are_same_origin_only() {
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a\nb",
            "\\\\evil",
        ] {
            assert!(safe_return_path(bad).is_none(), "{bad}");
        }
        for good in ["/", "/app/index.html?x=1", "/a/%2F%2Fb"] {
            assert_eq!(safe_return_path(good), Some(good));
        }
    }

    #[test]
    fn the_identity_provider_is_a_login_hint_on_xs_advanced() {
        let attempt = LoginAttempt {
            browser_binding: "b".into(),
            code_verifier: "v".into(),
            redirect_uri: "https://app.example/login/callback".into(),
            return_to: "/".into(),
            tenant: None,
        };
        let url = |idp| authorize_url("https://uaa.example", "client", &attempt, "s", idp);
        let query = |url: String| -> Vec<(String, String)> {
            let query = url
                .split_once('?')
                .map(|(_, query)| query.to_string())
                .unwrap_or_default();
            form_urlencoded::parse(query.as_bytes()).into_owned().collect()
        };
        let cf = query(url(Some(("corp-ids", IdpParameter::Idp))));
        assert!(cf.contains(&("idp".into(), "corp-ids".into())), "{cf:?}");
        assert!(!cf.iter().any(|(key, _)| key == "login_hint"));
        let xsa_url = url(Some(("corp-ids", IdpParameter::LoginHint)));
        assert!(
            xsa_url.contains("&login_hint=%7B%22origin%22%3A%22corp-ids%22%7D"),
            "{xsa_url}"
        );
        let xsa = query(xsa_url);
        assert!(
            xsa.contains(&("login_hint".into(), r#"{"origin":"corp-ids"}"#.into())),
            "{xsa:?}"
        );
        assert!(!xsa.iter().any(|(key, _)| key == "idp"));
        // A quote in the origin stays inside the JSON string.
        let quoted = query(url(Some((r#"a"b"#, IdpParameter::LoginHint))));
        assert!(
            quoted.contains(&("login_hint".into(), r#"{"origin":"a\"b"}"#.into())),
            "{quoted:?}"
        );
        assert!(!query(url(None))
            .iter()
            .any(|(key, _)| key == "idp" || key == "login_hint"));
    }

    #[test]
    fn fragments_are_checked() {
        assert_eq!(safe_fragment("%23section-1").as_deref(), Some("#section-1"));
        assert!(safe_fragment("nohash").is_none());
        assert!(safe_fragment("%23%3Cscript%3E").is_none());
        assert!(safe_fragment("%23").is_none());
    }

    #[test]
    fn pkce_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn navigation_detection() {
        let mut headers = HeaderMap::new();
        assert!(is_navigation(&http::Method::GET, &headers));
        assert!(!is_navigation(&http::Method::POST, &headers));
        headers.insert("x-requested-with", HeaderValue::from_static("XMLHttpRequest"));
        assert!(!is_navigation(&http::Method::GET, &headers));
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(!is_navigation(&http::Method::GET, &headers));
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(!is_navigation(&http::Method::GET, &headers));
    }
}
