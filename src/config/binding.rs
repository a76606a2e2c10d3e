//! The XSUAA service binding: from `VCAP_SERVICES` (Cloud Foundry) or from binding files under
//! `SERVICE_BINDING_ROOT` (Kubernetes), with the `XSUAA_PRIVATE_KEY` override.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::env::Env;
use super::error::Error;

/// Where a binding was found, so it can be re-read when it rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingSource {
    /// `VCAP_SERVICES`: fixed for the life of the process.
    VcapServices,
    /// A folder of binding files (kubelet rewrites them in place on rotation).
    Files(PathBuf),
}

/// The credentials of an XSUAA binding that the router uses.
#[derive(Clone)]
pub struct XsuaaCredentials {
    /// The binding's name (`name` in VCAP_SERVICES, the folder name for binding files).
    pub name: String,
    pub source: BindingSource,
    pub clientid: String,
    pub clientsecret: Option<String>,
    /// Authorize, logout, userinfo, and secret-based token requests.
    pub url: String,
    /// The mTLS token endpoint's host for x509 credentials.
    pub certurl: Option<String>,
    /// JWKS host: `https://<uaadomain>/token_keys`.
    pub uaadomain: String,
    pub xsappname: String,
    pub identityzone: Option<String>,
    /// The XSUAA API (`ENABLE_FRAME_ANCESTORS_CSP_HEADERS` reads the trusted domains there).
    pub apiurl: Option<String>,
    pub identityzoneid: Option<String>,
    pub credential_type: Option<String>,
    /// `tenantmode`: `shared` for a multitenant app (each subscriber its own zone), else
    /// `dedicated`.
    pub tenantmode: Option<String>,
    /// PEM chain of the client certificate (x509 credentials).
    pub certificate: Option<String>,
    /// PEM private key (x509 credentials).
    pub key: Option<String>,
}

impl std::fmt::Debug for XsuaaCredentials {
    // Secrets and keys never reach a log line through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XsuaaCredentials")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("clientid", &self.clientid)
            .field("url", &self.url)
            .field("certurl", &self.certurl)
            .field("uaadomain", &self.uaadomain)
            .field("xsappname", &self.xsappname)
            .field("credential_type", &self.credential_type)
            .field("has_secret", &self.clientsecret.is_some())
            .field("has_certificate", &self.certificate.is_some())
            .finish()
    }
}

impl XsuaaCredentials {
    /// True when token requests use mutual TLS (a certificate and key are bound).
    pub fn is_x509(&self) -> bool {
        self.certificate.is_some() && self.key.is_some()
    }

    /// Where the token keys are: `uaadomain`, with the port of `url` when `uaadomain` names none
    /// (a development binding on a port of its own).
    pub fn keys_host(&self) -> String {
        let domain = self.uaadomain.trim_start_matches("https://").trim_end_matches('/');
        let has_port = domain
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
        match url::Url::parse(&self.url).ok().and_then(|url| url.port()) {
            Some(port) if !has_port => format!("{domain}:{port}"),
            _ => domain.to_string(),
        }
    }

    /// The token endpoint: `certurl` for x509 credentials, else `url`.
    pub fn token_url(&self) -> String {
        let base = match (&self.certurl, self.is_x509()) {
            (Some(certurl), true) => certurl,
            _ => &self.url,
        };
        format!("{}/oauth/token", base.trim_end_matches('/'))
    }
}

/// Finds the XSUAA binding. `Ok(None)` when nothing is bound.
///
/// # Errors
/// A binding that exists but is unusable, or malformed `VCAP_SERVICES`.
pub fn find_xsuaa(env: &Env, errors: &mut Error) -> Option<XsuaaCredentials> {
    let wanted = env.get("UAA_SERVICE_NAME");
    let found = match env.get("SERVICE_BINDING_ROOT") {
        Some(root) if !root.is_empty() => from_files(Path::new(root), wanted, errors),
        _ => None,
    };
    let found = match found {
        Some(found) => Some(found),
        None => from_vcap(env, wanted, errors),
    };
    let (name, source, mut credentials) = found?;
    // Applied before the check, so that a binding without a key of its own is complete with it.
    if let Some(key) = env.get("XSUAA_PRIVATE_KEY") {
        credentials.insert("key".into(), Value::String(key.to_string()));
    }
    parse_credentials(&name, source, &credentials, errors)
}

fn from_vcap(
    env: &Env,
    wanted: Option<&str>,
    errors: &mut Error,
) -> Option<(String, BindingSource, Map<String, Value>)> {
    let services = vcap_services(env, errors)?;
    let instances = vcap_instances(&services);
    let chosen = if let Some(wanted) = wanted {
        let found = instances
            .iter()
            .find(|(_, o)| o.get("name").and_then(Value::as_str) == Some(wanted));
        if found.is_none() {
            errors.push(
                "UAA_SERVICE_NAME",
                format!("no service named {wanted:?} in VCAP_SERVICES"),
            );
        }
        found
    } else {
        instances
            .iter()
            .find(|(label, o)| *label == "xsuaa" || has_tag(o.get("tags"), "xsuaa"))
            .or_else(|| {
                instances.iter().find(|(label, o)| {
                    *label == "user-provided" && has_tag(o.get("credentials").and_then(|c| c.get("tags")), "xsuaa")
                })
            })
    }?;
    let name = instance_name(chosen.1, "xsuaa");
    let credentials = instance_credentials(&name, chosen.1, errors)?;
    Some((name, BindingSource::VcapServices, credentials))
}

/// `VCAP_SERVICES` parsed: service lists by label. `None` when unset or malformed (reported).
pub(super) fn vcap_services(env: &Env, errors: &mut Error) -> Option<Map<String, Value>> {
    let text = env.get("VCAP_SERVICES")?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        Ok(_) => {
            errors.push("VCAP_SERVICES", "must be a JSON object of service lists");
            None
        }
        Err(error) => {
            errors.push("VCAP_SERVICES", format!("not valid JSON: {error}"));
            None
        }
    }
}

/// Every bound instance of `VCAP_SERVICES` with its service label.
pub(super) fn vcap_instances(services: &Map<String, Value>) -> Vec<(&str, &Map<String, Value>)> {
    services
        .iter()
        .filter_map(|(label, list)| list.as_array().map(|list| (label.as_str(), list)))
        .flat_map(|(label, list)| list.iter().filter_map(move |item| item.as_object().map(|o| (label, o))))
        .collect()
}

/// True when `tags` is a list that holds `tag`.
pub(super) fn has_tag(tags: Option<&Value>, tag: &str) -> bool {
    tags.and_then(Value::as_array)
        .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(tag)))
}

/// An instance's `name`, or `fallback` when it has none.
pub(super) fn instance_name(instance: &Map<String, Value>, fallback: &str) -> String {
    instance
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_string()
}

/// An instance's `credentials` object; reported when missing.
pub(super) fn instance_credentials(
    name: &str,
    instance: &Map<String, Value>,
    errors: &mut Error,
) -> Option<Map<String, Value>> {
    match instance.get("credentials").and_then(Value::as_object) {
        Some(credentials) => Some(credentials.clone()),
        None => {
            errors.push(format!("VCAP_SERVICES: {name}.credentials"), "missing or not an object");
            None
        }
    }
}

/// The binding folders under `root`, sorted, hidden ones left out; `None` when `root` cannot be
/// read (reported).
pub(super) fn binding_folders(root: &Path, errors: &mut Error) -> Option<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(
                "SERVICE_BINDING_ROOT",
                format!("cannot read {}: {error}", root.display()),
            );
            return None;
        }
    };
    let mut folders: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir() && !file_name(path).starts_with('.'))
        .collect();
    folders.sort();
    Some(folders)
}

/// The `type` file of a binding folder, trimmed.
pub(super) fn binding_type(folder: &Path) -> Option<String> {
    read_text(&folder.join("type")).map(|text| text.trim().to_string())
}

fn from_files(
    root: &Path,
    wanted: Option<&str>,
    errors: &mut Error,
) -> Option<(String, BindingSource, Map<String, Value>)> {
    let folders = binding_folders(root, errors)?;
    for folder in folders {
        let name = file_name(&folder);
        if let Some(wanted) = wanted {
            if name != wanted {
                continue;
            }
        }
        if binding_type(&folder).as_deref() != Some("xsuaa") {
            continue;
        }
        match read_binding_files(&folder) {
            Ok(credentials) => return Some((name, BindingSource::Files(folder.clone()), credentials)),
            Err(error) => {
                errors.push(
                    format!("SERVICE_BINDING_ROOT: {name}"),
                    format!("cannot read binding files: {error}"),
                );
                return None;
            }
        }
    }
    if let Some(wanted) = wanted {
        errors.push(
            "UAA_SERVICE_NAME",
            format!("no xsuaa binding named {wanted:?} under {}", root.display()),
        );
    }
    None
}

/// Reads one binding folder: one file per field; `.metadata` says which fields are JSON.
pub fn read_binding_files(folder: &Path) -> std::io::Result<Map<String, Value>> {
    let json_fields: Vec<String> = read_text(&folder.join(".metadata"))
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .map(|metadata| {
            metadata
                .get("credentialProperties")
                .and_then(Value::as_array)
                .map(|props| {
                    props
                        .iter()
                        .filter(|p| p.get("format").and_then(Value::as_str) == Some("json"))
                        .filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut credentials = Map::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        let name = file_name(&path);
        // kubelet's `..data` and `..<timestamp>` folders, and `.metadata`, are not fields.
        if name.starts_with('.') || !path.is_file() || name == "type" || name == "provider" {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let value = if json_fields.contains(&name) {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        credentials.insert(name, value);
    }
    Ok(credentials)
}

/// Checks the credential fields of a binding read again after start (a rotated binding), with the
/// same rules as at start.
///
/// # Errors
/// Every problem, with its key path.
pub fn credentials_from_map(
    name: &str,
    source: BindingSource,
    credentials: &Map<String, Value>,
) -> Result<XsuaaCredentials, Error> {
    let mut errors = Error::default();
    match parse_credentials(name, source, credentials, &mut errors) {
        Some(parsed) if errors.is_empty() => Ok(parsed),
        _ => Err(errors),
    }
}

impl BindingSource {
    /// Where the credentials of binding `name` are read, as error messages name it.
    pub(crate) fn key_path(&self, name: &str) -> String {
        match self {
            BindingSource::VcapServices => format!("VCAP_SERVICES: {name}.credentials"),
            BindingSource::Files(folder) => format!("SERVICE_BINDING_ROOT: {}", folder.display()),
        }
    }
}

/// A credential's text, trimmed; `None` when it is missing, not a string, or blank.
pub(crate) fn credential_text(credentials: &Map<String, Value>, key: &str) -> Option<String> {
    credentials
        .get(key)
        .and_then(Value::as_str)
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

fn parse_credentials(
    name: &str,
    source: BindingSource,
    credentials: &Map<String, Value>,
    errors: &mut Error,
) -> Option<XsuaaCredentials> {
    let path = source.key_path(name);
    let text = |key: &str| credential_text(credentials, key);
    let before = errors.problems.len();
    let clientid = text("clientid");
    if clientid.is_none() {
        errors.push(format!("{path}.clientid"), "is required");
    }
    let url = text("url");
    match &url {
        None => errors.push(format!("{path}.url"), "is required"),
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => errors.push(
            format!("{path}.url"),
            format!("must be an absolute http(s) URL, got {url:?}"),
        ),
        _ => {}
    }
    let clientsecret = text("clientsecret");
    let certificate = text("certificate");
    let key = text("key");
    if clientsecret.is_none() && certificate.is_none() {
        errors.push(&path, "OAuth2 requires clientsecret or certificate");
    }
    if certificate.is_some() && key.is_none() {
        errors.push(
            format!("{path}.key"),
            "is required with certificate (or set XSUAA_PRIVATE_KEY)",
        );
    }
    let certurl = text("certurl");
    if certificate.is_some() && certurl.is_none() {
        errors.push(format!("{path}.certurl"), "is required for x509 credentials");
    }
    let xsappname = text("xsappname");
    if xsappname.is_none() {
        errors.push(format!("{path}.xsappname"), "is required");
    }
    if errors.problems.len() != before {
        return None;
    }
    let url = url?.trim_end_matches('/').to_string();
    let uaadomain = text("uaadomain").unwrap_or_else(|| {
        url::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_default()
    });
    Some(XsuaaCredentials {
        name: name.to_string(),
        source,
        clientid: clientid?,
        clientsecret,
        url,
        certurl: certurl.map(|u| u.trim_end_matches('/').to_string()),
        uaadomain,
        xsappname: xsappname?,
        identityzone: text("identityzone"),
        apiurl: text("apiurl"),
        identityzoneid: text("identityzoneid").or_else(|| text("zoneid")),
        credential_type: text("credential-type"),
        tenantmode: text("tenantmode"),
        certificate,
        key,
    })
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}
