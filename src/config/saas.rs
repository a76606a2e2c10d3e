//! The `saas-registry` binding: where the SaaS registry calls the router when a subaccount
//! subscribes or unsubscribes (`appUrls`), found like the other service bindings.

use std::path::Path;

use serde_json::{Map, Value};

use super::binding::BindingSource;
use super::env::Env;
use super::error::Error;
use super::services::{from_files, from_vcap, Found};

/// The label, tag and binding `type` of the SaaS registry.
pub const SAAS_REGISTRY: &str = "saas-registry";
/// `getDependencies` unless `appUrls` names another.
pub const DEFAULT_DEPENDENCIES_PATH: &str = "/callback/v1.0/dependencies";
/// `onSubscription` (without `/{tenantId}`) unless `appUrls` names another.
pub const DEFAULT_TENANTS_PATH: &str = "/callback/v1.0/tenants";

/// A checked `saas-registry` binding: the paths of its callbacks on the router.
#[derive(Debug, Clone)]
pub struct SaasRegistry {
    /// The instance's name (`name` in `VCAP_SERVICES`, the folder name for binding files).
    pub name: String,
    /// Where it was found.
    pub source: BindingSource,
    /// `GET` here lists the services a subscription depends on.
    pub dependencies_path: String,
    /// `PUT`/`DELETE` at `<tenants_path>/<tenantId>` subscribe and unsubscribe a tenant; no
    /// trailing `/`.
    pub tenants_path: String,
}

/// Finds the one `saas-registry` binding: binding files first, then `VCAP_SERVICES`. Two of them in
/// one place is an error naming both.
pub fn find(env: &Env, errors: &mut Error) -> Option<SaasRegistry> {
    let found = match env.get("SERVICE_BINDING_ROOT") {
        Some(root) if !root.is_empty() => from_files(Path::new(root), SAAS_REGISTRY, errors),
        _ => None,
    };
    let (name, source, credentials): Found = match found {
        Some(found) => found,
        None => from_vcap(env, SAAS_REGISTRY, errors)?,
    };
    parse(name, source, &credentials, errors)
}

fn parse(
    name: String,
    source: BindingSource,
    credentials: &Map<String, Value>,
    errors: &mut Error,
) -> Option<SaasRegistry> {
    let path = format!("{}.appUrls", source.key_path(&name));
    // A JSON string in VCAP_SERVICES; already an object when a binding's `.metadata` says JSON.
    let app_urls = match credentials.get("appUrls") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                errors.push(&path, "must be a JSON object");
                return None;
            }
            Err(error) => {
                errors.push(&path, format!("not valid JSON: {error}"));
                return None;
            }
        },
        Some(_) => {
            errors.push(&path, "must be a JSON string of an object");
            return None;
        }
    };
    let before = errors.problems.len();
    let dependencies_path = callback_path(&app_urls, "getDependencies", DEFAULT_DEPENDENCIES_PATH, &path, errors);
    let tenants_path = callback_path(&app_urls, "onSubscription", DEFAULT_TENANTS_PATH, &path, errors);
    if errors.problems.len() != before {
        return None;
    }
    if tenants_path == dependencies_path || dependencies_path.starts_with(&format!("{tenants_path}/")) {
        errors.push(
            &path,
            format!(
                "getDependencies ({dependencies_path}) must lie outside onSubscription ({tenants_path}/{{tenantId}})"
            ),
        );
        return None;
    }
    Some(SaasRegistry {
        name,
        source,
        dependencies_path,
        tenants_path,
    })
}

/// The path of the URL under `key` (the SaaS registry calls the URL; the router answers its path),
/// cut before `/{tenantId}`, without a trailing `/`.
fn callback_path(app_urls: &Map<String, Value>, key: &str, default: &str, path: &str, errors: &mut Error) -> String {
    let Some(value) = app_urls.get(key).filter(|value| !value.is_null()) else {
        return default.to_string();
    };
    let Some(text) = value.as_str().map(str::trim) else {
        errors.push(format!("{path}.{key}"), "must be a URL string");
        return String::new();
    };
    let cut = text.find("/{tenantId}").map_or(text, |at| &text[..at]);
    let url_path = if cut.starts_with('/') {
        // A path alone: the part before any query.
        cut.split(['?', '#']).next().unwrap_or("").to_string()
    } else {
        match url::Url::parse(cut) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url.path().to_string(),
            _ => {
                errors.push(
                    format!("{path}.{key}"),
                    format!("must be an absolute http(s) URL or a path, got {text:?}"),
                );
                return String::new();
            }
        }
    };
    let url_path = url_path.trim_end_matches('/');
    // A placeholder other than `{tenantId}` would be taken for a literal path.
    let placeholder = url_path.contains(['{', '}', ' ']) || url_path.to_ascii_lowercase().contains("%7b");
    if url_path.is_empty() || url_path.starts_with("//") || placeholder {
        errors.push(
            format!("{path}.{key}"),
            format!("needs a path of its own on the router, got {text:?}"),
        );
        return String::new();
    }
    url_path.to_string()
}

#[cfg(test)]
mod tests;
