//! A route's `replace`, checked: the view its templates are rendered with, built once at start-up
//! from `vars` (environment variables) and `services` (queries over the bound services).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::binding;
use crate::config::env::Env;
use crate::config::error::Error;
use crate::config::raw;
use crate::static_files::Replace;

/// The compiled `replace` of the route at `path` (its key path for errors).
pub(super) fn compile(replace: raw::Replace, path: &str, env: &Env, errors: &mut Error) -> Option<Arc<Replace>> {
    let path = format!("{path}.replace");
    let before = errors.problems.len();
    if replace.path_suffixes.is_empty() {
        errors.push(format!("{path}.pathSuffixes"), "must list at least one suffix");
    }
    for (index, suffix) in replace.path_suffixes.iter().enumerate() {
        if suffix.is_empty() {
            errors.push(
                format!("{path}.pathSuffixes[{index}]"),
                "must not be empty (it would take every file)",
            );
        }
    }
    let mut view = Map::new();
    // As the reference: a variable that is not set renders as empty.
    for name in replace.vars.iter().flatten() {
        view.insert(name.clone(), Value::String(env.get(name).unwrap_or("").to_string()));
    }
    let services = replace.services.unwrap_or_default();
    let instances = if services.is_empty() {
        Vec::new()
    } else {
        bound_services(env)
    };
    for (alias, query) in services {
        let key = format!("{path}.services.{alias}");
        if view.contains_key(&alias) {
            errors.push(key, format!("{alias:?} is also listed in vars: choose another alias"));
            continue;
        }
        let matching: Vec<&Instance> = match &query {
            Value::String(_) | Value::Object(_) => instances.iter().filter(|i| i.matches(&query)).collect(),
            _ => {
                errors.push(key, "must be a service name or a query such as {\"tag\": \"ui5\"}");
                continue;
            }
        };
        match matching.as_slice() {
            [one] => {
                view.insert(alias, Value::Object(one.credentials.clone()));
            }
            [] => errors.push(key, format!("no bound service matches {query}")),
            several => {
                let names: Vec<String> = several.iter().map(|i| format!("{:?}", i.name)).collect();
                errors.push(
                    key,
                    format!(
                        "{} bound services match {query} ({}): make the query name one",
                        several.len(),
                        names.join(", ")
                    ),
                );
            }
        }
    }
    (errors.problems.len() == before).then(|| Arc::new(Replace::new(replace.path_suffixes, view)))
}

/// A bound service as a query sees it.
struct Instance {
    name: String,
    label: String,
    plan: Option<String>,
    tags: Vec<String>,
    /// The whole entry, for queries on other properties.
    entry: Map<String, Value>,
    credentials: Map<String, Value>,
}

impl Instance {
    /// A name, or an object whose every property holds: `tag` is one of the tags, `name`,
    /// `label` and `plan` are equal, any other key equals the entry's property.
    fn matches(&self, query: &Value) -> bool {
        match query {
            Value::String(name) => *name == self.name,
            Value::Object(properties) => properties.iter().all(|(key, wanted)| match key.as_str() {
                "tag" => wanted.as_str().is_some_and(|tag| self.tags.iter().any(|t| t == tag)),
                "name" => wanted.as_str() == Some(self.name.as_str()),
                "label" => wanted.as_str() == Some(self.label.as_str()),
                "plan" => wanted.as_str().is_some() && wanted.as_str() == self.plan.as_deref(),
                other => self.entry.get(other) == Some(wanted),
            }),
            _ => false,
        }
    }
}

/// Every bound service: the binding folders under `SERVICE_BINDING_ROOT`, then `VCAP_SERVICES`.
/// Malformed bindings are reported by the look-ups of the router's own services.
fn bound_services(env: &Env) -> Vec<Instance> {
    let mut ignored = Error::default();
    let mut instances = Vec::new();
    if let Some(root) = env.get("SERVICE_BINDING_ROOT").filter(|root| !root.is_empty()) {
        for folder in binding::binding_folders(Path::new(root), &mut ignored).unwrap_or_default() {
            let Ok(credentials) = binding::read_binding_files(&folder) else {
                continue;
            };
            let text = |name: &str| binding::read_text(&folder.join(name)).map(|text| text.trim().to_string());
            let tags = match credentials.get("tags") {
                Some(Value::Array(tags)) => tags.iter().filter_map(|t| t.as_str().map(String::from)).collect(),
                Some(Value::String(text)) => match serde_json::from_str::<Vec<String>>(text) {
                    Ok(tags) => tags,
                    Err(_) => text.split(',').map(|t| t.trim().to_string()).collect(),
                },
                _ => Vec::new(),
            };
            instances.push(Instance {
                name: binding::file_name(&folder),
                label: text("type").unwrap_or_default(),
                plan: text("plan"),
                tags,
                entry: Map::new(),
                credentials,
            });
        }
    }
    if let Some(services) = binding::vcap_services(env, &mut ignored) {
        for (label, entry) in binding::vcap_instances(&services) {
            instances.push(Instance {
                name: binding::instance_name(entry, label),
                label: entry.get("label").and_then(Value::as_str).unwrap_or(label).to_string(),
                plan: entry.get("plan").and_then(Value::as_str).map(String::from),
                tags: entry
                    .get("tags")
                    .and_then(Value::as_array)
                    .map(|tags| tags.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
                credentials: entry
                    .get("credentials")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                entry: entry.clone(),
            });
        }
    }
    instances
}
