//! The `destinations` variable: each entry checked into a typed [`Destination`], every problem
//! named by its key path.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde_json::Value;

use super::{json_var, Env};
use crate::config::error::Error;
use crate::config::parse::parse_all;
use crate::config::{raw, Destination, DEFAULT_DESTINATION_TIMEOUT};

/// The `destinations` variable.
pub fn destinations(env: &Env, errors: &mut Error) -> BTreeMap<String, Arc<Destination>> {
    let mut result = BTreeMap::new();
    let Some(value) = json_var(env, "destinations", errors) else {
        return result;
    };
    let Value::Array(items) = value else {
        errors.push("destinations", "must be a JSON array");
        return result;
    };
    let mut seen = HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let path = format!("destinations[{index}]");
        let Some(raw) = parse_all::<raw::Destination>(item, &path, errors) else {
            continue;
        };
        if !seen.insert(raw.name.clone()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate destination name {:?}", raw.name),
            );
            continue;
        }
        if let Some(destination) = destination(raw, &path, errors) {
            result.insert(destination.name.clone(), Arc::new(destination));
        }
    }
    result
}

fn destination(raw: raw::Destination, path: &str, errors: &mut Error) -> Option<Destination> {
    let url = match url::Url::parse(&raw.url) {
        Ok(url) => url,
        Err(error) => {
            errors.push(
                format!("{path}.url"),
                format!("not an absolute URL ({error}): {:?}", raw.url),
            );
            return None;
        }
    };
    let scheme = match url.scheme() {
        "http" | "ws" => http::uri::Scheme::HTTP,
        "https" | "wss" => http::uri::Scheme::HTTPS,
        other => {
            errors.push(
                format!("{path}.url"),
                format!("scheme must be http, https, ws or wss, got {other:?}"),
            );
            return None;
        }
    };
    let Some(host) = url.host_str() else {
        errors.push(format!("{path}.url"), "has no host");
        return None;
    };
    if !url.username().is_empty() || url.password().is_some() {
        errors.push(format!("{path}.url"), "must not contain credentials");
    }
    if url.query().is_some() || url.fragment().is_some() {
        errors.push(format!("{path}.url"), "must not contain a query or fragment");
    }
    let authority_text = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let authority = match authority_text.parse::<http::uri::Authority>() {
        Ok(authority) => authority,
        Err(error) => {
            errors.push(format!("{path}.url"), format!("invalid host: {error}"));
            return None;
        }
    };
    let proxy = match (raw.proxy_host, raw.proxy_port) {
        (None, None) => None,
        (Some(host), Some(port)) => {
            let port = match port {
                raw::PortValue::Number(port) => Some(port),
                raw::PortValue::Text(text) => text.parse::<u16>().ok(),
            };
            match port {
                Some(port) if port > 0 => {
                    let host = host.trim_start_matches("http://").trim_end_matches('/').to_string();
                    Some((host, port))
                }
                _ => {
                    errors.push(format!("{path}.proxyPort"), "must be a port number from 1 to 65535");
                    None
                }
            }
        }
        _ => {
            errors.push(path, "proxyHost and proxyPort go together: set both or neither");
            None
        }
    };
    let on_premise = match raw.proxy_type.as_deref() {
        None | Some("Internet") => false,
        // Through the Connectivity service's proxy, which the configuration checks is bound.
        Some("OnPremise") => {
            if proxy.is_some() {
                errors.push(
                    format!("{path}.proxyType"),
                    "OnPremise goes through the connectivity proxy: proxyHost and proxyPort do not apply",
                );
            }
            if scheme != http::uri::Scheme::HTTP {
                errors.push(
                    format!("{path}.url"),
                    "must be http:// (or ws://) for proxyType OnPremise: the connectivity proxy refuses https, \
                     the Cloud Connector speaks TLS to the system",
                );
            }
            true
        }
        Some(other) => {
            errors.push(
                format!("{path}.proxyType"),
                format!("{other:?} is not supported (\"Internet\" or \"OnPremise\")"),
            );
            false
        }
    };
    if raw.ias_dependency_name.is_some() {
        errors.push(format!("{path}.IASDependencyName"), "IAS is not yet supported");
    }
    let timeout = match raw.timeout {
        Some(0) => {
            errors.push(format!("{path}.timeout"), "must be at least 1 (milliseconds)");
            DEFAULT_DESTINATION_TIMEOUT
        }
        Some(millis) => Duration::from_millis(millis),
        None => DEFAULT_DESTINATION_TIMEOUT,
    };
    Some(Destination {
        name: raw.name,
        scheme,
        authority,
        base_path: url.path().trim_end_matches('/').to_string(),
        proxy,
        forward_auth_token: raw.forward_auth_token.unwrap_or(false),
        forward_auth_certificates: raw.forward_auth_certificates.unwrap_or(false),
        strict_ssl: raw.strict_ssl.unwrap_or(true),
        timeout,
        set_x_forwarded_headers: raw.set_x_forwarded_headers.unwrap_or(true),
        preserve_host_header: raw.preserve_host_header.unwrap_or(false),
        host_header: HeaderValue::from_str(&authority_text).unwrap_or(HeaderValue::from_static("localhost")),
        on_premise,
    })
}
