//! `POST /oauth/token`: client authentication (secret on `url`, X.509 on
//! `certurl`) of the XSUAA client and the service clients, and the
//! authorization_code, refresh_token, client_credentials, password and
//! jwt-bearer grants.

use std::collections::BTreeMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::config::User;
use crate::http::{self as resp, OAuthError, Resp};
use crate::jwt;
use crate::state::{Listener, RefreshGrant, ServiceClient, State, TokenRequestRecord};
use crate::util::{self, lock};
use crate::zone::Zone;

type Form = BTreeMap<String, String>;

/// The jwt-bearer grant (RFC 7523) XSUAA uses for user token exchange.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The client a token request authenticated as.
#[derive(Clone, Copy)]
enum Client<'a> {
    /// The application router's own client.
    Xsuaa,
    /// A bound service's client.
    Service(&'a ServiceClient),
}

/// Handles one token request; `client_cert` is the fingerprint of the TLS
/// client certificate, if the connection presented one.
pub(crate) fn token(
    state: &State,
    zone: &Zone,
    listener: Listener,
    host: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    client_cert: Option<&str>,
) -> Resp {
    let mut form = Form::new();
    for (key, value) in form_urlencoded::parse(body) {
        form.entry(key.into_owned()).or_insert(value.into_owned());
    }
    let basic = basic_credentials(headers);
    *lock(&state.last_token_request) = Some(TokenRequestRecord {
        listener: listener.name().to_string(),
        host: host.unwrap_or_default().to_string(),
        form: form.clone(),
        basic_auth_client: basic.as_ref().map(|(id, _)| id.clone()),
        client_cert_fingerprint: client_cert.map(str::to_string),
    });
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    state.count(|s| *s.token_requests_by_grant.entry(grant_type.clone()).or_default() += 1);

    let result = check_content_type(headers)
        .and_then(|()| authenticate_client(state, listener, &form, basic, client_cert))
        .and_then(|client| match (grant_type.as_str(), client) {
            ("client_credentials", Client::Xsuaa) => client_grant(state, zone),
            ("client_credentials", Client::Service(service)) => service_client_grant(state, zone, service),
            (JWT_BEARER, client) => jwt_bearer_grant(state, zone, client, &form),
            ("authorization_code" | "refresh_token" | "password", Client::Service(_)) => Err(
                OAuthError::unauthorized_client("service clients only use client_credentials and jwt-bearer"),
            ),
            ("authorization_code", Client::Xsuaa) => code_grant(state, zone, &form),
            ("refresh_token", Client::Xsuaa) => refresh_grant(state, zone, &form),
            ("password", Client::Xsuaa) => password_grant(state, zone, &form),
            ("", _) => Err(OAuthError::invalid_request("grant_type is required")),
            (other, _) => Err(OAuthError::unsupported_grant_type(other)),
        });
    match result {
        Ok(body) => resp::json_no_store(StatusCode::OK, &body),
        Err(err) => {
            state.count(|s| s.token_requests_refused += 1);
            err.into_response()
        }
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), OAuthError> {
    match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(ct) if !ct.starts_with("application/x-www-form-urlencoded") => Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        )),
        _ => Ok(()),
    }
}

/// `Authorization: Basic` as RFC 6749 2.3.1 defines it: both parts are
/// form-urlencoded before base64, so they are percent-decoded here.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some((decode(id), decode(secret)))
}

fn authenticate_client<'a>(
    state: &'a State,
    listener: Listener,
    form: &Form,
    basic: Option<(String, String)>,
    client_cert: Option<&str>,
) -> Result<Client<'a>, OAuthError> {
    let config = &state.config;
    let form_client = form.get("client_id");
    let find = |id: &str| {
        if id == config.client_id {
            return Some(Client::Xsuaa);
        }
        state
            .service_clients
            .values()
            .find(|service| service.client_id == id)
            .map(Client::Service)
    };
    match listener {
        // The destination listener never routes here; refusing keeps the match total.
        Listener::Destination => Err(OAuthError::invalid_client("no token endpoint on this listener")),
        Listener::Url => {
            if config.client_secret.is_none() {
                return Err(OAuthError::invalid_client(
                    "this client authenticates with an X.509 certificate at certurl",
                ));
            }
            let (id, given) = match basic {
                Some((id, given)) if form_client.is_none_or(|c| *c == id) => (id, given),
                Some(_) => return Err(OAuthError::invalid_client("client_id differs from basic auth")),
                None => match (form_client, form.get("client_secret")) {
                    (Some(id), Some(given)) => (id.clone(), given.clone()),
                    _ => return Err(OAuthError::invalid_client("client authentication required")),
                },
            };
            let client = find(&id);
            let secret = match client {
                Some(Client::Xsuaa) => config.client_secret.as_deref(),
                Some(Client::Service(service)) => service.secret.as_deref(),
                None => None,
            };
            match (client, secret) {
                (Some(client), Some(secret))
                    if verify_slices_are_equal(given.as_bytes(), secret.as_bytes()).is_ok() =>
                {
                    Ok(client)
                }
                _ => Err(OAuthError::invalid_client("bad client credentials")),
            }
        }
        Listener::CertUrl => {
            let Some(fingerprint) = client_cert else {
                return Err(OAuthError::invalid_client("client certificate required"));
            };
            let Some(client) = form_client.and_then(|id| find(id)) else {
                return Err(OAuthError::invalid_client(
                    "client_id is missing or does not match the client certificate",
                ));
            };
            // Each client accepts only its own certificates: another client's
            // certificate from the same CA is refused.
            let accepted = match client {
                Client::Xsuaa => lock(&state.accepted_certs).contains(fingerprint),
                Client::Service(service) => lock(&service.accepted_certs).contains(fingerprint),
            };
            if !accepted {
                return Err(OAuthError::invalid_client(
                    "client certificate is not accepted for this client",
                ));
            }
            Ok(client)
        }
    }
}

fn required<'a>(form: &'a Form, key: &str) -> Result<&'a str, OAuthError> {
    form.get(key)
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request(format!("{key} is required")))
}

fn code_grant(state: &State, zone: &Zone, form: &Form) -> Result<Value, OAuthError> {
    let code = required(form, "code")?;
    // Removing before any other check makes every code single-use, even when
    // the redemption fails.
    let pending = lock(&state.codes)
        .remove(code)
        .ok_or_else(|| OAuthError::invalid_grant("invalid authorization code"))?;
    if pending.expires_at <= util::now_secs() {
        return Err(OAuthError::invalid_grant("authorization code expired"));
    }
    if pending.zone_id != zone.zone_id {
        return Err(OAuthError::invalid_grant("code was issued in another identity zone"));
    }
    if pending.client_id != state.config.client_id {
        return Err(OAuthError::invalid_grant("code was issued to another client"));
    }
    if form.get("redirect_uri") != Some(&pending.redirect_uri) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if let Some(challenge) = &pending.code_challenge {
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier required"))?;
        let computed = util::b64url(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
        if verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_err() {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
    }
    user_tokens(state, zone, &pending.user, "authorization_code")
}

fn refresh_grant(state: &State, zone: &Zone, form: &Form) -> Result<Value, OAuthError> {
    let token = required(form, "refresh_token")?;
    let grant = {
        let mut tokens = lock(&state.refresh_tokens);
        let grant = tokens
            .get(token)
            .cloned()
            .ok_or_else(|| OAuthError::invalid_grant("invalid refresh token"))?;
        if grant.expires_at <= util::now_secs() {
            tokens.remove(token);
            return Err(OAuthError::invalid_grant("refresh token expired"));
        }
        grant
    };
    if grant.client_id != state.config.client_id {
        return Err(OAuthError::invalid_grant("refresh token was issued to another client"));
    }
    if grant.zone_id != zone.zone_id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued in another identity zone",
        ));
    }
    user_tokens(state, zone, &grant.user, "refresh_token")
}

fn password_grant(state: &State, zone: &Zone, form: &Form) -> Result<Value, OAuthError> {
    let username = required(form, "username")?;
    let password = required(form, "password")?;
    let user = zone
        .users
        .iter()
        .find(|u| {
            u.user_name == username && verify_slices_are_equal(u.password.as_bytes(), password.as_bytes()).is_ok()
        })
        .ok_or_else(|| OAuthError::invalid_grant("bad credentials"))?;
    user_tokens(state, zone, user, "password")
}

fn client_grant(state: &State, zone: &Zone) -> Result<Value, OAuthError> {
    let lifetime = state.access_lifetime_secs();
    let jti = util::random_id()?;
    let claims = jwt::client_claims(&state.config, zone, util::now_secs(), lifetime, &jti);
    let key = lock(&zone.keys).current();
    Ok(json!({
        "access_token": jwt::sign(&key, &zone.url, &claims)?,
        "token_type": "bearer",
        "expires_in": lifetime,
        "scope": "uaa.resource",
        "jti": jti,
    }))
}

/// A client-credentials token for a service client, with its service scope.
fn service_client_grant(state: &State, zone: &Zone, service: &ServiceClient) -> Result<Value, OAuthError> {
    let scopes = vec!["uaa.resource".to_string(), service_scope(service)];
    issue_client_token(state, zone, &service.client_id, scopes)
}

/// `<xsappname>.<Service>.read`, the scope every token of a service client
/// carries.
fn service_scope(service: &ServiceClient) -> String {
    format!("{}.{}", service.xsappname, service.kind.scope())
}

/// A signed client-credentials token of `zone` for any client id, as the
/// token answer.
pub(crate) fn issue_client_token(
    state: &State,
    zone: &Zone,
    client_id: &str,
    scopes: Vec<String>,
) -> Result<Value, OAuthError> {
    issue_token(state, zone, client_id, scopes, jwt::client_claims_for)
}

/// The token answer for one signed access token of `client_id`, its claims built by `claims`.
fn issue_token(
    state: &State,
    zone: &Zone,
    client_id: &str,
    scopes: Vec<String>,
    claims: impl FnOnce(&jwt::Issue<'_>, Vec<String>) -> Value,
) -> Result<Value, OAuthError> {
    let lifetime = state.access_lifetime_secs();
    let jti = util::random_id()?;
    let issue = jwt::Issue {
        zone_id: &zone.zone_id,
        zdn: &zone.subdomain,
        url: &zone.url,
        client_id,
        now: util::now_secs(),
        lifetime_secs: lifetime,
        jti: &jti,
    };
    let scope = scopes.join(" ");
    let claims = claims(&issue, scopes);
    let key = lock(&zone.keys).current();
    Ok(json!({
        "access_token": jwt::sign(&key, &zone.url, &claims)?,
        "token_type": "bearer",
        "expires_in": lifetime,
        "scope": scope,
        "jti": jti,
    }))
}

/// User token exchange: a user access token of this zone (signature, not
/// expired, its issuer and zone id) becomes a user token of the calling
/// client; an assertion of another zone is refused.
fn jwt_bearer_grant(state: &State, zone: &Zone, client: Client<'_>, form: &Form) -> Result<Value, OAuthError> {
    let assertion = required(form, "assertion")?;
    let claims = zone
        .verify(assertion)
        .ok_or_else(|| OAuthError::invalid_grant("assertion is not a valid token of this zone"))?;
    let user =
        jwt::user_from_claims(&claims).ok_or_else(|| OAuthError::invalid_grant("assertion is not a user token"))?;
    let (client_id, scopes) = match client {
        Client::Xsuaa => {
            let known = zone.users.iter().find(|u| u.user_name == user.user_name);
            let scopes = jwt::user_scopes(&state.config, known.unwrap_or(&user));
            (state.config.client_id.as_str(), scopes)
        }
        Client::Service(service) => {
            let scopes = vec!["openid".to_string(), "uaa.user".to_string(), service_scope(service)];
            (service.client_id.as_str(), scopes)
        }
    };
    issue_user_token(state, zone, client_id, &user, scopes, JWT_BEARER)
}

/// A signed user token for any client id, as the token answer (no refresh
/// token: exchanged tokens are re-exchanged, not refreshed).
pub(crate) fn issue_user_token(
    state: &State,
    zone: &Zone,
    client_id: &str,
    user: &User,
    scopes: Vec<String>,
    grant_type: &str,
) -> Result<Value, OAuthError> {
    issue_token(state, zone, client_id, scopes, |issue, scopes| {
        jwt::user_claims_for(issue, user, scopes, grant_type)
    })
}

/// Access token, ID token and a new server-side refresh token for a user.
pub(crate) fn user_tokens(state: &State, zone: &Zone, user: &User, grant_type: &str) -> Result<Value, OAuthError> {
    let now = util::now_secs();
    let lifetime = state.access_lifetime_secs();
    let jti = util::random_id()?;
    let claims = jwt::user_claims(&state.config, zone, user, grant_type, now, lifetime, &jti);
    let key = lock(&zone.keys).current();
    let access_token = jwt::sign(&key, &zone.url, &claims)?;
    let id_token = jwt::sign(&key, &zone.url, &jwt::id_token_claims(&claims, &state.config))?;
    // Opaque like UAA's non-JWT refresh tokens, which end in "-r".
    let refresh_token = format!("{}-r", util::random_id()?);
    {
        let mut tokens = lock(&state.refresh_tokens);
        tokens.retain(|_, grant| grant.expires_at > now);
        tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
                zone_id: zone.zone_id.clone(),
                client_id: state.config.client_id.clone(),
                user: user.clone(),
                expires_at: now + state.config.refresh_token_lifetime.as_secs(),
            },
        );
    }
    Ok(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "id_token": id_token,
        "refresh_token": refresh_token,
        "expires_in": lifetime,
        "scope": jwt::user_scopes(&state.config, user).join(" "),
        "jti": jti,
    }))
}
