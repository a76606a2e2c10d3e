//! The browser- and resource-server-facing endpoints: authorize, JWKS,
//! userinfo, logout and the OpenID discovery document.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};
use url::{Host, Url};

use crate::http::{self as resp, Resp};
use crate::jwt;
use crate::state::{PendingCode, State};
use crate::util::{self, lock};
use crate::zone::Zone;

/// Authorization codes are short-lived, as in UAA.
const CODE_LIFETIME_SECS: u64 = 300;

/// Decodes a query string; the first occurrence of a key wins.
pub(crate) fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params.entry(key.into_owned()).or_insert(value.into_owned());
    }
    params
}

/// Accepts absolute http(s) URLs on loopback hosts only: the development
/// stand-in for XSUAA's configured (wildcard) redirect-uris. Names under
/// `localhost` are loopback (RFC 6761 section 6.3), so tenant hosts of a
/// router such as `acme.localhost` qualify.
fn loopback_url(raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    let loopback = match url.host()? {
        Host::Domain(domain) => domain == "localhost" || domain.ends_with(".localhost"),
        Host::Ipv4(ip) => ip == Ipv4Addr::LOCALHOST,
        Host::Ipv6(ip) => ip == Ipv6Addr::LOCALHOST,
    };
    let scheme_ok = matches!(url.scheme(), "http" | "https");
    (loopback && scheme_ok && url.fragment().is_none() && url.username().is_empty()).then_some(url)
}

/// PKCE code challenges are BASE64URL(SHA-256), i.e. 43 unreserved characters;
/// RFC 7636 allows 43..=128.
fn valid_challenge(challenge: &str) -> bool {
    (43..=128).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `GET /oauth/authorize`: logs the zone's first user in without a form.
pub(crate) fn authorize(state: &State, zone: &Zone, query: Option<&str>) -> Resp {
    state.count(|s| s.authorize_requests += 1);
    let params = parse_query(query);
    let get = |key: &str| params.get(key).map(String::as_str);
    // Client and redirect URI are checked before anything is redirected, so an
    // unvalidated redirect_uri never receives a response.
    if get("client_id") != Some(state.config.client_id.as_str()) {
        return resp::html(StatusCode::BAD_REQUEST, "Invalid request", "unknown client_id");
    }
    let (Some(raw_redirect), Some(redirect)) = (get("redirect_uri"), get("redirect_uri").and_then(loopback_url)) else {
        return resp::html(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "redirect_uri must be an absolute http(s) URL on 127.0.0.1, [::1], localhost or a name under it",
        );
    };
    let back = |pairs: &[(&str, &str)]| {
        let mut url = redirect.clone();
        {
            let mut query = url.query_pairs_mut();
            for (key, value) in pairs {
                query.append_pair(key, value);
            }
            if let Some(st) = get("state") {
                query.append_pair("state", st);
            }
        }
        resp::redirect(url.as_str())
    };
    if get("response_type") != Some("code") {
        return back(&[
            ("error", "unsupported_response_type"),
            ("error_description", "only response_type=code is supported"),
        ]);
    }
    if state.config.deny_login {
        return back(&[
            ("error", "access_denied"),
            ("error_description", "the user denied the login"),
        ]);
    }
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, _) => None,
        (Some(challenge), Some("S256")) if valid_challenge(challenge) => Some(challenge.to_string()),
        (Some(_), Some("S256")) => {
            return back(&[
                ("error", "invalid_request"),
                ("error_description", "malformed code_challenge"),
            ]);
        }
        (Some(_), _) => {
            return back(&[
                ("error", "invalid_request"),
                ("error_description", "code_challenge_method must be S256"),
            ]);
        }
    };
    let Ok(code) = util::random_id() else {
        return resp::html(StatusCode::INTERNAL_SERVER_ERROR, "Error", "no randomness");
    };
    let now = util::now_secs();
    {
        let mut codes = lock(&state.codes);
        codes.retain(|_, pending| pending.expires_at > now);
        codes.insert(
            code.clone(),
            PendingCode {
                zone_id: zone.zone_id.clone(),
                client_id: state.config.client_id.clone(),
                redirect_uri: raw_redirect.to_string(),
                code_challenge,
                user: zone.login_user().clone(),
                expires_at: now + CODE_LIFETIME_SECS,
            },
        );
    }
    back(&[("code", &code)])
}

/// `GET /token_keys[?zid=]`: the JWKS with PEM `value`s of the zone `zid`
/// (query or `X-Zid` header) names, else of the host's `zone`; the bare
/// `uaadomain` host has none and needs a zid.
pub(crate) fn token_keys(state: &State, zone: Option<&Zone>, query: Option<&str>, headers: &HeaderMap) -> Resp {
    let params = parse_query(query);
    let header_zid = headers.get("x-zid").and_then(|v| v.to_str().ok());
    let query_zid = params.get("zid").map(String::as_str);
    let asked = query_zid.or(header_zid).or(zone.map(|z| z.zone_id.as_str()));
    state.count(|s| {
        s.jwks_requests += 1;
        if let Some(zid) = asked {
            *s.jwks_requests_by_zid.entry(zid.to_string()).or_default() += 1;
        }
    });
    let invalid = |description: String| {
        resp::json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": description}),
        )
    };
    // Both a query and a header zid must name the same, known zone.
    let mut chosen: Option<&Zone> = None;
    for zid in query_zid.into_iter().chain(header_zid) {
        match state.zone_by_id(zid) {
            Some(found) if chosen.is_none_or(|c| c.zone_id == found.zone_id) => chosen = Some(found),
            _ => return invalid(format!("unknown zid {zid}")),
        }
    }
    match chosen.or(zone) {
        Some(zone) => resp::json(StatusCode::OK, &lock(&zone.keys).jwks()),
        None => invalid("zid is required".to_string()),
    }
}

/// `GET /userinfo` with a bearer access token issued in this zone.
pub(crate) fn userinfo(state: &State, zone: &Zone, headers: &HeaderMap) -> Resp {
    state.count(|s| s.userinfo_requests += 1);
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let claims = token.and_then(|t| jwt::verify(&lock(&zone.keys), t));
    let Some(claims) = claims.filter(|c| c.get("user_name").is_some()) else {
        let mut denied = resp::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": "a valid user access token is required"}),
        );
        denied.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return denied;
    };
    if let Some(status) = *lock(&state.userinfo_failure) {
        return resp::json(status, &json!({"error": "server_error"}));
    }
    let text = |key: &str| claims[key].as_str().unwrap_or_default().to_string();
    let attributes = match &claims["xs.user.attributes"] {
        Value::Object(attributes) => Value::Object(attributes.clone()),
        _ => json!({}),
    };
    resp::json(
        StatusCode::OK,
        &json!({
            "user_id": claims["user_id"],
            "user_name": claims["user_name"],
            "given_name": claims["given_name"],
            "family_name": claims["family_name"],
            "email": claims["email"],
            "email_verified": true,
            "origin": claims["origin"],
            "zid": claims["zid"],
            "sub": claims["sub"],
            "name": format!("{} {}", text("given_name"), text("family_name")),
            "user_attributes": attributes,
        }),
    )
}

/// `GET /logout.do[?redirect=]`.
pub(crate) fn logout(state: &State, query: Option<&str>) -> Resp {
    state.count(|s| s.logout_requests += 1);
    match parse_query(query).get("redirect") {
        None => resp::html(StatusCode::OK, "Logged out", "You have been logged out"),
        Some(raw) => match loopback_url(raw) {
            Some(url) => resp::redirect(url.as_str()),
            None => resp::html(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "redirect must be an http(s) URL on a loopback host",
            ),
        },
    }
}

/// `GET /.well-known/openid-configuration`.
pub(crate) fn openid_configuration(zone: &Zone) -> Resp {
    let url = &zone.url;
    resp::json(
        StatusCode::OK,
        &json!({
            "issuer": format!("{url}/oauth/token"),
            "authorization_endpoint": format!("{url}/oauth/authorize"),
            "token_endpoint": format!("{url}/oauth/token"),
            "userinfo_endpoint": format!("{url}/userinfo"),
            "end_session_endpoint": format!("{url}/logout.do"),
            "jwks_uri": format!("{url}/token_keys"),
            "mtls_endpoint_aliases": {
                "token_endpoint": format!("{}/oauth/token", zone.cert_url),
                "authorization_endpoint": format!("{}/oauth/authorize", zone.cert_url),
            },
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "password",
                crate::token::JWT_BEARER,
            ],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "tls_client_auth"],
        }),
    )
}
