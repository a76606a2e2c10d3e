//! Service bindings as an application sees them: the credentials object,
//! `VCAP_SERVICES`, and the Kubernetes binding directory written the way
//! kubelet's AtomicWriter does it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::certs::ClientCert;
use crate::config::ServiceKind;
use crate::state::{ServiceClient, State};
use crate::util::{self, lock};
use crate::zone::UAA_DOMAIN;

/// Fields every credential type shares.
fn base_credentials(state: &State, credential_type: &str) -> Map<String, Value> {
    let config = &state.config;
    let provider = state.provider();
    let verification_key = lock(&provider.keys).current().public_pem.clone();
    // A shared binding's client exists in every subscribed zone.
    let tenant_mode = if state.multi_zone { "shared" } else { "dedicated" };
    let mut map = Map::new();
    for (key, value) in [
        ("clientid", config.client_id.as_str()),
        ("xsappname", &config.xsappname),
        ("url", &provider.url),
        ("certurl", &provider.cert_url),
        ("uaadomain", uaa_domain(state)),
        ("identityzone", &provider.subdomain),
        ("identityzoneid", &provider.zone_id),
        ("apiurl", &provider.url),
        ("tenantid", &provider.zone_id),
        ("subaccountid", &provider.zone_id),
        ("tenantmode", tenant_mode),
        ("credential-type", credential_type),
        ("verificationkey", &verification_key),
    ] {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
    map
}

/// The `uaadomain` of this server: `host:port` of the `url` listener, or
/// the domain of the zone hosts in multi-zone mode.
pub(crate) fn uaa_domain(state: &State) -> &str {
    if state.multi_zone {
        return UAA_DOMAIN;
    }
    let url = &state.provider().url;
    url.strip_prefix("https://").unwrap_or(url)
}

/// x509 credentials carrying `cert`.
pub(crate) fn x509_credentials(state: &State, cert: &ClientCert) -> Value {
    let mut map = base_credentials(state, "x509");
    map.insert("certificate".into(), Value::String(cert.cert_pem.clone()));
    map.insert("key".into(), Value::String(cert.key_pem.clone()));
    Value::Object(map)
}

/// binding-secret credentials.
pub(crate) fn secret_credentials(state: &State, secret: &str) -> Value {
    let mut map = base_credentials(state, "binding-secret");
    map.insert("clientsecret".into(), Value::String(secret.to_string()));
    Value::Object(map)
}

/// Credentials of a service binding: the shared XSUAA fields with the
/// service client's id and xsappname, then the service's own fields.
fn service_base(state: &State, service: &ServiceClient, credential_type: &str) -> Map<String, Value> {
    let mut map = base_credentials(state, credential_type);
    map.insert("clientid".into(), Value::String(service.client_id.clone()));
    map.insert("xsappname".into(), Value::String(service.xsappname.clone()));
    map.insert(
        "instanceid".into(),
        Value::String(format!("dev-{}-instance", service.kind.label())),
    );
    match service.kind {
        ServiceKind::Destination => {
            map.insert("uri".into(), Value::String(state.destination_url.clone()));
        }
        ServiceKind::Connectivity => {
            let (host, port) = &state.connectivity_proxy;
            // Current names and the deprecated ones older consumers read.
            for (key, value) in [
                ("onpremise_proxy_host", host.clone()),
                ("onpremise_proxy_http_port", port.to_string()),
                ("onpremise_proxy_port", port.to_string()),
                ("onpremise_socks5_proxy_port", port.saturating_add(1).to_string()),
            ] {
                map.insert(key.into(), Value::String(value));
            }
            let provider = state.provider();
            let token_host = if credential_type == "x509" {
                &provider.cert_url
            } else {
                &provider.url
            };
            map.insert("token_service_url".into(), Value::String(token_host.clone()));
        }
    }
    map
}

/// x509 credentials of a service binding carrying `cert`.
pub(crate) fn service_x509_credentials(state: &State, service: &ServiceClient, cert: &ClientCert) -> Value {
    let mut map = service_base(state, service, "x509");
    map.insert("certificate".into(), Value::String(cert.cert_pem.clone()));
    map.insert("key".into(), Value::String(cert.key_pem.clone()));
    Value::Object(map)
}

/// binding-secret credentials of a service binding.
pub(crate) fn service_secret_credentials(state: &State, service: &ServiceClient, secret: &str) -> Value {
    let mut map = service_base(state, service, "binding-secret");
    map.insert("clientsecret".into(), Value::String(secret.to_string()));
    Value::Object(map)
}

/// The `VCAP_SERVICES` entry of a service binding, tagged as on Cloud
/// Foundry.
fn service_entry(kind: ServiceKind, credentials: &Value) -> Value {
    let label = kind.label();
    json!([{
        "label": label,
        "name": format!("{label}-dev"),
        "instance_name": format!("{label}-dev"),
        "plan": "lite",
        "tags": [label, "conn", "connsvc"],
        "credentials": credentials,
    }])
}

/// `VCAP_SERVICES` with the xsuaa, destination and connectivity bindings.
pub(crate) fn vcap_services_all(xsuaa: &Value, destination: &Value, connectivity: &Value) -> String {
    vcap_all(xsuaa, destination, connectivity).to_string()
}

fn vcap_all(xsuaa: &Value, destination: &Value, connectivity: &Value) -> Value {
    let mut vcap: Value = json!({});
    vcap["xsuaa"] = json!([{
        "label": "xsuaa",
        "name": "xsuaa-dev",
        "instance_name": "xsuaa-dev",
        "plan": "application",
        "tags": ["xsuaa"],
        "credentials": xsuaa,
    }]);
    vcap["destination"] = service_entry(ServiceKind::Destination, destination);
    vcap["connectivity"] = service_entry(ServiceKind::Connectivity, connectivity);
    vcap
}

/// The label, tag and binding directory name of the SaaS registry binding.
pub(crate) const SAAS_REGISTRY: &str = "saas-registry";

/// Credentials of a `saas-registry` binding whose application serves its
/// callbacks under `app_url`, at the router's default callback paths.
pub(crate) fn saas_registry_credentials(state: &State, app_url: &str) -> Value {
    let config = &state.config;
    let provider = state.provider();
    let app_url = app_url.trim_end_matches('/');
    let app_urls = json!({
        "getDependencies": format!("{app_url}/callback/v1.0/dependencies"),
        "onSubscription": format!("{app_url}/callback/v1.0/tenants/{{tenantId}}"),
    });
    json!({
        "appName": config.xsappname.split('!').next().unwrap_or(&config.xsappname),
        "xsappname": config.xsappname,
        "appUrls": app_urls.to_string(),
        "clientid": crate::tenancy::SAAS_REGISTRY_CLIENT_ID,
        "url": provider.url,
        "saas_registry_url": format!("https://saas-manager.{UAA_DOMAIN}"),
        "identityzone": provider.subdomain,
        "tenantid": provider.zone_id,
    })
}

/// `VCAP_SERVICES` with the xsuaa, destination and connectivity bindings and
/// a `saas-registry` binding.
pub(crate) fn vcap_services_with_saas_registry(
    xsuaa: &Value,
    destination: &Value,
    connectivity: &Value,
    saas_registry: &Value,
) -> String {
    let mut vcap = vcap_all(xsuaa, destination, connectivity);
    vcap[SAAS_REGISTRY] = json!([{
        "label": SAAS_REGISTRY,
        "name": "saas-registry-dev",
        "instance_name": "saas-registry-dev",
        "plan": "application",
        "tags": [SAAS_REGISTRY],
        "credentials": saas_registry,
    }]);
    vcap.to_string()
}

/// `VCAP_SERVICES` with one xsuaa binding.
pub(crate) fn vcap_services(credentials: &Value) -> String {
    json!({"xsuaa": [{
        "label": "xsuaa",
        "name": "xsuaa-dev",
        "instance_name": "xsuaa-dev",
        "plan": "application",
        "tags": ["xsuaa"],
        "credentials": credentials,
    }]})
    .to_string()
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}

/// Writes `root/name` in kubelet's layout and swaps atomically on rewrite:
/// the payload goes into a fresh `..<timestamp>` directory, `..data_tmp` is
/// pointed at it and renamed over `..data`, then the old directory goes.
pub(crate) fn write_binding_dir(
    root: &Path,
    name: &str,
    binding_type: &str,
    credentials: &Value,
) -> io::Result<PathBuf> {
    let Value::Object(fields) = credentials else {
        return Err(invalid("credentials must be a JSON object"));
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(invalid("binding name must be a plain file name"));
    }
    let mut files: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect();
    for (meta, value) in [("type", binding_type), ("provider", "sap")] {
        if !fields.contains_key(meta) {
            files.push((meta.to_string(), value.to_string()));
        }
    }
    if let Some((bad, _)) = files
        .iter()
        .find(|(key, _)| key.is_empty() || key.contains('/') || key.starts_with(".."))
    {
        return Err(invalid(&format!("credential field {bad:?} is not a valid file name")));
    }

    let dir = root.join(name);
    fs::create_dir_all(&dir)?;
    let data_link = dir.join("..data");
    let old_target = fs::read_link(&data_link).ok();
    let old_files: BTreeSet<String> = match &old_target {
        Some(target) => fs::read_dir(dir.join(target))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect(),
        None => BTreeSet::new(),
    };

    let ts_name = timestamp_dir_name()?;
    let ts_dir = dir.join(&ts_name);
    // create_dir, not create_dir_all: a name collision must fail, not merge.
    fs::create_dir(&ts_dir)?;
    for (key, text) in &files {
        fs::write(ts_dir.join(key), text)?;
    }

    let tmp_link = dir.join("..data_tmp");
    match fs::remove_file(&tmp_link) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    symlink(&ts_name, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;

    let new_files: BTreeSet<&str> = files.iter().map(|(key, _)| key.as_str()).collect();
    for key in &new_files {
        let user_path = dir.join(key);
        if fs::symlink_metadata(&user_path).is_err() {
            symlink(Path::new("..data").join(key), &user_path)?;
        }
    }
    for stale in old_files.iter().filter(|f| !new_files.contains(f.as_str())) {
        fs::remove_file(dir.join(stale))?;
    }
    if let Some(target) = old_target {
        fs::remove_dir_all(dir.join(target))?;
    }
    Ok(dir)
}

/// `..YYYY_MM_DD_hh_mm_ss.<random>` like kubelet's MkdirTemp pattern.
fn timestamp_dir_name() -> io::Result<String> {
    let now = time::OffsetDateTime::now_utc();
    let suffix = util::random_bytes::<4>().map_err(|_| io::Error::other("no randomness"))?;
    Ok(format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        util::hex(&suffix)
    ))
}
