//! `POST /oauth/token`: client authentication (secret on `url`, X.509 on
//! `certurl`) and the authorization_code, refresh_token, client_credentials
//! and password grants.

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
use crate::state::{Listener, RefreshGrant, State, TokenRequestRecord};
use crate::util::{self, lock};

type Form = BTreeMap<String, String>;

/// Handles one token request; `client_cert` is the fingerprint of the TLS
/// client certificate, if the connection presented one.
pub(crate) fn token(
    state: &State,
    listener: Listener,
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
        form: form.clone(),
        basic_auth_client: basic.as_ref().map(|(id, _)| id.clone()),
        client_cert_fingerprint: client_cert.map(str::to_string),
    });
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    state.count(|s| *s.token_requests_by_grant.entry(grant_type.clone()).or_default() += 1);

    let result = check_content_type(headers)
        .and_then(|()| authenticate_client(state, listener, &form, basic, client_cert))
        .and_then(|()| match grant_type.as_str() {
            "authorization_code" => code_grant(state, &form),
            "refresh_token" => refresh_grant(state, &form),
            "client_credentials" => client_grant(state),
            "password" => password_grant(state, &form),
            "" => Err(OAuthError::invalid_request("grant_type is required")),
            other => Err(OAuthError::unsupported_grant_type(other)),
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

fn authenticate_client(
    state: &State,
    listener: Listener,
    form: &Form,
    basic: Option<(String, String)>,
    client_cert: Option<&str>,
) -> Result<(), OAuthError> {
    let config = &state.config;
    let form_client = form.get("client_id");
    match listener {
        Listener::Url => {
            let Some(secret) = &config.client_secret else {
                return Err(OAuthError::invalid_client(
                    "this client authenticates with an X.509 certificate at certurl",
                ));
            };
            let (id, given) = match basic {
                Some((id, given)) if form_client.is_none_or(|c| *c == id) => (id, given),
                Some(_) => return Err(OAuthError::invalid_client("client_id differs from basic auth")),
                None => match (form_client, form.get("client_secret")) {
                    (Some(id), Some(given)) => (id.clone(), given.clone()),
                    _ => return Err(OAuthError::invalid_client("client authentication required")),
                },
            };
            let secret_ok = verify_slices_are_equal(given.as_bytes(), secret.as_bytes()).is_ok();
            if id != config.client_id || !secret_ok {
                return Err(OAuthError::invalid_client("bad client credentials"));
            }
        }
        Listener::CertUrl => {
            let Some(fingerprint) = client_cert else {
                return Err(OAuthError::invalid_client("client certificate required"));
            };
            if !lock(&state.accepted_certs).contains(fingerprint) {
                return Err(OAuthError::invalid_client(
                    "client certificate is not accepted for this client",
                ));
            }
            if form_client != Some(&config.client_id) {
                return Err(OAuthError::invalid_client(
                    "client_id is missing or does not match the client certificate",
                ));
            }
        }
    }
    Ok(())
}

fn required<'a>(form: &'a Form, key: &str) -> Result<&'a str, OAuthError> {
    form.get(key)
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request(format!("{key} is required")))
}

fn code_grant(state: &State, form: &Form) -> Result<Value, OAuthError> {
    let code = required(form, "code")?;
    // Removing before any other check makes every code single-use, even when
    // the redemption fails.
    let pending = lock(&state.codes)
        .remove(code)
        .ok_or_else(|| OAuthError::invalid_grant("invalid authorization code"))?;
    if pending.expires_at <= util::now_secs() {
        return Err(OAuthError::invalid_grant("authorization code expired"));
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
    user_tokens(state, &pending.user, "authorization_code")
}

fn refresh_grant(state: &State, form: &Form) -> Result<Value, OAuthError> {
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
    user_tokens(state, &grant.user, "refresh_token")
}

fn password_grant(state: &State, form: &Form) -> Result<Value, OAuthError> {
    let username = required(form, "username")?;
    let password = required(form, "password")?;
    let user = state
        .config
        .users
        .iter()
        .find(|u| {
            u.user_name == username && verify_slices_are_equal(u.password.as_bytes(), password.as_bytes()).is_ok()
        })
        .ok_or_else(|| OAuthError::invalid_grant("bad credentials"))?;
    user_tokens(state, user, "password")
}

fn client_grant(state: &State) -> Result<Value, OAuthError> {
    let lifetime = state.access_lifetime_secs();
    let jti = util::random_id()?;
    let claims = jwt::client_claims(&state.config, &state.url, util::now_secs(), lifetime, &jti);
    let key = lock(&state.keys).current();
    Ok(json!({
        "access_token": jwt::sign(&key, &state.url, &claims)?,
        "token_type": "bearer",
        "expires_in": lifetime,
        "scope": "uaa.resource",
        "jti": jti,
    }))
}

/// Access token, ID token and a new server-side refresh token for a user.
pub(crate) fn user_tokens(state: &State, user: &User, grant_type: &str) -> Result<Value, OAuthError> {
    let now = util::now_secs();
    let lifetime = state.access_lifetime_secs();
    let jti = util::random_id()?;
    let claims = jwt::user_claims(&state.config, &state.url, user, grant_type, now, lifetime, &jti);
    let key = lock(&state.keys).current();
    let access_token = jwt::sign(&key, &state.url, &claims)?;
    let id_token = jwt::sign(&key, &state.url, &jwt::id_token_claims(&claims, &state.config))?;
    // Opaque like UAA's non-JWT refresh tokens, which end in "-r".
    let refresh_token = format!("{}-r", util::random_id()?);
    {
        let mut tokens = lock(&state.refresh_tokens);
        tokens.retain(|_, grant| grant.expires_at > now);
        tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
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
