use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::Config;

fn dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const XS_APP: &str = r#"{"routes": [{"source": "^/(.*)$", "destination": "backend", "authenticationType": "none"}]}"#;
const DESTINATIONS: &str = r#"[{"name": "backend", "url": "http://127.0.0.1:1"}]"#;

fn vcap_xsuaa() -> String {
    json!({"xsuaa": [{
        "label": "xsuaa", "name": "uaa", "tags": ["xsuaa"],
        "credentials": {
            "clientid": "sb-app!t1", "clientsecret": "secret", "xsappname": "app!t1",
            "url": "https://provider.auth.example.com", "uaadomain": "auth.example.com",
            "identityzone": "provider", "identityzoneid": "zone-p"
        }
    }]})
    .to_string()
}

fn load(env: &Env, xs_app: &str) -> Result<Config, Error> {
    Config::load(xs_app, env, dir())
}

fn with(pairs: &[(&str, &str)]) -> Env {
    let mut all = vec![("destinations", DESTINATIONS)];
    all.extend_from_slice(pairs);
    Env::from_pairs(all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// A value of `setting` that is not harmless (a refused or warned one must act on it).
fn acting_value(setting: &Setting) -> &'static str {
    ["true", "0", "x"]
        .into_iter()
        .find(|value| !setting.is_harmless(value))
        .unwrap_or("x")
}

fn concrete(name: &str) -> String {
    match name.strip_suffix('*') {
        Some(prefix) => format!("{prefix}EXAMPLE"),
        None => name.to_string(),
    }
}

#[test]
fn every_name_has_exactly_one_row() {
    let mut seen = BTreeSet::new();
    for setting in ENV_VARS.iter().chain(XS_APP_KEYS) {
        let key = (format!("{:?}", setting.source), setting.name);
        assert!(seen.insert(key), "{} has two rows", setting.name);
    }
    for setting in ENV_VARS {
        let others: Vec<_> = ENV_VARS
            .iter()
            .filter(|other| other.matches(&concrete(setting.name)))
            .map(|other| other.name)
            .collect();
        assert_eq!(others, [setting.name], "{} is matched by several rows", setting.name);
    }
}

/// The router reads every variable that the table says it honours, and nothing without a row.
#[test]
fn honoured_variables_are_read_and_every_read_has_a_row() {
    let scenarios: Vec<(Env, &str)> = vec![
        (with(&[]), XS_APP),
        (
            with(&[
                ("httpHeaders", r#"[{"x-approuter-instance": "?"}]"#),
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("SESSION_SECRET", "0123456789abcdef0123456789abcdef"),
            ]),
            XS_APP,
        ),
        (
            with(&[
                ("VCAP_SERVICES", &vcap_xsuaa()),
                ("TENANT_HOST_PATTERN", "^(.*)\\.app\\.example\\.com$"),
                ("TLS_CERT_PATH", "/nonexistent/cert.pem"),
                ("TLS_KEY_PATH", "/nonexistent/key.pem"),
                (
                    "EXT_SESSION_MGT",
                    r#"{"instanceName":"redis","storageType":"redis","sessionSecret":"0123456789abcdef0123"}"#,
                ),
            ]),
            XS_APP,
        ),
        (
            with(&[
                ("VCAP_SERVICES", &vcap_xsuaa()),
                ("DESTINATION_HOST_PATTERN", "^(.*)\\.example\\.com$"),
            ]),
            r#"{"routes": [{"source": "^/(.*)$", "destination": "*"}]}"#,
        ),
    ];
    let mut read = BTreeSet::new();
    for (env, xs_app) in &scenarios {
        let _ = load(env, xs_app);
        read.extend(env.looked_up());
    }
    // The binary reads these before the configuration loads (logging starts first).
    read.insert("LOG_JSON".to_string());
    let unread: Vec<_> = ENV_VARS
        .iter()
        .filter(|setting| matches!(setting.status, Honoured | Own))
        .filter(|setting| !read.contains(setting.name))
        .map(|setting| setting.name)
        .collect();
    assert!(unread.is_empty(), "honoured in the table but never read: {unread:?}");
    let without_row: Vec<_> = read.iter().filter(|name| env_var(name).is_none()).collect();
    assert!(
        without_row.is_empty(),
        "read but without a row in ENV_VARS: {without_row:?}"
    );
    let not_honoured: Vec<_> = read
        .iter()
        .filter_map(|name| env_var(name).map(|setting| (name, setting.status)))
        .filter(|(_, status)| matches!(status, Refused(_) | Warned(_) | NodeOnly(_)))
        .map(|(name, _)| name)
        .collect();
    assert!(
        not_honoured.is_empty(),
        "read, but the table says they are not honoured: {not_honoured:?}"
    );
}

/// Each refused, warned, Node-only or differing variable does what its row says when set.
#[test]
fn set_variables_do_what_their_row_says() {
    for setting in ENV_VARS {
        let name = concrete(setting.name);
        let file = dir().join("Cargo.toml").display().to_string();
        let value = match setting.name {
            "XS_CACERT_PATH" => file.as_str(),
            _ => acting_value(setting),
        };
        let env = with(&[(&name, value)]);
        let outcome = load(&env, XS_APP);
        let expected_level = match setting.status {
            Honoured | Own => continue,
            Refused(_) => {
                let errors = outcome
                    .err()
                    .unwrap_or_else(|| panic!("{name}={value} must stop start-up"));
                assert!(
                    errors
                        .problems
                        .iter()
                        .any(|p| p.path == name && p.message.contains("not yet supported")),
                    "{name}: {errors}"
                );
                continue;
            }
            Differs(_) | Warned(_) => Level::Warn,
            NodeOnly(_) => Level::Info,
        };
        let config = outcome.unwrap_or_else(|errors| panic!("{name}={value} must not stop start-up: {errors}"));
        assert!(
            config
                .notes
                .iter()
                .any(|note| note.name == name && note.level == expected_level),
            "{name}={value} gives no {expected_level:?} note: {:?}",
            config.notes
        );
    }
}

#[test]
fn harmless_values_pass_silently() {
    for (name, value) in [
        ("NODE_TLS_REJECT_UNAUTHORIZED", "1"),
        ("HTTP2_SUPPORT", "false"),
        ("PKCE_ENABLED", "TRUE"),
        ("PLATFORM_COOKIE_NAME", "__VCAP_ID__"),
    ] {
        let config = load(&with(&[(name, value)]), XS_APP).unwrap_or_else(|errors| panic!("{name}: {errors}"));
        assert!(config.notes.is_empty(), "{name}={value}: {:?}", config.notes);
    }
    let errors = load(&with(&[("NODE_TLS_REJECT_UNAUTHORIZED", "0")]), XS_APP).expect_err("refused");
    assert!(errors.to_string().contains("XS_CACERT_PATH"), "{errors}");
}

#[test]
fn unknown_variables_are_not_notes() {
    let config = load(&with(&[("PATH", "/usr/bin"), ("HOME", "/root")]), XS_APP).expect("valid");
    assert!(config.notes.is_empty());
}

/// A sample `xs-app.json` using each key, with the environment it needs.
fn xs_app_sample(setting: &Setting) -> String {
    let route = |extra: serde_json::Value| {
        let mut route = json!({"source": "^/x/(.*)$", "destination": "backend", "authenticationType": "none"});
        for (key, value) in extra.as_object().into_iter().flatten() {
            route[key] = value.clone();
        }
        if route.get("localDir").is_some() || route.get("service").is_some() {
            route.as_object_mut().map(|route| route.remove("destination"));
        }
        json!({"routes": [route]})
    };
    let document = match (setting.source, setting.name) {
        (Source::XsApp, "welcomeFile") => json!({"welcomeFile": "index.html", "routes": []}),
        (Source::XsApp, "authenticationMethod") => json!({"authenticationMethod": "none", "routes": []}),
        (Source::XsApp, "stateProtection") => json!({"stateProtection": false, "routes": []}),
        (Source::XsApp, "sessionTimeout") => json!({"sessionTimeout": 5, "routes": []}),
        (Source::XsApp, "pluginMetadataEndpoint") => json!({"pluginMetadataEndpoint": "/plugins", "routes": []}),
        (Source::XsApp, "routes") => json!({"routes": []}),
        (Source::XsApp, "login") => json!({"login": {"callbackEndpoint": "/cb"}, "routes": []}),
        (Source::XsApp, "logout") => json!({"logout": {"logoutEndpoint": "/logout"}, "routes": []}),
        (Source::XsApp, "destinations") => {
            let mut document = route(json!({}));
            document["destinations"] = json!({"backend": {"logoutPath": "/bye"}});
            document
        }
        (Source::XsApp, "services") => json!({"services": {"srv": {"endpoint": "e"}}, "routes": []}),
        (Source::XsApp, "responseHeaders") => json!({"responseHeaders": [{"name": "X-A", "value": "b"}], "routes": []}),
        (Source::XsApp, "compression") => json!({"compression": {"enabled": false}, "routes": []}),
        (Source::XsApp, "whitelistService") => json!({"whitelistService": {"endpoint": "/allow"}, "routes": []}),
        (Source::XsApp, "websockets") => json!({"websockets": {"enabled": true}, "routes": []}),
        (Source::XsApp, "errorPage") => json!({"errorPage": [{"status": 404, "file": "README.md"}], "routes": []}),
        (Source::XsApp, "cors") => {
            json!({"cors": [{"uriPattern": "^/x", "allowedOrigin": [{"host": "a.example"}]}], "routes": []})
        }
        (Source::Route, "source" | "destination" | "authenticationType") => route(json!({})),
        (Source::Route, "httpMethods") => route(json!({"httpMethods": ["GET"]})),
        (Source::Route, "target") => route(json!({"target": "/$1"})),
        (Source::Route, "service") => route(json!({"service": "sap-approuter-userapi"})),
        (Source::Route, "endpoint") => route(json!({"service": "sap-approuter-userapi", "endpoint": "x"})),
        (Source::Route, "localDir") => route(json!({"localDir": "docs"})),
        (Source::Route, "preferLocal") => route(json!({"preferLocal": false})),
        (Source::Route, "replace") => route(json!({"localDir": "docs", "replace": {"pathSuffixes": [".html"]}})),
        (Source::Route, "csrfProtection") => route(json!({"csrfProtection": false})),
        (Source::Route, "scope") => route(json!({"scope": "x", "authenticationType": "xsuaa"})),
        (Source::Route, "cacheControl") => route(json!({"localDir": "docs", "cacheControl": "no-cache"})),
        (Source::Route, "identityProvider") => {
            route(json!({"identityProvider": "corp", "authenticationType": "xsuaa"}))
        }
        (Source::Route, "dynamicIdentityProvider") => {
            route(json!({"dynamicIdentityProvider": true, "authenticationType": "xsuaa"}))
        }
        (Source::Route, "setBackendSessionCookies") => route(json!({"setBackendSessionCookies": true})),
        (source, name) => panic!("no sample for the {source:?} key {name}: add one"),
    };
    document.to_string()
}

/// Each `xs-app.json` key does what its row says: honoured keys load, refused ones stop start-up
/// naming the key, differing ones give a warning.
#[test]
fn xs_app_keys_do_what_their_row_says() {
    let env = with(&[("VCAP_SERVICES", &vcap_xsuaa())]);
    for setting in XS_APP_KEYS {
        let xs_app = xs_app_sample(setting);
        let outcome = load(&env, &xs_app);
        match setting.status {
            Refused(_) => {
                let errors = outcome
                    .err()
                    .unwrap_or_else(|| panic!("{} must stop start-up", setting.name));
                assert!(
                    errors.problems.iter().any(|p| p.path.contains(setting.name)),
                    "{}: {errors}",
                    setting.name
                );
            }
            status => {
                let config = outcome.unwrap_or_else(|errors| panic!("{} with {xs_app}: {errors}", setting.name));
                let warned = config.notes.iter().any(|note| note.name.ends_with(setting.name));
                assert_eq!(
                    warned,
                    matches!(status, Differs(_) | Warned(_)),
                    "{}: {:?}",
                    setting.name,
                    config.notes
                );
            }
        }
    }
}

#[test]
fn unknown_xs_app_keys_are_refused() {
    let env = with(&[]);
    for xs_app in [
        r#"{"routes": [], "someKey": 1}"#,
        r#"{"routes": [{"source": "^/", "destination": "backend", "someKey": 1}]}"#,
    ] {
        let errors = load(&env, xs_app).expect_err(xs_app);
        assert!(errors.to_string().contains("someKey"), "{errors}");
    }
}

const BEGIN: &str = "<!-- BEGIN settings table: generated from src/config/settings.rs -->\n";
const END: &str = "<!-- END settings table -->";

/// `docs/configuration.md` carries the table as `markdown()` renders it; `UPDATE_DOCS=1` rewrites it.
#[test]
fn the_docs_carry_the_table() {
    let path = dir().join("docs/configuration.md");
    let text = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/configuration.md lacks the markers {BEGIN:?} … {END:?}");
    };
    let current = &text[start + BEGIN.len()..end];
    let wanted = markdown();
    if current != wanted {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{BEGIN}{wanted}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).expect("write docs");
        } else {
            panic!("docs/configuration.md's settings table is stale: run `UPDATE_DOCS=1 cargo test --lib settings`");
        }
    }
}

/// Every variable of the docs' "Environment variables" tables is honoured (or this router's own),
/// and every honoured one is documented there.
#[test]
fn documented_variables_match_the_table() {
    let text = std::fs::read_to_string(dir().join("docs/configuration.md")).expect("docs");
    let before_generated = &text[..text.find(BEGIN).unwrap_or(text.len())];
    let section = &before_generated[before_generated.find("## Environment variables").expect("section")..];
    let mut documented = BTreeSet::new();
    let mut in_variable_table = false;
    let rows = section.lines().filter(|line| {
        if line.starts_with("| variable |") {
            in_variable_table = true;
        } else if !line.starts_with('|') {
            in_variable_table = false;
        }
        in_variable_table && line.starts_with("| `")
    });
    for line in rows {
        let first = line.split('|').nth(1).unwrap_or("");
        for name in first.split(',').map(|name| name.trim().trim_matches('`')) {
            documented.insert(name.to_string());
        }
    }
    for name in &documented {
        let setting = env_var(name).unwrap_or_else(|| panic!("docs name {name}, which has no row"));
        assert!(
            matches!(setting.status, Honoured | Own | Differs(_)),
            "docs describe {name}, which the table says is {:?}",
            setting.status
        );
    }
    let undocumented: Vec<_> = ENV_VARS
        .iter()
        .filter(|setting| matches!(setting.status, Honoured | Own))
        .filter(|setting| !documented.contains(setting.name))
        .map(|setting| setting.name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "honoured but not in the docs' variable tables: {undocumented:?}"
    );
}

/// The variables the Node.js router documents or reads (its README and source, version 23), each of
/// which must have a row: a new one found there is added here first, and the test says what is
/// missing.
const NODE_VARIABLES: &[&str] = &[
    "PORT",
    "XS_BIND_ADDRESS",
    "destinations",
    "VCAP_SERVICES",
    "VCAP_APPLICATION",
    "UAA_SERVICE_NAME",
    "IAS_SERVICE_NAME",
    "XSUAA_PRIVATE_KEY",
    "IAS_PRIVATE_KEY",
    "SESSION_TIMEOUT",
    "JWT_REFRESH",
    "INCOMING_CONNECTION_TIMEOUT",
    "INCOMING_REQUEST_TIMEOUT",
    "SERVER_KEEP_ALIVE",
    "TENANT_HOST_PATTERN",
    "DESTINATION_HOST_PATTERN",
    "EXTERNAL_REVERSE_PROXY",
    "httpHeaders",
    "COOKIES",
    "SEND_XFRAMEOPTIONS",
    "CJ_PROTECT_WHITELIST",
    "WS_ALLOWED_ORIGINS",
    "CORS",
    "COMPRESSION",
    "plugins",
    "SECURE_SESSION_COOKIE",
    "SESSION_COOKIE_NAME",
    "PLATFORM_COOKIE_NAME",
    "EXT_SESSION_MGT",
    "STATE_PARAMETER_SECRET",
    "PKCE_ENABLED",
    "STATE_CACHE",
    "EXCLUDED_STATE_HANDLING_SUBDOMAINS",
    "PRESERVE_FRAGMENT",
    "INCLUDE_HOST_IN_REDIRECT",
    "EXTENDED_LOGIN_CSP",
    "OMIT_LOGIN_CSP",
    "INCLUDE_NONCE_ATTR",
    "DELETE_STALE_COOKIES",
    "LOGOUT_WITH_TOKEN_HINT",
    "DISABLE_XSUAA_ENCODING",
    "LOGOUT_WO_SESSION_TRIGGERS_LOGIN",
    "ENABLE_PERMANENT_AUTHTYPE",
    "REQUIRE_AUTH_FOR_UNKNOWN_ROUTES",
    "DYNAMIC_IDENTITY_PROVIDER",
    "MINIMUM_TOKEN_VALIDITY",
    "OUTGOING_REQUEST_OPTIONS",
    "DISABLE_CONNECTION_REUSE",
    "BACKEND_MAX_SOCKETS",
    "XS_CACERT_PATH",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "HTTP2_SUPPORT",
    "SKIP_CLIENT_CREDENTIALS_TOKENS_LOAD",
    "CACHE_SERVICE_CREDENTIALS",
    "SERVICE_DESTINATION_CACHE_TTL",
    "TOKEN_CACHE_TTL",
    "OWNAPP_CACHE_TTL",
    "HTML5_APPS_CACHE",
    "ZONE_INFO_CACHE_TTL",
    "ZONE_INFO_MAX_CACHE_TTL",
    "SUBDOMAIN_CACHE_TTL",
    "APPS_CACHE_SIZE",
    "FETCH_DESTINATIONS_CHUNK_SIZE",
    "FETCH_DESTINATIONS_CHUNK_DELAY",
    "ENABLE_X_FORWARDED_HOST_VALIDATION",
    "CHECK_X_FORWARDED_HOST_IN_LOGIN_CALLBACK",
    "ACCEPTED_FORWARD_PROTOCOLS",
    "DISABLE_PATHNAME_VALIDATION",
    "ENABLE_FRAME_ANCESTORS_CSP_HEADERS",
    "FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME",
    "MERGE_CSP_HEADERS",
    "REMOVE_CLASHING_BACKEND_SESSION_COOKIE",
    "COOKIE_BACKWARD_COMPATIBILITY",
    "BACKEND_COOKIES_SECRET",
    "STORE_SESSION_COOKIES_IN_EXTERNAL_SESSION_STORE",
    "SERVICE_2_APPROUTER",
    "SVC2AR_STORE_CSRF_IN_EXTERNAL_SESSION",
    "SVC2AR_EXTERNAL_SESSION_ID_SECRET",
    "SVC2AR_EXTERNAL_SESSION_ID_SECRET_ALT",
    "SERVICE_2_APPROUTER_DISABLE_COOKIE_MERGE",
    "ENABLE_SUBSCRIBER_TENANT_HEADER",
    "ENABLE_FORWARD_CORPORATE_IDP_TOKEN",
    "SEND_CONNECTIVITY_AUTHENTICATION",
    "ENABLE_CONNECTIVITY_TOKEN_EXCHANGE_WS",
    "HANDLE_WEBSOCKET_EXT",
    "WS_BACKPRESSURE_THRESHOLD_BYTES",
    "CIRCUIT_BREAKER_CONF",
    "DIRECT_ROUTING_URI_PATTERNS",
    "OWN_SAP_CLOUD_SERVICE",
    "HTML5_APPS_REPO_NAME",
    "DISABLE_HTML5_REPO_CACHE",
    "HTML5_REPO_KEEP_ALIVE_TIMEOUT",
    "SKIP_APP_KEY_WITH_X_FORWARD_PATH",
    "USE_HTML5_APP_XS_APPJSON_IN_LOGIN_CALLBACK",
    "RETURN_SUBSCRIBED_APPLICATIONS",
    "RETURN_LEP_APPLICATIONS",
    "SAAS_APPROUTER",
    "MIGRATED_DEST",
    "DISABLED_DEST_CREDS_TENANTS",
    "CLIENT_CERTIFICATE_HEADER_NAME",
    "XS_APP_LOG_LEVEL",
    "CF_NODEJS_LOGGING_LEVEL",
    "REQUEST_TRACE",
    "DEBUG",
    "NODE_DEBUG",
    "ACCEPT_EXTERNAL_LOG_LEVEL",
    "LOG_SESSION_LENGTH",
    "LOG_SIZE_INTERVAL",
    "DEV_ENV_TRACES",
    "RETURN_ERROR_SOURCE",
    "NODE_ENV",
    "MAX_CONCURRENT_TOKEN_REFRESHES",
    "TOKEN_REFRESH_TIMEOUT_MS",
    "UGW_GET_SESSION_ATTRIBUTES",
    "POD_NAME",
    "CF_INSTANCE_INDEX",
    "USE_JSESSION_COOKIE_SUFFIX_REQUIRED",
    "DISABLE_REQUEST_RETRIES",
    "SERVICE_BINDING_ROOT",
];

#[test]
fn every_variable_of_the_node_router_has_a_row() {
    let missing: Vec<_> = NODE_VARIABLES.iter().filter(|name| env_var(name).is_none()).collect();
    assert!(
        missing.is_empty(),
        "variables of the Node.js router without a row: {missing:?}"
    );
    let own_but_read_there: Vec<_> = NODE_VARIABLES
        .iter()
        .filter(|name| env_var(name).is_some_and(|setting| setting.status == Own))
        .collect();
    assert!(
        own_but_read_there.is_empty(),
        "marked as this router's own: {own_but_read_there:?}"
    );
}

#[test]
fn forward_auth_certificates_without_tls_is_named() {
    let vcap = json!({"xsuaa": [{
        "label": "xsuaa", "name": "uaa", "tags": ["xsuaa"],
        "credentials": {
            "clientid": "sb-app!t1", "xsappname": "app!t1", "url": "https://provider.auth.example.com",
            "certurl": "https://provider.cert.auth.example.com", "uaadomain": "auth.example.com",
            "certificate": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY-----"
        }
    }]});
    let destinations = r#"[{"name": "backend", "url": "http://127.0.0.1:1", "forwardAuthCertificates": true}]"#;
    let env = Env::from_pairs([("destinations", destinations), ("VCAP_SERVICES", &vcap.to_string())]);
    let config = load(&env, XS_APP).unwrap_or_else(|errors| panic!("{errors}"));
    assert!(
        config
            .notes
            .iter()
            .any(|note| note.name == "destinations: backend.forwardAuthCertificates" && note.level == Level::Warn),
        "{:?}",
        config.notes
    );
}
