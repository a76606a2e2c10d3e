//! Backend session cookies, kept server-side as the reference does: a backend `Set-Cookie` without
//! `Expires`/`Max-Age` goes into the router session (per destination) instead of the browser, and
//! is sent back to that destination on later requests. Persistent cookies reach the browser.

use http::header::{self, HeaderMap, HeaderValue};

use crate::session::Session;

/// Removes the backend's session cookies from `headers` and returns them as (name, value).
pub fn take_session_cookies(headers: &mut HeaderMap) -> Vec<(String, String)> {
    if !headers.contains_key(header::SET_COOKIE) {
        return Vec::new();
    }
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for value in headers.get_all(header::SET_COOKIE) {
        let Ok(text) = value.to_str() else {
            kept.push(value.clone());
            continue;
        };
        let mut parts = text.split(';');
        let pair = parts.next().unwrap_or("");
        let persistent = parts.any(|attribute| {
            let name = attribute.trim().split('=').next().unwrap_or("").trim();
            name.eq_ignore_ascii_case("max-age") || name.eq_ignore_ascii_case("expires")
        });
        match pair.split_once('=') {
            Some((name, cookie_value)) if !persistent && !name.trim().is_empty() => {
                taken.push((name.trim().to_string(), cookie_value.trim().to_string()));
            }
            _ => kept.push(value.clone()),
        }
    }
    if taken.is_empty() {
        return taken;
    }
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
    taken
}

/// The session with `cookies` of `destination` stored (same names replaced).
pub fn with_cookies(session: &Session, destination: &str, cookies: Vec<(String, String)>) -> Session {
    let mut updated = session.clone();
    for (name, value) in cookies {
        updated
            .backend_cookies
            .retain(|(dest, existing, _)| !(dest == destination && *existing == name));
        updated.backend_cookies.push((destination.to_string(), name, value));
    }
    updated
}

/// Appends the stored cookies of `destination` to the request's `Cookie` header.
pub fn add_to_request(headers: &mut HeaderMap, session: &Session, destination: &str) {
    let stored: Vec<String> = session
        .backend_cookies
        .iter()
        .filter(|(dest, _, _)| dest == destination)
        .map(|(_, name, value)| format!("{name}={value}"))
        .collect();
    if stored.is_empty() {
        return;
    }
    let mut all: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect();
    all.extend(stored);
    if let Ok(value) = HeaderValue::from_str(&all.join("; ")) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_taken_persistent_ones_kept() {
        let mut headers = HeaderMap::new();
        headers.append(header::SET_COOKIE, HeaderValue::from_static("BSESSION=one; Path=/"));
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("BPERSIST=two; Max-Age=3600; Path=/"),
        );
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("OLD=x; Expires=Thu, 01 Jan 2037 00:00:00 GMT"),
        );
        let taken = take_session_cookies(&mut headers);
        assert_eq!(taken, vec![("BSESSION".to_string(), "one".to_string())]);
        let left: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(left.len(), 2);
    }
}
