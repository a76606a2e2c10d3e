//! Where sessions live: in this process (the default), or in Redis shared by every instance of the
//! app, chosen by `EXT_SESSION_MGT` (the reference's variable) or by a plain `REDIS_URL`.
//!
//! Rules:
//! - `EXT_SESSION_MGT` set: `storageType` must be `"redis"`; Redis is the service instance named
//!   `instanceName` (a `redis-cache` binding in `VCAP_SERVICES`, or a folder of binding files under
//!   `SERVICE_BINDING_ROOT`), else `REDIS_URL`; the keys come from `sessionSecret`.
//! - `EXT_SESSION_MGT` unset and `REDIS_URL` set: the keys come from `SESSION_SECRET`, which is then
//!   required (a shared store without a shared secret could not open what another instance wrote).
//! - Neither: the in-memory store.
//!
//! `sessionSecret` / `SESSION_SECRET` is one secret or a JSON list of secrets, newest first: values
//! are sealed with the first and opened with any, so a secret can be rotated without logging
//! everyone out. `defaultRetryTimeout` (ms) caps the delay between reconnect attempts (the jitter
//! adds up to as much again) and `backOffMultiplier` (ms) is the first delay, which doubles per
//! attempt. Without `defaultRetryTimeout` the cap is 500 ms instead of the reference's 2000 ms, so
//! service resumes within about a second after Redis comes back.
//!
//! Redis Sentinel: a binding with `sentinelEnabled: true` (the fields of SAP's redis-operator, see
//! [`sentinel`]) or a `redis+sentinel://` / `rediss+sentinel://` URL; the router then asks the
//! sentinels for the current master and asks again after a failover.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::binding::read_binding_files;
use super::env::Env;
use super::error::Error;
use super::parse::parse_all;

mod sentinel;

pub use self::sentinel::SentinelSettings;

/// Which session store the router uses.
#[derive(Debug, Clone, Default)]
pub enum SessionStoreConfig {
    /// Sessions in this process; lost on restart, not shared.
    #[default]
    Memory,
    /// Sessions in Redis, shared by all instances.
    Redis(RedisSettings),
}

/// How to reach Redis and seal what goes there.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL, with the password if any; with Sentinel, the
    /// `redis+sentinel://` URL without credentials (they are in [`RedisSettings::sentinel`]).
    pub url: String,
    /// Redis Cluster (`cluster_mode` of the binding): keys are spread over the cluster's nodes.
    pub cluster: bool,
    /// Redis Sentinel: the master is whichever server the sentinels name.
    pub sentinel: Option<Box<SentinelSettings>>,
    /// Session secrets, newest first; never empty.
    pub secrets: Vec<String>,
    /// First delay before reconnecting (`backOffMultiplier`).
    pub reconnect_min_delay: Duration,
    /// Upper bound of the delay between reconnect attempts (`defaultRetryTimeout`).
    pub reconnect_max_delay: Duration,
    /// How long one store operation may take before the request fails with 503.
    pub command_timeout: Duration,
    /// Where the location came from, for the start-up log: `EXT_SESSION_MGT instance "x"` or `REDIS_URL`.
    pub origin: String,
}

impl std::fmt::Debug for RedisSettings {
    // The URL may carry the password and the secrets are keys: neither reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.display_url())
            .field("cluster", &self.cluster)
            .field("sentinel", &self.sentinel)
            .field("secrets", &self.secrets.len())
            .field("reconnect_min_delay", &self.reconnect_min_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("command_timeout", &self.command_timeout)
            .field("origin", &self.origin)
            .finish()
    }
}

impl RedisSettings {
    /// The URL without its password, for logs.
    pub fn display_url(&self) -> String {
        match &self.sentinel {
            Some(sentinel) => sentinel.display_url(),
            None => redacted_url(&self.url),
        }
    }
}

/// One Redis command (or pipeline) may take this long; a stuck Redis then costs a request one
/// second and a 503, never a hang. The reference's schema rejects timeout keys, so it is fixed.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
const DEFAULT_RECONNECT_MIN_DELAY_MS: u64 = 50;
const DEFAULT_RECONNECT_MAX_DELAY_MS: u64 = 500;
/// Secrets shorter than this are refused: every key is derived from them.
const MIN_SECRET_CHARS: usize = 16;

/// `EXT_SESSION_MGT` as the reference's schema defines it (`additionalProperties: false`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtSessionMgt {
    instance_name: String,
    storage_type: String,
    /// A string or a list of strings; checked by hand for a clearer message.
    session_secret: Value,
    external_store_file_path: Option<String>,
    default_retry_timeout: Option<u64>,
    back_off_multiplier: Option<u64>,
    skip_cert_hostname_validation: Option<bool>,
    reject_unauthorized: Option<bool>,
}

/// Reads `EXT_SESSION_MGT`, `REDIS_URL` and `SESSION_SECRET`.
pub fn from_env(env: &Env, errors: &mut Error) -> SessionStoreConfig {
    match env.get("EXT_SESSION_MGT") {
        Some(text) => from_ext_session_mgt(text, env, errors),
        None => match env.get("REDIS_URL") {
            Some(url) => from_redis_url(url, env, errors),
            None => SessionStoreConfig::Memory,
        },
    }
}

fn from_ext_session_mgt(text: &str, env: &Env, errors: &mut Error) -> SessionStoreConfig {
    const VAR: &str = "EXT_SESSION_MGT";
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            errors.push(VAR, "must be a JSON object");
            return SessionStoreConfig::Memory;
        }
        Err(error) => {
            errors.push(VAR, format!("not valid JSON: {error}"));
            return SessionStoreConfig::Memory;
        }
    };
    let before = errors.problems.len();
    let Some(raw) = parse_all::<ExtSessionMgt>(value, VAR, errors) else {
        return SessionStoreConfig::Memory;
    };
    if raw.storage_type != "redis" {
        errors.push(
            format!("{VAR}.storageType"),
            format!("must be \"redis\", got {:?}", raw.storage_type),
        );
    }
    if raw.external_store_file_path.is_some() {
        errors.push(
            format!("{VAR}.externalStoreFilePath"),
            "custom JavaScript session stores are not supported; use storageType \"redis\"",
        );
    }
    if raw.reject_unauthorized == Some(false) {
        errors.push(
            format!("{VAR}.rejectUnauthorized"),
            "false is not supported: the Redis server certificate is always verified",
        );
    }
    if raw.skip_cert_hostname_validation == Some(true) {
        errors.push(
            format!("{VAR}.skipCertHostnameValidation"),
            "true is not supported: the Redis server's host name is always verified",
        );
    }
    let secrets = secret_list(&raw.session_secret, &format!("{VAR}.sessionSecret"), errors);
    let reconnect_max_delay = millis(
        raw.default_retry_timeout,
        "defaultRetryTimeout",
        DEFAULT_RECONNECT_MAX_DELAY_MS,
        errors,
    );
    let reconnect_min_delay = millis(
        raw.back_off_multiplier,
        "backOffMultiplier",
        DEFAULT_RECONNECT_MIN_DELAY_MS,
        errors,
    );

    let instance = raw.instance_name.trim();
    let location = match find_instance(env, instance, errors) {
        Some(location) => Some(location),
        None => match env.get("REDIS_URL") {
            Some(url) => check_location(url, "REDIS_URL", errors).map(|(url, sentinel)| Location {
                url,
                cluster: false,
                sentinel,
                origin: "REDIS_URL".to_string(),
            }),
            None => {
                errors.push(
                    format!("{VAR}.instanceName"),
                    format!(
                        "no service instance named {instance:?} is bound (VCAP_SERVICES or SERVICE_BINDING_ROOT), \
                         and REDIS_URL is not set"
                    ),
                );
                None
            }
        },
    };
    match location {
        Some(location) if errors.problems.len() == before => SessionStoreConfig::Redis(RedisSettings {
            url: location.url,
            cluster: location.cluster,
            sentinel: location.sentinel,
            secrets,
            reconnect_min_delay: reconnect_min_delay.min(reconnect_max_delay),
            reconnect_max_delay,
            command_timeout: COMMAND_TIMEOUT,
            origin: location.origin,
        }),
        _ => SessionStoreConfig::Memory,
    }
}

fn from_redis_url(url: &str, env: &Env, errors: &mut Error) -> SessionStoreConfig {
    let location = check_location(url, "REDIS_URL", errors);
    let secrets = match env.get("SESSION_SECRET") {
        Some(text) => {
            let value = if text.trim_start().starts_with('[') {
                match serde_json::from_str::<Value>(text) {
                    Ok(value) => value,
                    Err(error) => {
                        errors.push(
                            "SESSION_SECRET",
                            format!("looks like a JSON list but is not valid JSON: {error}"),
                        );
                        return SessionStoreConfig::Memory;
                    }
                }
            } else {
                Value::String(text.to_string())
            };
            secret_list(&value, "SESSION_SECRET", errors)
        }
        None => {
            errors.push(
                "SESSION_SECRET",
                "is required with REDIS_URL (or set EXT_SESSION_MGT with a sessionSecret): \
                 every instance must seal and open sessions with the same secret",
            );
            Vec::new()
        }
    };
    match location {
        Some((url, sentinel)) if !secrets.is_empty() => SessionStoreConfig::Redis(RedisSettings {
            url,
            cluster: false,
            sentinel,
            secrets,
            reconnect_min_delay: Duration::from_millis(DEFAULT_RECONNECT_MIN_DELAY_MS),
            reconnect_max_delay: Duration::from_millis(DEFAULT_RECONNECT_MAX_DELAY_MS),
            command_timeout: COMMAND_TIMEOUT,
            origin: "REDIS_URL".to_string(),
        }),
        _ => SessionStoreConfig::Memory,
    }
}

fn millis(value: Option<u64>, key: &str, default: u64, errors: &mut Error) -> Duration {
    match value {
        Some(0) => {
            errors.push(format!("EXT_SESSION_MGT.{key}"), "must be at least 1 (milliseconds)");
            Duration::from_millis(default)
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_millis(default),
    }
}

/// One secret or a non-empty list of distinct secrets, newest first.
fn secret_list(value: &Value, path: &str, errors: &mut Error) -> Vec<String> {
    let secrets: Vec<(String, &Value)> = match value {
        Value::String(_) => vec![(path.to_string(), value)],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(index, item)| (format!("{path}[{index}]"), item))
            .collect(),
        Value::Array(_) => {
            errors.push(path, "must not be an empty list");
            return Vec::new();
        }
        _ => {
            errors.push(path, "must be a string or a list of strings (newest first)");
            return Vec::new();
        }
    };
    let mut result: Vec<String> = Vec::new();
    for (item_path, item) in secrets {
        let Some(secret) = item.as_str() else {
            errors.push(item_path, "must be a string");
            continue;
        };
        if secret.chars().count() < MIN_SECRET_CHARS {
            errors.push(
                item_path,
                format!("must be at least {MIN_SECRET_CHARS} characters long"),
            );
            continue;
        }
        if result.iter().any(|seen| seen == secret) {
            errors.push(item_path, "is listed twice");
            continue;
        }
        result.push(secret.to_string());
    }
    result
}

struct Location {
    url: String,
    cluster: bool,
    sentinel: Option<Box<SentinelSettings>>,
    origin: String,
}

/// The Redis binding named `instance`: binding files first (as for XSUAA), then `VCAP_SERVICES`.
fn find_instance(env: &Env, instance: &str, errors: &mut Error) -> Option<Location> {
    if let Some(root) = env.get("SERVICE_BINDING_ROOT").filter(|root| !root.is_empty()) {
        let folder = Path::new(root).join(instance);
        if !instance.is_empty() && !instance.contains(['/', '\\']) && folder.is_dir() {
            let path = format!("SERVICE_BINDING_ROOT: {instance}");
            return match read_binding_files(&folder) {
                Ok(credentials) => location_from_credentials(&credentials, &path, instance, errors),
                Err(error) => {
                    errors.push(path, format!("cannot read binding files: {error}"));
                    None
                }
            };
        }
    }
    // A malformed VCAP_SERVICES is reported by the XSUAA binding lookup; here it just has no match.
    let services: Map<String, Value> = serde_json::from_str(env.get("VCAP_SERVICES")?).ok()?;
    let (label, binding) = services
        .iter()
        .filter_map(|(label, list)| Some((label, list.as_array()?)))
        .flat_map(|(label, list)| list.iter().map(move |binding| (label, binding)))
        .find(|(_, binding)| binding.get("name").and_then(Value::as_str) == Some(instance))?;
    let path = format!("VCAP_SERVICES: {instance}.credentials");
    if label != "redis-cache" && label != "user-provided" {
        tracing::warn!(%label, instance, "the session store instance is not a redis-cache binding; using it anyway");
    }
    let Some(credentials) = binding.get("credentials").and_then(Value::as_object) else {
        errors.push(path, "missing or not an object");
        return None;
    };
    location_from_credentials(credentials, &path, instance, errors)
}

/// `hostname`, `port`, `password`, `tls` make the URL; `uri` is used only when they are absent,
/// because its user name (`no-user-name-for-redis` on SAP BTP) is not a Redis ACL user.
fn location_from_credentials(
    credentials: &Map<String, Value>,
    path: &str,
    instance: &str,
    errors: &mut Error,
) -> Option<Location> {
    let text = |key: &str| match credentials.get(key) {
        Some(Value::String(text)) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::Bool(flag)) => Some(flag.to_string()),
        _ => None,
    };
    let flag = |key: &str, errors: &mut Error| match text(key).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            errors.push(format!("{path}.{key}"), format!("must be true or false, got {other:?}"));
            false
        }
    };
    let cluster = flag("cluster_mode", errors);
    let origin = format!("EXT_SESSION_MGT instance {instance:?}");
    if flag("sentinelEnabled", errors) {
        if cluster {
            errors.push(
                format!("{path}.cluster_mode"),
                "cannot be true together with sentinelEnabled",
            );
            return None;
        }
        let sentinel = sentinel::from_credentials(&text, path, errors)?;
        return Some(Location {
            url: sentinel.display_url(),
            cluster,
            sentinel: Some(Box::new(sentinel)),
            origin,
        });
    }
    let mut sentinel = None;
    let url = match (text("hostname"), text("uri")) {
        (Some(hostname), _) => {
            let tls = flag("tls", errors);
            let port = match text("port") {
                Some(port) => match port.parse::<u16>() {
                    Ok(port) if port > 0 => port,
                    _ => {
                        errors.push(format!("{path}.port"), format!("must be a port number, got {port:?}"));
                        return None;
                    }
                },
                None => 6379,
            };
            let scheme = if tls { "rediss" } else { "redis" };
            let host = if hostname.contains(':') && !hostname.starts_with('[') {
                format!("[{hostname}]")
            } else {
                hostname
            };
            let mut url = match url::Url::parse(&format!("{scheme}://{host}:{port}")) {
                Ok(url) => url,
                Err(error) => {
                    errors.push(format!("{path}.hostname"), format!("not a valid host name: {error}"));
                    return None;
                }
            };
            if let Some(password) = text("password") {
                // Redis before 6 has no user names; `:password@` authenticates as the default user.
                if url.set_password(Some(&password)).is_err() {
                    errors.push(format!("{path}.password"), "cannot be put into a URL");
                    return None;
                }
            }
            url.to_string()
        }
        (None, Some(uri)) => {
            let (checked, from_uri) = check_location(&uri, &format!("{path}.uri"), errors)?;
            if from_uri.is_some() {
                if cluster {
                    errors.push(format!("{path}.cluster_mode"), "cannot be true with a Sentinel uri");
                    return None;
                }
                // As for `redis://`: SAP's placeholder user name is no Redis ACL user.
                sentinel = from_uri.map(|mut settings| {
                    if settings.username.as_deref() == Some("no-user-name-for-redis") {
                        settings.username = None;
                    }
                    settings
                });
            }
            match url::Url::parse(&checked) {
                Ok(mut url) if url.username() == "no-user-name-for-redis" => {
                    let _ = url.set_username("");
                    url.to_string()
                }
                _ => checked,
            }
        }
        (None, None) => {
            errors.push(path, "needs hostname (with port, password, tls) or uri");
            return None;
        }
    };
    Some(Location {
        url,
        cluster,
        sentinel,
        origin,
    })
}

/// A Redis URL, or a Sentinel URL with its parsed settings.
fn check_location(text: &str, path: &str, errors: &mut Error) -> Option<(String, Option<Box<SentinelSettings>>)> {
    if sentinel::is_sentinel_url(text) {
        let settings = sentinel::parse_url(text, path, errors)?;
        return Some((settings.display_url(), Some(Box::new(settings))));
    }
    check_url(text, path, errors).map(|url| (url, None))
}

/// A `redis://` or `rediss://` URL with a host; certificate checks cannot be switched off.
fn check_url(text: &str, path: &str, errors: &mut Error) -> Option<String> {
    let url = match url::Url::parse(text.trim()) {
        Ok(url) => url,
        Err(error) => {
            errors.push(path, format!("not a valid URL: {error}"));
            return None;
        }
    };
    if !matches!(url.scheme(), "redis" | "rediss") {
        errors.push(
            path,
            format!(
                "scheme must be redis, rediss, redis+sentinel or rediss+sentinel, got {:?}",
                url.scheme()
            ),
        );
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        errors.push(path, "has no host");
        return None;
    }
    if url.fragment().is_some() {
        errors.push(path, "must not have a fragment (#insecure is not supported)");
        return None;
    }
    Some(url.to_string())
}

fn redacted_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

#[cfg(test)]
mod tests;
