//! Origin-based settings: CORS rules (`cors` of xs-app.json, then `CORS`) and the allowlists of
//! `CJ_PROTECT_WHITELIST` and `WS_ALLOWED_ORIGINS`, checked into typed values.

use http::{HeaderValue, Method};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::env::json_var;
use super::error::Error;
use super::parse::parse_all;
use super::raw;
use super::Env;
use crate::origin::{Allowlist, HostPattern, OriginPattern};

/// One CORS rule, checked.
#[derive(Debug, Clone)]
pub struct CorsRule {
    /// `uriPattern`, tested against the request URL (path and query).
    pub uri_pattern: Regex,
    /// `hostPattern`, tested against the request host when set.
    pub host_pattern: Option<Regex>,
    /// `allowedOrigin`.
    pub allowed_origins: Allowlist,
    /// `Access-Control-Allow-Origin: *` may be sent: the only allowed origin is host `*` without
    /// protocol or port, and credentials are off.
    pub any_origin: bool,
    /// `allowedMethods` (case-sensitive, as the reference compares them).
    pub allowed_methods: Vec<Method>,
    /// `allowedHeaders`, joined for `Access-Control-Allow-Headers`.
    pub allowed_headers: HeaderValue,
    /// `exposeHeaders`, joined for `Access-Control-Expose-Headers`.
    pub expose_headers: Option<HeaderValue>,
    /// `maxAge` in seconds; `None` (a negative value) sends no `Access-Control-Max-Age`.
    pub max_age: Option<HeaderValue>,
    /// `allowedCredentials`.
    pub allow_credentials: bool,
}

const DEFAULT_METHODS: &[&str] = &["GET", "POST", "HEAD", "OPTIONS"];
const DEFAULT_HEADERS: &[&str] = &[
    "Origin",
    "Accept",
    "X-Requested-With",
    "Content-Type",
    "Access-Control-Request-Method",
    "Access-Control-Request-Headers",
];
const DEFAULT_MAX_AGE: i64 = 1800;

/// The CORS rules: xs-app.json's first, then those of the `CORS` variable.
pub fn cors_rules(xs_app: Option<Vec<raw::Cors>>, env: &Env, errors: &mut Error) -> Vec<CorsRule> {
    let mut rules = Vec::new();
    for (index, entry) in xs_app.unwrap_or_default().into_iter().enumerate() {
        if let Some(rule) = cors_rule(entry, &format!("xs-app.json: cors[{index}]"), errors) {
            rules.push(rule);
        }
    }
    match json_var(env, "CORS", errors) {
        Some(Value::Array(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                let path = format!("CORS[{index}]");
                let Some(entry) = parse_all::<raw::Cors>(item, &path, errors) else {
                    continue;
                };
                if let Some(rule) = cors_rule(entry, &path, errors) {
                    rules.push(rule);
                }
            }
        }
        Some(_) => errors.push("CORS", "must be a JSON array of CORS objects"),
        None => {}
    }
    rules
}

fn cors_rule(entry: raw::Cors, path: &str, errors: &mut Error) -> Option<CorsRule> {
    let uri_pattern = Regex::new(&entry.uri_pattern)
        .map_err(|error| errors.push(format!("{path}.uriPattern"), format!("invalid regex: {error}")))
        .ok();
    let host_pattern = match &entry.host_pattern {
        Some(pattern) => match Regex::new(pattern) {
            Ok(regex) => Some(regex),
            Err(error) => {
                errors.push(format!("{path}.hostPattern"), format!("invalid regex: {error}"));
                None
            }
        },
        None => None,
    };
    if entry.allowed_origin.is_empty() {
        errors.push(format!("{path}.allowedOrigin"), "must name at least one origin");
    }
    let mut allowed_origins = Allowlist::default();
    for (index, origin) in entry.allowed_origin.iter().enumerate() {
        match OriginPattern::new(origin.protocol.as_deref(), &origin.host, origin.port) {
            Ok(pattern) => allowed_origins.entries.push(pattern),
            Err(message) => errors.push(format!("{path}.allowedOrigin[{index}]"), message),
        }
    }
    let allow_credentials = entry.allowed_credentials.unwrap_or(true);
    let any_origin = !allow_credentials
        && matches!(
            allowed_origins.entries.as_slice(),
            [OriginPattern {
                protocol: None,
                host: HostPattern::Any,
                port: None
            }]
        );
    let mut allowed_methods = Vec::new();
    let methods = entry
        .allowed_methods
        .unwrap_or_else(|| DEFAULT_METHODS.iter().map(|m| m.to_string()).collect());
    for (index, method) in methods.iter().enumerate() {
        match Method::from_bytes(method.as_bytes()) {
            Ok(method) => allowed_methods.push(method),
            Err(_) => errors.push(
                format!("{path}.allowedMethods[{index}]"),
                format!("{method:?} is not an HTTP method"),
            ),
        }
    }
    let allowed_headers = entry
        .allowed_headers
        .unwrap_or_else(|| DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect());
    let allowed_headers = header_list(&allowed_headers, &format!("{path}.allowedHeaders"), errors);
    let expose_headers = entry
        .expose_headers
        .filter(|list| !list.is_empty())
        .and_then(|list| header_list(&list, &format!("{path}.exposeHeaders"), errors));
    let max_age = match entry.max_age.unwrap_or(DEFAULT_MAX_AGE) {
        negative if negative < 0 => None,
        seconds => Some(HeaderValue::from(seconds)),
    };
    Some(CorsRule {
        uri_pattern: uri_pattern?,
        host_pattern,
        allowed_origins,
        any_origin,
        allowed_methods,
        allowed_headers: allowed_headers.unwrap_or(HeaderValue::from_static("")),
        expose_headers,
        max_age,
        allow_credentials,
    })
}

/// Joins header names for a response header; each must be a valid header name.
fn header_list(names: &[String], path: &str, errors: &mut Error) -> Option<HeaderValue> {
    for (index, name) in names.iter().enumerate() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(format!("{path}[{index}]"), format!("{name:?} is not a header name"));
        }
    }
    HeaderValue::from_str(&names.join(",")).ok()
}

/// One entry of `CJ_PROTECT_WHITELIST` / `WS_ALLOWED_ORIGINS`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistEntry {
    protocol: Option<String>,
    host: String,
    port: Option<raw::PortValue>,
}

/// An allowlist variable (`[{protocol?, host, port?}]`); `None` when the variable is unset.
pub fn allowlist(env: &Env, name: &str, errors: &mut Error) -> Option<Allowlist> {
    let value = json_var(env, name, errors)?;
    let Value::Array(items) = value else {
        errors.push(
            name,
            "must be a JSON array of {\"protocol\", \"host\", \"port\"} objects",
        );
        return Some(Allowlist::default());
    };
    let mut list = Allowlist::default();
    for (index, item) in items.into_iter().enumerate() {
        let path = format!("{name}[{index}]");
        let Some(entry) = parse_all::<AllowlistEntry>(item, &path, errors) else {
            continue;
        };
        let port = match entry.port {
            None => None,
            Some(raw::PortValue::Number(port)) => Some(port),
            Some(raw::PortValue::Text(text)) => match text.trim().parse::<u16>() {
                Ok(port) => Some(port),
                Err(_) => {
                    errors.push(format!("{path}.port"), format!("{text:?} is not a port number"));
                    continue;
                }
            },
        };
        match OriginPattern::new(entry.protocol.as_deref(), &entry.host, port) {
            Ok(pattern) => list.entries.push(pattern),
            Err(message) => errors.push(path, message),
        }
    }
    Some(list)
}

#[cfg(test)]
mod tests;
