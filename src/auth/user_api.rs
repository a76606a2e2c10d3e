//! The user API (`service: "sap-approuter-userapi"`): `/currentUser` and `/attributes`, answered
//! from the session, with the reference's JSON fields.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{json, Value};

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

/// `/currentUser`.
pub fn current_user(session: &Session) -> Value {
    let user = &session.user;
    let mut value = base(session);
    let first = user.given_name.clone().unwrap_or_default();
    let last = user.family_name.clone().unwrap_or_default();
    let email = user.email.clone().unwrap_or_default();
    let display = if first.is_empty() && last.is_empty() {
        user.name.clone()
    } else {
        format!("{first} {last} ({email})")
    };
    value["displayName"] = Value::String(display);
    value
}

/// `/attributes`: the basics plus the identity provider's user info.
pub fn attributes(session: &Session, userinfo: Value) -> Value {
    let mut value = base(session);
    value["user_attributes"] = userinfo;
    value
}

fn base(session: &Session) -> Value {
    let user = &session.user;
    json!({
        "firstname": user.given_name,
        "lastname": user.family_name,
        "email": user.email,
        "name": user.name,
        "scopes": user.scopes,
    })
}

/// A JSON answer that no cache keeps.
pub fn respond(value: &Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    response
}
