//! The development Destination service: destinations (changeable at run
//! time) and `GET /destination-configuration/v1/destinations/{name}`,
//! answered only to tokens this XSUAA issued to the destination client.

use std::collections::BTreeMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use crate::config::{ServiceKind, User};
use crate::http::{self as resp, Resp};
use crate::jwt;
use crate::state::State;
use crate::token;
use crate::util::lock;
use crate::zone::Zone;

/// The path prefix of the find-destination API.
pub(crate) const FIND_PREFIX: &str = "/destination-configuration/v1/destinations/";

/// One destination: its `destinationConfiguration` properties and
/// `certificates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    properties: BTreeMap<String, String>,
    certificates: Vec<Value>,
}

impl Destination {
    pub(crate) fn new(properties: BTreeMap<String, String>, certificates: Vec<Value>) -> Self {
        Self {
            properties,
            certificates,
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

fn destination(pairs: &[(&str, &str)]) -> Destination {
    let properties = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Destination::new(properties, Vec::new())
}

/// The default `password` destination: `OAuth2Password` for `user`.
pub(crate) fn password_destination(user: &User) -> Destination {
    destination(&[
        ("URL", "https://backend.example.org"),
        ("ProxyType", "Internet"),
        ("Authentication", "OAuth2Password"),
        ("User", &user.user_name),
        ("Password", &user.password),
        ("clientId", "sb-backend!t1"),
        ("clientSecret", "backend-secret"),
    ])
}

/// One destination per authentication type the router handles, plus one
/// whose token cannot be obtained. A missing `tokenServiceURL` means this
/// XSUAA's token endpoint. The on-premise ones name virtual hosts that no
/// system is mapped to until a test maps one.
pub(crate) fn default_destinations() -> BTreeMap<String, Destination> {
    let url = ("URL", "https://backend.example.org");
    let internet = ("ProxyType", "Internet");
    let on_premise_url = ("URL", "http://erp.internal:44300");
    let on_premise = ("ProxyType", "OnPremise");
    BTreeMap::from([
        (
            "no-auth".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "NoAuthentication"),
                ("HTML5.DynamicDestination", "true"),
                ("URL.headers.x-api-key", "k-123"),
            ]),
        ),
        (
            "basic".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "BasicAuthentication"),
                ("User", "alice"),
                ("Password", "wonderland"),
            ]),
        ),
        (
            "oauth-cc".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "OAuth2ClientCredentials"),
                ("clientId", "sb-backend!t1"),
                ("clientSecret", "backend-secret"),
            ]),
        ),
        (
            "user-exchange".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "OAuth2UserTokenExchange"),
                ("clientId", "sb-backend!t1"),
                ("clientSecret", "backend-secret"),
            ]),
        ),
        (
            "jwt-bearer".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "OAuth2JWTBearer"),
                ("clientId", "sb-backend!t1"),
                ("clientSecret", "backend-secret"),
            ]),
        ),
        (
            "saml-bearer".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "OAuth2SAMLBearerAssertion"),
                ("clientId", "sb-backend!t1"),
                ("clientSecret", "backend-secret"),
            ]),
        ),
        (
            "on-premise".to_string(),
            destination(&[
                on_premise_url,
                on_premise,
                ("Authentication", "NoAuthentication"),
                ("CloudConnectorLocationId", "loc1"),
            ]),
        ),
        (
            "principal-propagation".to_string(),
            destination(&[
                on_premise_url,
                on_premise,
                ("Authentication", "PrincipalPropagation"),
                ("CloudConnectorLocationId", "loc1"),
            ]),
        ),
        (
            "technical-user".to_string(),
            destination(&[
                on_premise_url,
                on_premise,
                ("Authentication", "OAuth2TechnicalUserPropagation"),
                ("clientId", "sb-backend!t1"),
                ("clientSecret", "backend-secret"),
            ]),
        ),
        (
            "token-error".to_string(),
            destination(&[
                url,
                internet,
                ("Authentication", "OAuth2ClientCredentials"),
                ("clientId", "sb-backend!t1"),
                ("clientSecret", "backend-secret"),
                ("tokenServiceURL", "https://token.invalid/oauth/token"),
            ]),
        ),
    ])
}

/// Failure to read destinations from JSON.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DestinationsError {
    #[error("destinations are not valid json")]
    Json(#[from] serde_json::Error),
    #[error("destinations must be a json object of objects")]
    NotAnObject,
    #[error("{0}: property values must be strings")]
    NotAString(String),
    #[error("{0}.certificates must be an array of objects")]
    Certificates(String),
}

/// Parses `{"<name>": {"<property>": "<value>", "certificates": [...]}}`.
pub(crate) fn parse_destinations(text: &str) -> Result<BTreeMap<String, Destination>, DestinationsError> {
    let Value::Object(root) = serde_json::from_str(text)? else {
        return Err(DestinationsError::NotAnObject);
    };
    let mut destinations = BTreeMap::new();
    for (name, value) in root {
        let Value::Object(fields) = value else {
            return Err(DestinationsError::NotAnObject);
        };
        let mut properties = BTreeMap::new();
        let mut certificates = Vec::new();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("certificates", Value::Array(items)) if items.iter().all(Value::is_object) => certificates = items,
                ("certificates", _) => return Err(DestinationsError::Certificates(name)),
                (_, Value::String(text)) => {
                    properties.insert(key, text);
                }
                _ => return Err(DestinationsError::NotAString(format!("{name}.{key}"))),
            }
        }
        destinations.insert(name, Destination::new(properties, certificates));
    }
    Ok(destinations)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

fn refuse(state: &State, description: &str) -> Resp {
    state.count(|s| s.destination_requests_refused += 1);
    let mut denied = resp::json(StatusCode::UNAUTHORIZED, &json!({ "ErrorMessage": description }));
    denied.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    denied
}

/// `GET {FIND_PREFIX}{name}`: the destination with its auth tokens, after
/// the configured delay, or the configured failure status.
pub(crate) async fn find(state: &State, raw_name: &str, headers: &HeaderMap) -> Resp {
    let name = percent_decode_str(raw_name).decode_utf8_lossy().into_owned();
    state.count(|s| *s.destination_lookups.entry(name.clone()).or_default() += 1);
    let behaviour = *lock(&state.find_behaviour);
    if let Some(delay) = behaviour.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = behaviour.failure {
        return resp::json(
            status,
            &json!({ "ErrorMessage": "the destination service failed as configured" }),
        );
    }
    answer(state, &name, headers)
}

fn answer(state: &State, name: &str, headers: &HeaderMap) -> Resp {
    let Some(client_id) = state
        .service_clients
        .get(&ServiceKind::Destination)
        .map(|c| c.client_id.as_str())
    else {
        return refuse(state, "no destination service client");
    };
    // The bearer token's zone is the subaccount whose destinations answer.
    let Some((zone, caller)) = bearer(headers).and_then(|token| state.verify_any(token)) else {
        return refuse(state, "a valid bearer token of the destination service is required");
    };
    let verify = |token: &str| zone.verify(token);
    if caller["cid"].as_str() != Some(client_id) {
        return refuse(state, "the token was not issued to the destination service's client");
    }
    // X-user-token, when non-empty, is the user token to exchange and wins
    // over a user bearer token.
    let user_token = match headers.get("x-user-token").map(HeaderValue::to_str) {
        Some(Ok(text)) if !text.trim().is_empty() => match verify(text.trim()) {
            Some(claims) if claims.get("user_name").is_some() => Some(claims),
            _ => return refuse(state, "x-user-token is not a valid user token of this zone"),
        },
        Some(Err(_)) => return refuse(state, "x-user-token is not a valid user token of this zone"),
        _ => caller.get("user_name").is_some().then_some(caller),
    };

    // A clone, so that issuing tokens below does not hold the lock.
    let Some(destination) = lock(&zone.destinations).get(name).cloned() else {
        return resp::json(
            StatusCode::NOT_FOUND,
            &json!({ "ErrorMessage": "Configuration with the specified name was not found" }),
        );
    };
    let mut configuration = Map::new();
    configuration.insert("Name".into(), Value::String(name.to_string()));
    configuration.insert("Type".into(), Value::String("HTTP".into()));
    for (key, value) in &destination.properties {
        configuration.insert(key.clone(), Value::String(value.clone()));
    }
    let mut body = json!({
        "owner": { "SubaccountId": zone.zone_id, "InstanceId": null },
        "destinationConfiguration": configuration,
    });
    if let Some(auth_token) = auth_token(state, zone, &destination, user_token.as_ref()) {
        body["authTokens"] = json!([auth_token]);
    }
    if !destination.certificates.is_empty() {
        body["certificates"] = Value::Array(destination.certificates);
    }
    resp::json(StatusCode::OK, &body)
}

/// The `grant_type` claim of tokens issued for SAML bearer destinations.
const SAML2_BEARER: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";

/// `authTokens[0]` for the destination's authentication type, or `None`
/// for types that carry no token.
fn auth_token(state: &State, zone: &Zone, destination: &Destination, user_token: Option<&Value>) -> Option<Value> {
    let authentication = destination.get("Authentication").unwrap_or("NoAuthentication");
    let mut header = "Authorization";
    let result = match authentication {
        "NoAuthentication" | "PrincipalPropagation" | "ClientCertificateAuthentication" => return None,
        "BasicAuthentication" => match (destination.get("User"), destination.get("Password")) {
            (Some(user), Some(password)) => Ok(("Basic", STANDARD.encode(format!("{user}:{password}")), None)),
            _ => Err("User and Password are required".to_string()),
        },
        "OAuth2ClientCredentials" => client_token(state, zone, destination),
        "OAuth2TechnicalUserPropagation" => {
            header = "SAP-Connectivity-Technical-Authentication";
            client_token(state, zone, destination)
        }
        "OAuth2UserTokenExchange" | "OAuth2JWTBearer" => {
            exchanged_token(state, zone, destination, user_token, token::JWT_BEARER)
        }
        // The real service turns the user token into a SAML assertion and
        // trades that at the token service; the outcome is the same shape.
        "OAuth2SAMLBearerAssertion" => exchanged_token(state, zone, destination, user_token, SAML2_BEARER),
        "OAuth2Password" => password_token(state, zone, destination),
        other => Err(format!("authentication type {other} is not supported here")),
    };
    Some(match result {
        Ok((kind, value, expires_in)) => {
            let mut entry = json!({
                "type": kind,
                "value": value,
                "http_header": { "key": header, "value": format!("{kind} {value}") },
            });
            if let Some(expires_in) = expires_in {
                entry["expires_in"] = Value::String(expires_in);
            }
            entry
        }
        Err(error) => json!({ "type": "", "value": "", "error": error }),
    })
}

fn client_token(state: &State, zone: &Zone, destination: &Destination) -> Issued {
    let client_id = oauth_client(zone, destination)?;
    let answer = token::issue_client_token(state, zone, client_id, vec!["uaa.resource".to_string()])
        .map_err(|err| err.description)?;
    bearer_of(&answer)
}

fn exchanged_token(
    state: &State,
    zone: &Zone,
    destination: &Destination,
    user_token: Option<&Value>,
    grant_type: &str,
) -> Issued {
    let client_id = oauth_client(zone, destination)?;
    let claims = user_token.ok_or("a user token is required to exchange")?;
    let user = jwt::user_from_claims(claims).ok_or("the user token names no user")?;
    let answer = token::issue_user_token(state, zone, client_id, &user, jwt::scopes_of(claims), grant_type)
        .map_err(|err| err.description)?;
    bearer_of(&answer)
}

/// The password grant at the token service: only a configured user with
/// its password gets a token, as at XSUAA's own password grant.
fn password_token(state: &State, zone: &Zone, destination: &Destination) -> Issued {
    let client_id = oauth_client(zone, destination)?;
    let (Some(user_name), Some(password)) = (destination.get("User"), destination.get("Password")) else {
        return Err("User and Password are required".to_string());
    };
    let user = zone
        .users
        .iter()
        .find(|u| {
            u.user_name == user_name && verify_slices_are_equal(u.password.as_bytes(), password.as_bytes()).is_ok()
        })
        .ok_or("the token service refused the user's credentials")?;
    let answer = token::issue_user_token(
        state,
        zone,
        client_id,
        user,
        jwt::user_scopes(&state.config, user),
        "password",
    )
    .map_err(|err| err.description)?;
    bearer_of(&answer)
}

type Issued = Result<(&'static str, String, Option<String>), String>;

fn bearer_of(answer: &Value) -> Issued {
    let value = answer["access_token"].as_str().ok_or("no access token")?.to_string();
    let expires_in = answer["expires_in"].as_u64().map(|secs| secs.to_string());
    Ok(("Bearer", value, expires_in))
}

/// The destination's OAuth client id, when its token service is this
/// zone's: the stand-in issues tokens only for itself, so any other token
/// service fails as an unreachable one would.
fn oauth_client<'a>(zone: &Zone, destination: &'a Destination) -> Result<&'a str, String> {
    let client_id = destination.get("clientId").ok_or("clientId is required")?;
    match destination.get("tokenServiceURL") {
        None => Ok(client_id),
        Some(url)
            if [&zone.url, &zone.cert_url]
                .iter()
                .any(|base| url == format!("{base}/oauth/token")) =>
        {
            Ok(client_id)
        }
        Some(url) => Err(format!("could not retrieve a token from {url}")),
    }
}
