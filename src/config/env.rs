//! The environment: process variables merged with `default-env.json`, and the JSON-valued variables.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::error::Error;
use super::parse::parse_all;
use super::raw;
use super::{AuthSettings, CompressionConfig, ServerSettings};
use crate::cookies::Partitioning;

mod destinations;
pub use destinations::destinations;

/// Environment variables as the router sees them. Tests build one from a map; `main` from the
/// process environment plus `default-env.json`, so no test ever changes the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// Every name looked up, set or not: the settings table's test checks that each one has a row.
    looked_up: Arc<Mutex<BTreeSet<String>>>,
}

impl Env {
    /// An environment from name/value pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            looked_up: Arc::default(),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        if let Ok(mut looked_up) = self.looked_up.lock() {
            if !looked_up.contains(name) {
                looked_up.insert(name.to_string());
            }
        }
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable that is set, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The names looked up so far, set or not (shared by clones).
    pub fn looked_up(&self) -> BTreeSet<String> {
        self.looked_up.lock().map(|names| names.clone()).unwrap_or_default()
    }

    /// Sets `name` unless it is already set (how `default-env.json` fills gaps).
    pub fn set_default(&mut self, name: &str, value: String) {
        self.vars.entry(name.to_string()).or_insert(value);
    }

    /// Sets `name`, replacing any value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_string(), value.into());
    }

    /// A boolean variable (`true`/`false`, any case); `None` when unset.
    pub fn flag(&self, name: &str, errors: &mut Error) -> Option<bool> {
        let value = self.get(name)?;
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => {
                errors.push(name, format!("must be true or false, got {value:?}"));
                None
            }
        }
    }
}

/// Reads `default-env.json` from `dir` (if it exists) into `env`: its values fill variables that the
/// real environment does not set. Objects and arrays become their JSON text, as the reference does.
///
/// # Errors
/// A file that exists but is not a JSON object.
pub fn load_default_env(dir: &Path, env: &mut Env) -> Result<bool, Error> {
    let found = read_default_env(dir, env)?;
    default_services(dir, env)?;
    Ok(found)
}

/// `default-services.json`, the Node.js router's local stand-in for bindings
/// (`{"uaa": {<credentials>}}`): when neither `VCAP_SERVICES` nor `SERVICE_BINDING_ROOT` is set,
/// its `uaa` entry becomes the XSUAA binding. Other entries are refused by name: the Node.js
/// router's queries for them cannot be known here.
fn default_services(dir: &Path, env: &mut Env) -> Result<(), Error> {
    let path = dir.join("default-services.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut errors = Error::default();
    if env.get("VCAP_SERVICES").is_some() || env.get("SERVICE_BINDING_ROOT").is_some() {
        return Ok(());
    }
    let services = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(services)) => services,
        _ => {
            errors.push("default-services.json", "must be a JSON object of service names");
            return Err(errors);
        }
    };
    for (name, credentials) in services {
        if name != "uaa" {
            errors.push(
                format!("default-services.json: {name}"),
                "only \"uaa\" (the XSUAA binding) is read; put other bindings into VCAP_SERVICES",
            );
            continue;
        }
        let vcap = serde_json::json!({"xsuaa": [{
            "label": "xsuaa", "name": "uaa", "tags": ["xsuaa"], "credentials": credentials
        }]});
        env.set("VCAP_SERVICES", vcap.to_string());
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors),
    }
}

fn read_default_env(dir: &Path, env: &mut Env) -> Result<bool, Error> {
    let path = dir.join("default-env.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            let mut errors = Error::default();
            errors.push("default-env.json", format!("cannot read {}: {error}", path.display()));
            return Err(errors);
        }
    };
    let mut errors = Error::default();
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => {
            for (name, value) in map {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                env.set_default(&name, text);
            }
            Ok(true)
        }
        Ok(_) => {
            errors.push("default-env.json", "must be a JSON object of variable names");
            Err(errors)
        }
        Err(error) => {
            errors.push("default-env.json", format!("not valid JSON: {error}"));
            Err(errors)
        }
    }
}

/// A JSON-valued variable; a parse error is recorded under its name.
pub(super) fn json_var(env: &Env, name: &str, errors: &mut Error) -> Option<Value> {
    let text = env.get(name)?;
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(error) => {
            errors.push(name, format!("not valid JSON: {error}"));
            None
        }
    }
}

/// The targets `OUTGOING_REQUEST_OPTIONS` may name, as in the Node.js router.
const OUTGOING_TARGETS: [&str; 5] = ["destination", "xsuaa", "identity", "html5-apps-repo", "cls"];

/// `OUTGOING_REQUEST_OPTIONS.<target>.timeout` (ms) in the Node.js router's form
/// (`{"xsuaa": {"timeout": 20000}}`; a bare number is taken too); `None` when unset or 0 (the
/// default then applies). An unknown target or option, or a value that is not a whole number of
/// milliseconds, is an error naming it, as in the Node.js router. Problems are reported once,
/// with the `xsuaa` reading.
pub(super) fn outgoing_timeout(env: &Env, target: &str, errors: &mut Error) -> Option<Duration> {
    const NAME: &str = "OUTGOING_REQUEST_OPTIONS";
    let mut ignored = Error::default();
    let report = target == "xsuaa";
    let sink = if report { errors } else { &mut ignored };
    let options = json_var(env, NAME, sink)?;
    let Value::Object(options) = options else {
        sink.push(NAME, "must be a JSON object of targets (destination, xsuaa, …)");
        return None;
    };
    if report {
        for (key, value) in &options {
            if !OUTGOING_TARGETS.contains(&key.as_str()) {
                sink.push(
                    format!("{NAME}.{key}"),
                    format!("unknown target (one of {})", OUTGOING_TARGETS.join(", ")),
                );
            }
            if let Value::Object(inner) = value {
                for option in inner.keys().filter(|option| *option != "timeout") {
                    sink.push(format!("{NAME}.{key}.{option}"), "unknown option (only timeout)");
                }
            }
            let millis = match value {
                Value::Object(inner) => inner.get("timeout"),
                number => Some(number),
            };
            if millis.is_some_and(|millis| millis.as_u64().is_none()) {
                sink.push(
                    format!("{NAME}.{key}.timeout"),
                    "must be a whole number of milliseconds",
                );
            }
        }
    }
    let millis = match options.get(target)? {
        Value::Object(inner) => inner.get("timeout")?,
        number => number,
    };
    match millis.as_u64()? {
        0 => None,
        millis => Some(Duration::from_millis(millis)),
    }
}

/// Parses a whole number ≥ 1 from a variable.
pub fn positive_integer(name: &str, text: &str, errors: &mut Error) -> Option<u64> {
    match text.trim().parse::<u64>() {
        Ok(value) if value >= 1 => Some(value),
        _ => {
            errors.push(name, format!("must be a whole number of at least 1, got {text:?}"));
            None
        }
    }
}

/// `X-Frame-Options` default, then `httpHeaders`, then xs-app `responseHeaders`; a later entry of the
/// same name replaces an earlier one.
pub fn response_headers(
    env: &Env,
    xs_app: Vec<raw::ResponseHeader>,
    errors: &mut Error,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut put = |name: HeaderName, value: HeaderValue| {
        headers.retain(|(existing, _)| *existing != name);
        headers.push((name, value));
    };
    if env.flag("SEND_XFRAMEOPTIONS", errors) != Some(false) {
        put(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    }
    if let Some(value) = json_var(env, "httpHeaders", errors) {
        // The reference's format is a list of one-entry objects: [{"Name": "value"}, ...].
        let entries: Vec<(String, Value)> = match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .flat_map(|(index, item)| match item {
                    Value::Object(map) => map.into_iter().collect::<Vec<_>>(),
                    _ => {
                        errors.push(
                            format!("httpHeaders[{index}]"),
                            "must be an object {\"Name\": \"value\"}",
                        );
                        Vec::new()
                    }
                })
                .collect(),
            Value::Object(map) => map.into_iter().collect(),
            _ => {
                errors.push("httpHeaders", "must be a JSON array of {\"Name\": \"value\"} objects");
                Vec::new()
            }
        };
        for (name, value) in entries {
            let path = format!("httpHeaders.{name}");
            match (value.as_str(), header(&name, value.as_str().unwrap_or(""))) {
                (Some(_), Ok(pair)) => put(pair.0, pair.1),
                (None, _) => errors.push(path, "value must be a string"),
                (_, Err(message)) => errors.push(path, message),
            }
        }
    }
    for (index, entry) in xs_app.into_iter().enumerate() {
        match header(&entry.name, &entry.value) {
            Ok((name, value)) => put(name, value),
            Err(message) => errors.push(format!("xs-app.json: responseHeaders[{index}]"), message),
        }
    }
    // As the Node.js router: a configured `x-approuter-instance` names the instance that answered.
    if let Some((_, value)) = headers.iter_mut().find(|(name, _)| name == "x-approuter-instance") {
        let instance = env.get("POD_NAME").or_else(|| env.get("CF_INSTANCE_INDEX"));
        if let Some(instance) = instance.and_then(|text| HeaderValue::from_str(text).ok()) {
            *value = instance;
        }
    }
    headers
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    if header_name == http::header::SET_COOKIE || header_name == http::header::COOKIE {
        return Err(format!("{name:?} may not be set this way"));
    }
    let header_value = HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a valid header value"))?;
    Ok((header_name, header_value))
}

/// `compression` of xs-app.json with `COMPRESSION` merged over it.
pub fn compression(env: &Env, xs_app: raw::Compression, errors: &mut Error) -> CompressionConfig {
    let from_env = json_var(env, "COMPRESSION", errors)
        .and_then(|value| parse_all::<raw::Compression>(value, "COMPRESSION", errors))
        .unwrap_or_default();
    let min_size = from_env.min_size.or(xs_app.min_size).unwrap_or(1024);
    if min_size == 0 {
        errors.push("compression.minSize", "must be at least 1");
    }
    CompressionConfig {
        enabled: from_env.enabled.or(xs_app.enabled).unwrap_or(true),
        min_size,
        compress_mixed_content: from_env
            .compress_response_mixed_type_content
            .or(xs_app.compress_response_mixed_type_content)
            .unwrap_or(false),
    }
}

/// `PORT`, `XS_BIND_ADDRESS` and the limits.
pub fn server_settings(env: &Env, errors: &mut Error) -> ServerSettings {
    let port = match env.get("PORT") {
        Some(text) => match text.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                errors.push("PORT", format!("must be a port number, got {text:?}"));
                5000
            }
        },
        None => 5000,
    };
    let ip = match env.get("XS_BIND_ADDRESS") {
        Some(text) => text.trim().parse::<IpAddr>().unwrap_or_else(|_| {
            errors.push("XS_BIND_ADDRESS", format!("must be an IP address, got {text:?}"));
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let millis = |name: &str, errors: &mut Error| {
        env.get(name)
            .and_then(|text| positive_integer(name, text, errors))
            .map(Duration::from_millis)
    };
    // 0 is the reference's (Node's) "no timeout", its default.
    let connection_idle_timeout = match env.get("INCOMING_CONNECTION_TIMEOUT").map(str::trim) {
        Some("0") => None,
        _ => millis("INCOMING_CONNECTION_TIMEOUT", errors),
    };
    let header_read_timeout = millis("INCOMING_HEADER_TIMEOUT", errors).unwrap_or(Duration::from_secs(30));
    // The reference's (Node's `server.requestTimeout`) default; 0 is none.
    let request_timeout = match env.get("INCOMING_REQUEST_TIMEOUT").map(str::trim) {
        Some("0") => None,
        Some(_) => millis("INCOMING_REQUEST_TIMEOUT", errors),
        None => Some(DEFAULT_REQUEST_TIMEOUT),
    };
    let max_header_bytes = env
        .get("MAX_HEADER_SIZE")
        .and_then(|text| positive_integer("MAX_HEADER_SIZE", text, errors))
        .map(|bytes| bytes as usize)
        .unwrap_or(16 * 1024);
    let backend_max_idle = env
        .get("BACKEND_MAX_SOCKETS")
        .and_then(|text| positive_integer("BACKEND_MAX_SOCKETS", text, errors))
        .map(|count| count as usize)
        .unwrap_or(100);
    let ca_cert_paths: Vec<PathBuf> = env
        .get("XS_CACERT_PATH")
        .map(|paths| {
            std::env::split_paths(paths)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    for path in &ca_cert_paths {
        if !path.is_file() {
            errors.push("XS_CACERT_PATH", format!("file not found: {}", path.display()));
        }
    }
    // Node.js's own variable for one more trusted CA file, which apps set for the same purpose.
    let mut ca_cert_paths = ca_cert_paths;
    if let Some(path) = env.get("NODE_EXTRA_CA_CERTS").filter(|path| !path.trim().is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            errors.push("NODE_EXTRA_CA_CERTS", format!("file not found: {}", path.display()));
        }
        ca_cert_paths.push(path);
    }
    if let Err(error) = crate::logging::filter_for(env.get("RUST_LOG"), env.get("XS_APP_LOG_LEVEL")) {
        let (name, message) = error.split_once(": ").unwrap_or(("XS_APP_LOG_LEVEL", error.as_str()));
        errors.push(name, message);
    }
    // The binary reads it before logging starts; here it is checked like every flag.
    let _ = env.flag("LOG_JSON", errors);
    let workers = match env.get("TOKIO_WORKER_THREADS") {
        Some(text) => positive_integer("TOKIO_WORKER_THREADS", text, errors).map_or(1, |n| n as usize),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    ServerSettings {
        bind: SocketAddr::new(ip, port),
        workers,
        header_read_timeout,
        max_header_bytes,
        connection_idle_timeout,
        request_timeout,
        backend_max_idle,
        ca_cert_paths,
        path_validation: env.flag("DISABLE_PATHNAME_VALIDATION", errors) != Some(true),
        allow_encoded_slash: env.flag("ALLOW_ENCODED_SLASH", errors) == Some(true),
        tls: tls_files(env, errors),
        admin: admin_address(env, errors),
        max_connections: limit(env, "MAX_CONNECTIONS", Some(DEFAULT_MAX_CONNECTIONS), errors).map(|n| n as usize),
        max_in_flight: limit(env, "MAX_IN_FLIGHT", Some(DEFAULT_MAX_IN_FLIGHT), errors).map(|n| n as usize),
        max_request_body: limit(env, "MAX_REQUEST_BODY", None, errors),
        login_rate_limit: limit(env, "LOGIN_RATE_LIMIT", Some(DEFAULT_LOGIN_RATE_LIMIT), errors)
            .map(|n| n.min(u64::from(u32::MAX)) as u32),
        // Behind Cloud Foundry's router every client arrives from the router's address; its own
        // X-Forwarded-For entry is the one to trust.
        forwarded_hops: forwarded_hops(env).unwrap_or_else(|text| {
            errors.push(
                "CLIENT_IP_FORWARDED_HOPS",
                format!("must be a whole number, got {text:?}"),
            );
            0
        }),
        allow_underscores_in_headers: env.flag("ALLOW_UNDERSCORES_IN_HEADERS", errors) == Some(true),
        metrics: env.flag("METRICS", errors) != Some(false),
        access_log: env.flag("ACCESS_LOG", errors) != Some(false),
        return_error_source: env.flag("RETURN_ERROR_SOURCE", errors) == Some(true),
        remove_clashing_cookie: env.flag("REMOVE_CLASHING_BACKEND_SESSION_COOKIE", errors) == Some(true),
        merge_csp_headers: env.flag("MERGE_CSP_HEADERS", errors) == Some(true),
        fast_paths: env.flag("HTTP_FAST_PATHS", errors) != Some(false),
    }
}

/// `CLIENT_IP_FORWARDED_HOPS`, or its text when that is not a whole number.
fn forwarded_hops(env: &Env) -> Result<usize, &str> {
    match env.get("CLIENT_IP_FORWARDED_HOPS") {
        Some(text) => text.trim().parse::<usize>().map_err(|_| text),
        None => Ok(usize::from(env.get("VCAP_APPLICATION").is_some())),
    }
}

/// `INCOMING_REQUEST_TIMEOUT` when unset: Node's `server.requestTimeout` default.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
const DEFAULT_MAX_IN_FLIGHT: u64 = 10_000;
/// Failed logins, not logins: a crowd behind one address logs in freely, and a failure costs at
/// most one token request.
const DEFAULT_LOGIN_RATE_LIMIT: u64 = 60;

/// A limit variable: a whole number ≥ 1, or `off`/`0` for none; `default` when unset.
fn limit(env: &Env, name: &str, default: Option<u64>, errors: &mut Error) -> Option<u64> {
    match env.get(name).map(str::trim) {
        None => default,
        Some("off" | "0") => None,
        Some(text) => positive_integer(name, text, errors),
    }
}

/// `TLS_CERT_PATH` and `TLS_KEY_PATH` (both or neither), `TLS_RELOAD_INTERVAL` in milliseconds.
fn tls_files(env: &Env, errors: &mut Error) -> Option<super::TlsFiles> {
    let reload_interval = env
        .get("TLS_RELOAD_INTERVAL")
        .and_then(|text| positive_integer("TLS_RELOAD_INTERVAL", text, errors))
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(5));
    match (env.get("TLS_CERT_PATH"), env.get("TLS_KEY_PATH")) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            for (name, path) in [("TLS_CERT_PATH", cert), ("TLS_KEY_PATH", key)] {
                if !Path::new(path).is_file() {
                    errors.push(name, format!("file not found: {path}"));
                }
            }
            Some(super::TlsFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
                reload_interval,
            })
        }
        (Some(_), None) => {
            errors.push("TLS_KEY_PATH", "must be set together with TLS_CERT_PATH");
            None
        }
        (None, Some(_)) => {
            errors.push("TLS_CERT_PATH", "must be set together with TLS_KEY_PATH");
            None
        }
    }
}

/// `ADMIN_ADDRESS`: `host:port`, `off`, or unset for `127.0.0.1:9090`.
fn admin_address(env: &Env, errors: &mut Error) -> Option<super::AdminAddress> {
    match env.get("ADMIN_ADDRESS").map(str::trim) {
        None => Some(super::AdminAddress {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)),
            explicit: false,
        }),
        Some("off") => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(super::AdminAddress { addr, explicit: true }),
            Err(_) => {
                errors.push(
                    "ADMIN_ADDRESS",
                    format!("must be an address like 127.0.0.1:9090, or off, got {text:?}"),
                );
                None
            }
        },
    }
}

/// Login and session settings.
pub fn auth_settings(env: &Env, errors: &mut Error) -> AuthSettings {
    let session_cookie = env.get("SESSION_COOKIE_NAME").unwrap_or("JSESSIONID").to_string();
    if session_cookie.is_empty()
        || !session_cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        errors.push(
            "SESSION_COOKIE_NAME",
            format!("must be a cookie name of letters, digits, '_' or '-', got {session_cookie:?}"),
        );
    }
    let refresh_minutes = match env.get("JWT_REFRESH") {
        Some(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
            errors.push(
                "JWT_REFRESH",
                format!("must be a whole number of minutes, got {text:?}"),
            );
            5
        }),
        None => 5,
    };
    let login_attempt_secs = env
        .get("STATE_CACHE")
        .and_then(|text| positive_integer("STATE_CACHE", text, errors))
        .unwrap_or(180);
    let mut same_site = "Lax".to_string();
    let mut partitioned = Partitioning::Never;
    if let Some(value) = json_var(env, "COOKIES", errors) {
        match value.get("SameSite").and_then(Value::as_str) {
            Some(site @ ("None" | "Lax" | "Strict")) => same_site = site.to_string(),
            Some(other) => errors.push(
                "COOKIES.SameSite",
                format!("must be None, Lax or Strict, got {other:?}"),
            ),
            None => {}
        }
        if let Some(rule) = value.get("Partitioned") {
            partitioned = partitioning(rule, errors);
        }
    }
    let secure_cookie = match env.get("SECURE_SESSION_COOKIE").map(str::trim) {
        None | Some("auto") => None,
        Some(_) => env.flag("SECURE_SESSION_COOKIE", errors),
    };
    let external_url = match env.get("APPROUTER_URL") {
        Some(url) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                errors.push("APPROUTER_URL", format!("must be an absolute http(s) URL, got {url:?}"));
            }
            Some(url.trim_end_matches('/').to_string())
        }
        None => env
            .get("VCAP_APPLICATION")
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|app| {
                app.get("application_uris")?
                    .as_array()?
                    .first()?
                    .as_str()
                    .map(|uri| format!("https://{}", uri.trim_end_matches('/')))
            }),
    };
    let idp_timeout = outgoing_timeout(env, "xsuaa", errors).unwrap_or(Duration::from_millis(10_000));
    AuthSettings {
        session_cookie,
        refresh_before_expiry: Duration::from_secs(refresh_minutes * 60),
        preserve_fragment: env.flag("PRESERVE_FRAGMENT", errors) != Some(false),
        login_attempt_ttl: Duration::from_secs(login_attempt_secs),
        same_site,
        partitioned,
        secure_cookie,
        external_url,
        idp_timeout,
        // A value that is not a number is reported with the server settings.
        trust_forwarded_headers: forwarded_hops(env).unwrap_or(0) > 0,
        external_reverse_proxy: env.flag("EXTERNAL_REVERSE_PROXY", errors) == Some(true),
        csrf_origin_check: env.flag("CSRF_ORIGIN_CHECK", errors) != Some(false),
        dynamic_identity_provider: env.flag("DYNAMIC_IDENTITY_PROVIDER", errors) == Some(true),
        // XS advanced sets it; its UAA takes the identity provider as a login hint.
        idp_as_login_hint: env.get("XS_BIND_ADDRESS").is_some_and(|address| !address.is_empty()),
        binding_poll_interval: Duration::from_millis(
            env.get("BINDING_POLL_INTERVAL_MS")
                .and_then(|text| positive_integer("BINDING_POLL_INTERVAL_MS", text, errors))
                .unwrap_or(10_000),
        ),
        certificate_expiry_warning: Duration::from_secs(
            env.get("CERT_EXPIRY_WARNING_HOURS")
                .and_then(|text| positive_integer("CERT_EXPIRY_WARNING_HOURS", text, errors))
                .unwrap_or(48)
                .saturating_mul(3600),
        ),
    }
}

/// `COOKIES.Partitioned`: `true`/`false`, or `{"supportedPartitionAgents", "unsupportedPartitionAgents"}`
/// (regular expressions over `User-Agent`, both optional).
fn partitioning(rule: &Value, errors: &mut Error) -> Partitioning {
    match rule {
        Value::Bool(true) => Partitioning::Always,
        Value::Bool(false) | Value::Null => Partitioning::Never,
        Value::Object(fields) => {
            let mut agents = |key: &str| -> Option<regex::Regex> {
                let path = format!("COOKIES.Partitioned.{key}");
                match fields.get(key)? {
                    Value::String(pattern) => match regex::Regex::new(pattern) {
                        Ok(regex) => Some(regex),
                        Err(error) => {
                            errors.push(&path, format!("invalid regular expression: {error}"));
                            None
                        }
                    },
                    other => {
                        errors.push(&path, format!("must be a regular expression, got {other}"));
                        None
                    }
                }
            };
            let supported = agents("supportedPartitionAgents");
            let unsupported = agents("unsupportedPartitionAgents");
            for key in fields.keys() {
                if key != "supportedPartitionAgents" && key != "unsupportedPartitionAgents" {
                    errors.push(format!("COOKIES.Partitioned.{key}"), "unknown key");
                }
            }
            Partitioning::Agents { supported, unsupported }
        }
        other => {
            errors.push(
                "COOKIES.Partitioned",
                format!("must be true, false or an object of user-agent patterns, got {other}"),
            );
            Partitioning::Never
        }
    }
}

#[cfg(test)]
mod tests;
