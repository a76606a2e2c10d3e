//! The user API (`service: "sap-approuter-userapi"`): `/currentUser` and `/attributes`, built
//! field by field as the reference builds them from the session's access token, and answered as
//! the reference answers (pretty-printed JSON, never cached).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::body::{self, Body};
use crate::session::Session;

/// Which user API resource a path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Resource {
    CurrentUser,
    Attributes,
}

/// The resource for the path after the route's target rewrite.
pub fn resource(url: &str) -> Option<Resource> {
    let path = url.split('?').next().unwrap_or("");
    match path.trim_end_matches('/') {
        "/currentUser" | "currentUser" | "" => Some(Resource::CurrentUser),
        "/attributes" | "attributes" => Some(Resource::Attributes),
        _ => None,
    }
}

/// Claims of the user info's `user_attributes` that the reference drops before merging them: the
/// token's own bookkeeping and the fields the basics already carry.
const IGNORED_CLAIMS: &[&str] = &[
    "aud",
    "nonce",
    "remoteEntityId",
    "zone_uuid",
    "sub",
    "given_name",
    "family_name",
    "email",
    "first_name",
    "last_name",
    "azp",
    "mail",
    "app_tid",
    "iss",
    "sid",
    "ias_iss",
    "scim_id",
    "cnf",
    "jti",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "acr",
    "amr",
    "at_hash",
    "c_hash",
    "sub_jwk",
    "ias_apis",
];

/// A JSON object whose keys keep the order they were added in, as JavaScript objects do.
#[derive(Debug, Default, PartialEq)]
pub struct Document(Vec<(String, Value)>);

impl Document {
    /// Adds `key` unless `value` is absent (JavaScript's `undefined`, which `JSON.stringify`
    /// leaves out).
    fn push(&mut self, key: &str, value: Option<Value>) {
        if let Some(value) = value {
            self.set(key, value);
        }
    }

    /// Sets `key`, in its place when it is there already (`Object.assign`).
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(name, _)| name == key) {
            Some((_, old)) => *old = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    /// `JSON.stringify(document, undefined, 2)`.
    pub fn to_pretty_string(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// `/currentUser`: the basics and `displayName`, "First Last (name)" when both names are set,
/// else the name.
pub fn current_user(session: &Session) -> Document {
    let mut document = basics(session);
    let first = document.get("firstname").filter(|v| truthy(v));
    let last = document.get("lastname").filter(|v| truthy(v));
    let display = match (first, last) {
        (Some(first), Some(last)) => Some(Value::String(format!(
            "{} {} ({})",
            js_text(Some(first)),
            js_text(Some(last)),
            js_text(document.get("name"))
        ))),
        _ => document.get("name").cloned(),
    };
    document.push("displayName", display);
    document
}

/// `/attributes`: the basics with the user info's `user_attributes` merged in at the top level
/// (but for the standard claims the reference drops); the basics alone when there is no user info.
pub fn attributes(session: &Session, userinfo: Option<&Value>) -> Document {
    let mut document = basics(session);
    if let Some(Value::Object(attributes)) = userinfo.and_then(|info| info.get("user_attributes")) {
        for (key, value) in attributes {
            if !IGNORED_CLAIMS.contains(&key.as_str()) {
                document.set(key, value.clone());
            }
        }
    }
    document
}

/// What both resources answer, from the claims of the session's access token: `firstname`,
/// `lastname`, `email` (else the `name` claim), `name` (`user_name`, else `email`, for XSUAA
/// tokens; `sub` for others) and the session's `scopes`. A claim the token lacks is left out.
fn basics(session: &Session) -> Document {
    // The token was validated when the session was made, so it decodes; were it not to, the
    // answer holds the scopes alone.
    let claims = crate::idp::jwt::unverified_payload(session.access_token.as_str()).unwrap_or_default();
    let claim = |key: &str| claims.get(key).cloned();
    let mut document = Document::default();
    document.push("firstname", claim("given_name"));
    document.push("lastname", claim("family_name"));
    document.push("email", or(claim("email"), claim("name")));
    let name = match claims.get("ext_attr").is_some_and(truthy) {
        true => or(claim("user_name"), claim("email")),
        false => claim("sub"),
    };
    document.push("name", name);
    document.push(
        "scopes",
        Some(Value::Array(
            session.user.scopes.iter().cloned().map(Value::String).collect(),
        )),
    );
    document
}

/// JavaScript's `a || b`.
fn or(first: Option<Value>, second: Option<Value>) -> Option<Value> {
    match &first {
        Some(value) if truthy(value) => first,
        _ => second,
    }
}

/// JavaScript's truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A value as JavaScript's string concatenation writes it.
fn js_text(value: Option<&Value>) -> String {
    match value {
        None => "undefined".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => "[object Object]".to_string(),
        Some(other) => other.to_string(),
    }
}

/// A JSON answer that no cache keeps.
pub fn respond(document: &Document) -> Response<Body> {
    let mut response = Response::new(body::full(document.to_pretty_string()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A session whose access token carries `claims` (unsigned: only the user API reads them here).
    fn session_with(claims: Value, scopes: &[&str]) -> Session {
        use base64::Engine;
        let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        let token = format!(
            "{}.{}.sig",
            encode(&serde_json::json!({"alg": "RS256"})),
            encode(&claims)
        );
        Session {
            user: crate::session::User {
                name: String::new(),
                email: None,
                given_name: None,
                family_name: None,
                user_id: None,
                origin: None,
                zone_id: None,
                tenant: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            },
            access_token: token.into(),
            refresh_token: None,
            expires_at: 0,
            refresh_at: 0,
            csrf_secret: None,
            backend_cookies: Vec::new(),
            login_at: 0,
        }
    }

    fn xsuaa(extra: Value) -> Value {
        let mut claims = json!({
            "ext_attr": {"enhancer": "XSUAA"},
            "user_name": "jdoe",
            "email": "jane@example.com",
            "given_name": "Jane",
            "family_name": "Doe",
            "sub": "guid",
        });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        claims
    }

    #[test]
    fn current_user_names_the_login_name_in_the_display_name() {
        let session = session_with(xsuaa(json!({})), &["app.Display"]);
        assert_eq!(
            current_user(&session).to_pretty_string(),
            "{\n  \"firstname\": \"Jane\",\n  \"lastname\": \"Doe\",\n  \"email\": \"jane@example.com\",\n  \"name\": \"jdoe\",\n  \"scopes\": [\n    \"app.Display\"\n  ],\n  \"displayName\": \"Jane Doe (jdoe)\"\n}"
        );
    }

    #[test]
    fn missing_and_empty_claims_follow_javascript() {
        let rows: &[(Value, Value)] = &[
            // Empty names: the display name is the name; the empty strings stay.
            (
                xsuaa(json!({"given_name": "", "family_name": ""})),
                json!({"firstname": "", "lastname": "", "email": "jane@example.com", "name": "jdoe", "scopes": [], "displayName": "jdoe"}),
            ),
            // One name only: no "First Last".
            (
                xsuaa(json!({"family_name": null})),
                json!({"firstname": "Jane", "lastname": null, "email": "jane@example.com", "name": "jdoe", "scopes": [], "displayName": "jdoe"}),
            ),
            // No user_name: the email is the name.
            (
                json!({"ext_attr": {}, "email": "jane@example.com", "given_name": "Jane", "family_name": "Doe"}),
                json!({"firstname": "Jane", "lastname": "Doe", "email": "jane@example.com", "name": "jane@example.com", "scopes": [], "displayName": "Jane Doe (jane@example.com)"}),
            ),
            // No email: the `name` claim; absent claims are left out.
            (
                json!({"ext_attr": {}, "user_name": "jdoe", "name": "Jane D."}),
                json!({"email": "Jane D.", "name": "jdoe", "scopes": [], "displayName": "jdoe"}),
            ),
            // Not an XSUAA token (no ext_attr): the subject is the name.
            (
                json!({"sub": "subject", "user_name": "jdoe", "given_name": "Jane", "family_name": "Doe"}),
                json!({"firstname": "Jane", "lastname": "Doe", "name": "subject", "scopes": [], "displayName": "Jane Doe (subject)"}),
            ),
            // No name at all: no display name either.
            (json!({"ext_attr": {}}), json!({"scopes": []})),
        ];
        for (claims, expected) in rows {
            let answer = serde_json::to_value(current_user(&session_with(claims.clone(), &[]))).unwrap();
            assert_eq!(&answer, expected, "{claims}");
        }
    }

    #[test]
    fn attributes_merge_the_user_attributes_at_the_top_level() {
        let session = session_with(xsuaa(json!({})), &["app.Display"]);
        let userinfo = json!({
            "user_name": "jdoe",
            "email": "other@example.com",
            "user_attributes": {"cost_center": ["1000"], "email": ["dropped"], "jti": "dropped", "name": ["override"]}
        });
        let answer = attributes(&session, Some(&userinfo));
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"firstname": "Jane", "lastname": "Doe", "email": "jane@example.com", "name": ["override"],
                   "scopes": ["app.Display"], "cost_center": ["1000"]})
        );
        let keys: Vec<&str> = answer.0.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["firstname", "lastname", "email", "name", "scopes", "cost_center"]
        );
        let basics = json!({"firstname": "Jane", "lastname": "Doe", "email": "jane@example.com", "name": "jdoe", "scopes": ["app.Display"]});
        for userinfo in [
            None,
            Some(json!({"user_name": "jdoe"})),
            Some(json!({"user_attributes": ["x"]})),
        ] {
            let answer = serde_json::to_value(attributes(&session, userinfo.as_ref())).unwrap();
            assert_eq!(answer, basics, "{userinfo:?}");
        }
    }
}
