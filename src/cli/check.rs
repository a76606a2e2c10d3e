//! `approuter check`: loads what the router would load (xs-app.json, the environment,
//! default-env.json, the XSUAA binding, trust roots) and reports on it without serving; with
//! `--mta` / `--xs-security` it also reads the deployment descriptors for the credential types
//! XSUAA will hand out. The exit status makes it a CI/CD gate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{EXIT_CONFIG, EXIT_DIFFERENT, EXIT_FAILURE};
use crate::app::{self, Sources};
use crate::config::{self, BindingSource, Env, ServiceBinding, ServiceBindings, XsuaaCredentials};
use crate::idp::rotation::certificate::{self, format_seconds, format_unix, ExpiryLevel};

/// Credential types `oauth2-configuration.credential-types` may list.
const CREDENTIAL_TYPES: [&str; 3] = ["binding-secret", "instance-secret", "x509"];
/// Warning period when the configuration cannot say (`CERT_EXPIRY_WARNING_HOURS`).
const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(48 * 3600);

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The app folder and xs-app.json.
    pub sources: Sources,
    /// The environment the router would see (before default-env.json).
    pub env: Env,
    /// An `mta.yaml` whose xsuaa resource is inspected.
    pub mta: Option<PathBuf>,
    /// An `xs-security.json`.
    pub xs_security: Option<PathBuf>,
    /// A request host whose tenant is reported (multitenancy).
    pub host: Option<String>,
}

/// How a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// A check that passed.
    Ok,
    /// Information: what was found.
    Info,
    /// Worth fixing; does not fail the check.
    Warning,
    /// Something the router could not work with (exit 1).
    Failure,
    /// A configuration problem, located by its key path (exit 64).
    ConfigError,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Failure => "error",
            Severity::ConfigError => "config",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How it weighs.
    pub severity: Severity,
    /// What it is about: a key path, a file, `binding`, `certificate`.
    pub topic: String,
    /// What was found, one phrase.
    pub message: String,
}

/// Everything `check` found, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings in the order they were made.
    pub findings: Vec<Finding>,
    /// What moving the app from the Node.js router changes.
    pub migration: Migration,
}

impl Report {
    fn push(&mut self, severity: Severity, topic: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            topic: topic.into(),
            message: message.into(),
        });
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }

    /// 64 when the configuration has problems or the app has code that would not run, 1 for other
    /// failures, 3 when the app would run but behave differently than with the Node.js router,
    /// else 0 (warnings pass).
    pub fn exit_code(&self) -> u8 {
        if self.count(Severity::ConfigError) > 0 || !self.migration.extension_code.is_empty() {
            EXIT_CONFIG
        } else if self.count(Severity::Failure) > 0 {
            EXIT_FAILURE
        } else if self.migration.changes_behaviour() {
            EXIT_DIFFERENT
        } else {
            0
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(
                f,
                "{:<8} {}: {}",
                finding.severity.label(),
                finding.topic,
                finding.message
            )?;
        }
        write!(f, "{}", self.migration)?;
        let errors =
            self.count(Severity::ConfigError) + self.count(Severity::Failure) + self.migration.extension_code.len();
        let warnings = self.count(Severity::Warning);
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if errors == 0 && self.migration.changes_behaviour() {
            writeln!(
                f,
                "check passed ({warnings} warning{}), but the app behaves differently than with the Node.js router",
                plural(warnings)
            )
        } else if errors == 0 {
            writeln!(f, "check passed ({warnings} warning{})", plural(warnings))
        } else {
            writeln!(
                f,
                "check failed: {errors} error{}, {warnings} warning{}",
                plural(errors),
                plural(warnings)
            )
        }
    }
}

/// Runs every check at the current time.
pub fn run(options: &CheckOptions) -> Report {
    run_at(options, super::now_unix())
}

/// Runs every check as of `now_unix`.
pub fn run_at(options: &CheckOptions, now_unix: i64) -> Report {
    let mut report = Report::default();
    let (binding, services, warning) = check_config(options, &mut report);
    match &binding {
        Some(credentials) => check_binding(credentials, now_unix, warning, &mut report),
        None => report.push(
            Severity::Info,
            "binding",
            "no XSUAA binding found (VCAP_SERVICES, SERVICE_BINDING_ROOT): only public routes can be served",
        ),
    }
    for service in services.iter() {
        check_service(service, now_unix, warning, &mut report);
    }
    if let Some(path) = &options.xs_security {
        match read_json(path) {
            Ok(descriptor) => check_credential_types(&descriptor, "xs-security.json", &mut report),
            Err(message) => report.push(Severity::ConfigError, "xs-security.json", message),
        }
    }
    if let Some(path) = &options.mta {
        check_mta(path, &mut report);
    }
    report.migration = assess_migration(options);
    report
}

/// The migration report over the environment as the router sees it (with `default-env.json`)
/// and the keys `xs-app.json` uses.
fn assess_migration(options: &CheckOptions) -> Migration {
    let mut env = options.env.clone();
    let _ = config::load_default_env(&options.sources.dir, &mut env);
    let path = options
        .sources
        .xs_app
        .clone()
        .unwrap_or_else(|| options.sources.dir.join("xs-app.json"));
    let xs_app = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    migration::assess(&options.sources.dir, &env, xs_app.as_ref())
}

/// `TENANT_HOST_PATTERN`, and for `--host` the tenant it names and the tenant's XSUAA URLs.
fn check_tenancy(config: &config::Config, host: Option<&str>, report: &mut Report) {
    let Some(tenancy) = &config.tenancy else {
        if host.is_some() {
            report.push(
                Severity::Warning,
                "--host",
                "TENANT_HOST_PATTERN is not set: there are no tenants",
            );
        }
        return;
    };
    report.push(
        Severity::Ok,
        "TENANT_HOST_PATTERN",
        format!(
            "{} (tenants log in at <tenant>.{})",
            tenancy.pattern.as_str(),
            tenancy.uaadomain
        ),
    );
    let Some(host) = host else {
        return;
    };
    match tenancy.tenant_of(host) {
        Some(tenant) => report.push(
            Severity::Ok,
            "--host",
            format!(
                "{host}: tenant {tenant}; login at {}/oauth/authorize, tokens at {}",
                tenancy.url(tenant),
                tenancy.token_url(tenant)
            ),
        ),
        None => report.push(
            Severity::Warning,
            "--host",
            format!("{host}: no tenant (requests on this host get 404)"),
        ),
    }
}

/// Which routes find their destination at the Destination service, by name or from the request.
fn check_service_destinations(config: &config::Config, report: &mut Report) {
    use crate::config::{DestinationRef, RouteKind};
    let mut named = Vec::new();
    let mut dynamic = Vec::new();
    for route in &config.routes {
        match &route.kind {
            RouteKind::Destination(DestinationRef::Service(name)) => {
                named.push(format!("{name} (routes[{}])", route.index))
            }
            RouteKind::Destination(DestinationRef::Capture(group)) => {
                dynamic.push(format!("routes[{}]: ${group}", route.index))
            }
            RouteKind::Destination(DestinationRef::Host) => {
                dynamic.push(format!("routes[{}]: * (DESTINATION_HOST_PATTERN)", route.index))
            }
            _ => {}
        }
    }
    if !named.is_empty() {
        report.push(
            Severity::Ok,
            "Destination service",
            format!("found at request time: {}", named.join(", ")),
        );
    }
    if !dynamic.is_empty() {
        report.push(
            Severity::Ok,
            "dynamic destinations",
            format!(
                "{}; names not in the destinations variable need HTML5.DynamicDestination at the Destination service",
                dynamic.join(", ")
            ),
        );
    }
}

/// The SaaS registry's callbacks the router answers.
fn check_saas_registry(config: &config::Config, report: &mut Report) {
    let Some(registry) = &config.saas_registry else {
        return;
    };
    let origin = match &registry.source {
        BindingSource::VcapServices => "VCAP_SERVICES".to_string(),
        BindingSource::Files(folder) => format!("binding files in {}", folder.display()),
    };
    report.push(
        Severity::Ok,
        "saas-registry binding",
        format!(
            "{:?} from {origin}: dependencies at GET {}, subscriptions at PUT/DELETE {}/{{tenantId}}, for tokens \
             with the scope {}.Callback",
            registry.name,
            registry.dependencies_path,
            registry.tenants_path,
            config
                .xsuaa
                .as_ref()
                .map_or("<xsappname>", |xsuaa| xsuaa.xsappname.as_str()),
        ),
    );
}

/// The configuration as the router loads it; returns the bindings (found even when other parts of
/// the configuration are broken) and the expiry warning period.
fn check_config(options: &CheckOptions, report: &mut Report) -> (Option<XsuaaCredentials>, ServiceBindings, Duration) {
    match app::load_config(&options.sources, options.env.clone()) {
        Ok(config) => {
            report.push(
                Severity::Ok,
                "xs-app.json",
                format!(
                    "{} route{}, {} destination{}",
                    config.routes.len(),
                    if config.routes.len() == 1 { "" } else { "s" },
                    config.destinations.len(),
                    if config.destinations.len() == 1 { "" } else { "s" },
                ),
            );
            check_query_matching(&config, report);
            check_service_destinations(&config, report);
            check_tenancy(&config, options.host.as_deref(), report);
            check_saas_registry(&config, report);
            match crate::tls::root_store(&config.server.ca_cert_paths, &[]) {
                Ok(roots) => report.push(Severity::Ok, "trust roots", format!("{} certificates", roots.len())),
                Err(error) => report.push(Severity::Failure, "XS_CACERT_PATH", error.to_string()),
            }
            (
                config.xsuaa.clone(),
                config.services.clone(),
                config.auth.certificate_expiry_warning,
            )
        }
        Err(errors) => {
            for problem in &errors.problems {
                report.push(Severity::ConfigError, &problem.path, &problem.message);
            }
            // The binding is reported even so; its own problems are in the list already.
            let mut env = options.env.clone();
            let mut ignored = config::Error::default();
            let _ = config::load_default_env(&options.sources.dir, &mut env);
            (
                config::find_xsuaa(&env, &mut ignored),
                config::find_services(&env, &mut ignored),
                DEFAULT_EXPIRY_WARNING,
            )
        }
    }
}

/// Routes whose meaning depends on the query string. The reference matches sources against the URL
/// with its query; the router also takes a route whose source matches the path alone, at its place
/// in the table, so that a query cannot move a request past it. Tables where that differs, or where
/// a client picks a route by its query, are worth a look.
fn check_query_matching(config: &config::Config, report: &mut Report) {
    let mut anchored = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        let source = route.source.as_str();
        if matches_query(source) {
            report.push(
                Severity::Warning,
                format!("routes[{index}].source"),
                "matches the query string, which the client chooses: a client takes or avoids this route by \
                 its query, so it must not be what separates public from protected requests",
            );
        } else if index + 1 < config.routes.len() && query_defeats(source) {
            anchored.push(format!("routes[{index}]"));
        }
    }
    if !anchored.is_empty() {
        report.push(
            Severity::Warning,
            "routes",
            format!(
                "{} end with `$`: for a URL with a query string the Node.js router skips such a route for a later \
                 one; approuter takes it when the path alone matches, so these requests route differently (and \
                 safely) here",
                anchored.join(", ")
            ),
        );
    }
}

/// True when a source names the query: an escaped `?` (`\?`) or `[?]`.
fn matches_query(source: &str) -> bool {
    source.contains("\\?") || source.contains("[?]")
}

/// True when a query string keeps a source from matching: it ends with an unescaped `$` that
/// nothing like `.*` (which takes the query too) comes before.
fn query_defeats(source: &str) -> bool {
    let Some(rest) = source.strip_suffix('$') else {
        return false;
    };
    let backslashes = rest.bytes().rev().take_while(|&b| b == b'\\').count();
    let open_end = rest.trim_end_matches(')').trim_end_matches('?');
    backslashes % 2 == 0 && !open_end.ends_with(".*") && !open_end.ends_with(".+")
}

fn check_binding(credentials: &XsuaaCredentials, now_unix: i64, warning: Duration, report: &mut Report) {
    let origin = match &credentials.source {
        BindingSource::VcapServices => "VCAP_SERVICES".to_string(),
        BindingSource::Files(folder) => format!("binding files in {}", folder.display()),
    };
    let credential_type = match (&credentials.credential_type, credentials.is_x509()) {
        (Some(declared), _) => declared.clone(),
        (None, true) => "x509".into(),
        (None, false) => "binding-secret".into(),
    };
    report.push(
        Severity::Info,
        "binding",
        format!(
            "xsuaa binding {:?} from {origin}, credential type {credential_type}, clientid {}",
            credentials.name, credentials.clientid
        ),
    );
    if !credentials.is_x509() {
        report.push(
            Severity::Info,
            "token endpoint",
            format!("{} with the client secret", credentials.token_url()),
        );
        return;
    }
    match &credentials.certurl {
        Some(certurl) => report.push(Severity::Ok, "certurl", format!("{certurl} (mTLS token endpoint)")),
        None => report.push(Severity::Failure, "certurl", "missing: x509 credentials need it"),
    }
    let (Some(pem), Some(key)) = (&credentials.certificate, &credentials.key) else {
        return;
    };
    check_certificate("", pem, key, now_unix, warning, report);
}

/// A bound service: where it was found, its credential type and token endpoint, and for x509
/// credentials the certificate as for XSUAA's.
fn check_service(service: &ServiceBinding, now_unix: i64, warning: Duration, report: &mut Report) {
    let tag = service.kind.tag();
    let origin = match &service.source {
        BindingSource::VcapServices => "VCAP_SERVICES".to_string(),
        BindingSource::Files(folder) => format!("binding files in {}", folder.display()),
    };
    let credential_type = if service.is_x509() { "x509" } else { "binding-secret" };
    report.push(
        Severity::Info,
        format!("{tag} binding"),
        format!(
            "{tag} binding {:?} from {origin}, credential type {credential_type}, clientid {}, token URL {}",
            service.name, service.clientid, service.token_url
        ),
    );
    if let config::ServiceCredential::X509 { certificate, key } = &service.credential {
        check_certificate(&format!("{tag} "), certificate, key, now_unix, warning, report);
    }
}

/// A client certificate: subject, issuer and validity, the key, and the time to expiry; topics
/// start with `prefix`.
fn check_certificate(prefix: &str, pem: &str, key: &str, now_unix: i64, warning: Duration, report: &mut Report) {
    let info = match certificate::inspect(pem) {
        Ok(info) => info,
        Err(error) => {
            report.push(Severity::Failure, format!("{prefix}certificate"), error.to_string());
            return;
        }
    };
    report.push(
        Severity::Info,
        format!("{prefix}certificate"),
        format!(
            "subject {}; issuer {}; serial {}; valid {} to {}; chain of {}",
            info.subject,
            info.issuer,
            info.serial,
            format_unix(info.not_before),
            format_unix(info.not_after),
            info.chain_length
        ),
    );
    match certificate::check_key(pem, key) {
        Ok(()) => report.push(
            Severity::Ok,
            format!("{prefix}key"),
            "the private key matches the certificate",
        ),
        Err(error) => report.push(Severity::Failure, format!("{prefix}key"), error.to_string()),
    }
    let seconds_left = info.seconds_left(now_unix);
    let days = seconds_left as f64 / 86_400.0;
    match certificate::check_validity(&info, now_unix) {
        Err(error) => report.push(Severity::Failure, format!("{prefix}expiry"), error.to_string()),
        Ok(()) => match certificate::expiry_level(seconds_left, warning) {
            ExpiryLevel::Valid => report.push(
                Severity::Ok,
                format!("{prefix}expiry"),
                format!("{days:.1} days to expiry ({})", format_seconds(seconds_left)),
            ),
            ExpiryLevel::ExpiresSoon | ExpiryLevel::Expired => report.push(
                Severity::Warning,
                format!("{prefix}expiry"),
                format!(
                    "{days:.1} days to expiry ({}), less than the {} h warning period",
                    format_seconds(seconds_left),
                    warning.as_secs() / 3600
                ),
            ),
        },
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{} is not valid JSON: {error}", path.display()))
}

/// `oauth2-configuration.credential-types` of an xs-security descriptor (`topic` says where it is).
fn check_credential_types(descriptor: &Value, topic: &str, report: &mut Report) {
    let path = format!("{topic}: oauth2-configuration.credential-types");
    let Some(types) = descriptor
        .get("oauth2-configuration")
        .and_then(|o| o.get("credential-types"))
    else {
        report.push(
            Severity::Warning,
            path,
            "not set: bindings get binding-secret; add \"x509\" to allow certificate credentials",
        );
        return;
    };
    let Some(list) = types.as_array() else {
        report.push(Severity::ConfigError, path, "must be a list of credential types");
        return;
    };
    let mut names = Vec::new();
    for (index, item) in list.iter().enumerate() {
        match item.as_str() {
            Some(name) if CREDENTIAL_TYPES.contains(&name) => names.push(name),
            _ => report.push(
                Severity::ConfigError,
                format!("{path}[{index}]"),
                format!("must be one of binding-secret, instance-secret, x509, got {item}"),
            ),
        }
    }
    let Some(default) = names.first() else {
        report.push(Severity::ConfigError, path, "is empty");
        return;
    };
    if names.contains(&"x509") {
        report.push(Severity::Ok, &path, format!("includes x509 ({})", names.join(", ")));
    } else {
        report.push(
            Severity::Warning,
            &path,
            format!(
                "does not include x509 ({}): no certificate credentials",
                names.join(", ")
            ),
        );
    }
    if *default == "x509" {
        report.push(
            Severity::Info,
            path,
            "default credential type is x509 (the first entry)",
        );
    } else {
        report.push(
            Severity::Info,
            path,
            format!(
                "default credential type is {default} (the first entry): x509 bindings need parameters, see `approuter binding-params`"
            ),
        );
    }
}

/// The xsuaa resources of an `mta.yaml`, with their security descriptor inline
/// (`parameters.config`), from a file (`parameters.path`), or both (the inline part wins).
fn check_mta(path: &Path, report: &mut Report) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            report.push(
                Severity::ConfigError,
                "mta.yaml",
                format!("cannot read {}: {error}", path.display()),
            );
            return;
        }
    };
    let mta: Value = match serde_saphyr::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            report.push(Severity::ConfigError, "mta.yaml", format!("not valid YAML: {error}"));
            return;
        }
    };
    let resources = mta
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let base = path.parent().unwrap_or(Path::new("."));
    let mut found = false;
    for (index, resource) in resources.iter().enumerate() {
        if !is_xsuaa_resource(resource) {
            continue;
        }
        found = true;
        let name = resource.get("name").and_then(Value::as_str).unwrap_or("");
        let at = format!("mta.yaml: resources[{index}]");
        let parameters = resource.get("parameters");
        let mut descriptor = Value::Object(Default::default());
        if let Some(file) = parameters.and_then(|p| p.get("path")).and_then(Value::as_str) {
            match read_json(&base.join(file)) {
                Ok(from_file) => descriptor = from_file,
                Err(message) => {
                    report.push(Severity::ConfigError, format!("{at}.parameters.path"), message);
                    continue;
                }
            }
        }
        match parameters.and_then(|p| p.get("config")) {
            Some(inline @ Value::Object(_)) => merge(&mut descriptor, inline),
            Some(_) => {
                report.push(
                    Severity::ConfigError,
                    format!("{at}.parameters.config"),
                    "must be a mapping",
                );
                continue;
            }
            None => {}
        }
        report.push(Severity::Info, &at, format!("xsuaa resource {name:?}"));
        check_credential_types(&descriptor, &at, report);
        report_binding_requests(&mta, name, report);
    }
    if !found {
        report.push(Severity::Warning, "mta.yaml: resources", "no xsuaa resource declared");
    }
}

fn is_xsuaa_resource(resource: &Value) -> bool {
    let service = resource
        .get("parameters")
        .and_then(|p| p.get("service"))
        .and_then(Value::as_str);
    let kind = resource.get("type").and_then(Value::as_str).unwrap_or("");
    service == Some("xsuaa") || kind.starts_with("com.sap.xs.uaa")
}

/// Modules that bind the resource with `parameters.config.credential-type`.
fn report_binding_requests(mta: &Value, resource: &str, report: &mut Report) {
    let modules = mta
        .get("modules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (m, module) in modules.iter().enumerate() {
        let requires = module
            .get("requires")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (r, required) in requires.iter().enumerate() {
            if required.get("name").and_then(Value::as_str) != Some(resource) {
                continue;
            }
            let requested = required
                .get("parameters")
                .and_then(|p| p.get("config"))
                .and_then(|c| c.get("credential-type"))
                .and_then(Value::as_str);
            if let Some(requested) = requested {
                let module_name = module.get("name").and_then(Value::as_str).unwrap_or("");
                report.push(
                    Severity::Info,
                    format!("mta.yaml: modules[{m}].requires[{r}].parameters.config.credential-type"),
                    format!("module {module_name:?} binds with credential type {requested}"),
                );
            }
        }
    }
}

/// Deep merge: objects key by key, anything else replaced.
fn merge(target: &mut Value, overlay: &Value) {
    match (target, overlay) {
        (Value::Object(target), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, overlay) => *target = overlay.clone(),
    }
}

mod migration;
pub use migration::Migration;

#[cfg(test)]
mod tests;
