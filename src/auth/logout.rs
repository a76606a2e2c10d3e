//! Central logout (`logout.logoutEndpoint`) and the backend logout calls made when a session ends,
//! by logout or by idle timeout. Backends get the user's bearer token and their own session
//! cookies — never the router's session cookie.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::Response;

use super::{Auth, Error, Origin};
use crate::body::{self, Body};
use crate::config::Config;
use crate::cookies::{cookie_bytes, deletion};
use crate::proxy::call::call;
use crate::proxy::Upstream;
use crate::session::{Session, SessionId};

/// Calls every `destinations.<name>.logoutPath` for `session`, concurrently, each bounded by its
/// destination's timeout. Failures are logged; logout proceeds regardless.
pub async fn call_backends(config: &Config, upstream: &Upstream, session: &Session) {
    let calls = config.backend_logout.iter().filter_map(|logout| {
        let destination = config.destination(&logout.destination)?.clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, session.access_token.header().clone());
        let cookies: Vec<String> = session
            .backend_cookies
            .iter()
            .filter(|(dest, _, _)| *dest == logout.destination)
            .map(|(_, name, value)| format!("{name}={value}"))
            .collect();
        if let Ok(value) = HeaderValue::from_str(&cookies.join("; ")) {
            if !cookies.is_empty() {
                headers.insert(header::COOKIE, value);
            }
        }
        let method = logout.method.clone();
        let path = logout.path.clone();
        Some(async move {
            match call(upstream, &destination, method, &path, headers).await {
                Ok(status) => tracing::info!(destination = %destination.name, %status, "backend logout called"),
                Err(error) => tracing::warn!(destination = %destination.name, error = %error, "backend logout failed"),
            }
        })
    });
    futures_util::future::join_all(calls).await;
}

/// Runs the backend logout calls in the background.
pub fn spawn_backend_logout(config: Arc<Config>, upstream: Upstream, session: Arc<Session>) {
    if config.backend_logout.is_empty() {
        return;
    }
    tokio::spawn(async move { call_backends(&config, &upstream, &session).await });
}

/// Where the browser goes after logout: XSUAA's `logout.do`, with `redirect` set to the absolute
/// logout page (the request's query appended) when one is configured.
pub fn idp_logout_url(
    idp_url: &str,
    clientid: &str,
    logout_page: Option<&str>,
    own_origin: &str,
    query: Option<&str>,
) -> String {
    let base = format!("{}/logout.do", idp_url.trim_end_matches('/'));
    let Some(page) = logout_page else {
        return base;
    };
    let mut target = if page.starts_with("http://") || page.starts_with("https://") {
        page.to_string()
    } else {
        format!("{own_origin}{page}")
    };
    let forwarded: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key != "skip-redirect")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !forwarded.is_empty() {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        serializer.extend_pairs(forwarded);
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(&serializer.finish());
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("redirect", &target)
        .append_pair("client_id", clientid);
    format!("{base}?{}", query.finish())
}

/// The answer to a logout: a redirect (GET), or for POST a small page whose body is the target
/// (as the reference does), with the session cookie deleted either way.
pub fn respond(target: Option<&str>, post: bool, deletion: HeaderValue) -> Response<Body> {
    let mut response = match (target, post) {
        (None, _) => Response::new(body::empty()),
        (Some(target), true) => {
            let mut response = Response::new(body::full(target.to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        (Some(target), false) => body::found(target),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.append(header::SET_COOKIE, deletion);
    response
}

impl Auth {
    /// The logout endpoint: ends the session of this request (if any) and answers as the
    /// reference does.
    ///
    /// # Errors
    /// [`Error::LogoutMethod`], [`Error::Csrf`], [`Error::Store`].
    pub async fn logout(
        &self,
        parts: &Parts,
        origin: &Origin<'_>,
        config: &Arc<crate::config::Config>,
        upstream: &crate::proxy::Upstream,
    ) -> Result<Response<Body>, Error> {
        let Some(logout_config) = &config.logout else {
            return Err(Error::LogoutMethod);
        };
        let post = logout_config.method == crate::config::LogoutMethod::Post;
        let current = match cookie_bytes(&parts.headers, &self.settings.session_cookie).and_then(SessionId::parse) {
            Some(id) => self
                .store
                .load(&id)
                .await?
                .filter(|session| self.session_fits(session, origin.tenant))
                .map(|session| (id, session)),
            None => None,
        };
        let fetch = parts
            .headers
            .get(crate::auth::csrf::X_CSRF_TOKEN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("fetch"));
        match (&parts.method, post) {
            (&http::Method::GET, false) => {}
            (&http::Method::GET, true) if fetch => {
                // The token fetch for a POST logout: 200, empty, with the session's token.
                let mut response = Response::new(crate::body::empty());
                if let Some((id, session)) = &current {
                    if let Some(token) = self.csrf(parts, id, session, origin).await? {
                        if let Ok(value) = HeaderValue::from_str(&token) {
                            response.headers_mut().insert(crate::auth::csrf::X_CSRF_TOKEN, value);
                        }
                    }
                }
                return Ok(response);
            }
            (&http::Method::POST, true) => {
                if logout_config.csrf_protection {
                    if let Some((id, session)) = &current {
                        self.csrf(parts, id, session, origin).await?;
                    }
                }
            }
            _ => return Err(Error::LogoutMethod),
        }
        if let Some((id, _)) = &current {
            if let Some(session) = self.store.remove(id).await? {
                spawn_backend_logout(config.clone(), upstream.clone(), session);
            }
            tracing::info!("logout: session ended");
        }
        let flags = self.flags(&parts.headers, origin);
        let deletion = deletion(&self.settings.session_cookie, &flags);
        let skip = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .any(|(key, value)| key == "skip-redirect" && (value.is_empty() || value == "true"));
        if skip {
            return Ok(respond(None, post, deletion));
        }
        let own = self.own_origin(&parts.headers, origin)?;
        let target = idp_logout_url(
            &self.idp_url(origin.tenant),
            &self.credentials.clientid,
            logout_config.page.as_deref(),
            &own,
            parts.uri.query(),
        );
        Ok(respond(Some(&target), post, deletion))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_url_carries_the_absolute_page_and_query() {
        let url = idp_logout_url(
            "https://idp.example/",
            "sb-app!t1",
            Some("/logout-page.html"),
            "http://127.0.0.1:5000",
            Some("siteId=3&skip-redirect"),
        );
        assert_eq!(
            url,
            "https://idp.example/logout.do?redirect=http%3A%2F%2F127.0.0.1%3A5000%2Flogout-page.html%3FsiteId%3D3&client_id=sb-app%21t1"
        );
        assert_eq!(
            idp_logout_url("https://idp.example", "c", None, "x", None),
            "https://idp.example/logout.do"
        );
    }
}
