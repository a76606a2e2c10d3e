//! Every setting the Node.js router reads, and every one of ours, with what this router does with
//! it: honoured, honoured differently on purpose, refused at start-up, warned about, or only
//! meaningful to a Node.js process. Start-up, `approuter check` and the docs all read this table,
//! so no setting is ever silently ignored.

use std::fmt::Write as _;

use super::env::Env;
use super::error::Error;

/// Where a setting lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An environment variable (or a `default-env.json` entry).
    Env,
    /// A top-level key of `xs-app.json`.
    XsApp,
    /// A key of a route in `xs-app.json`.
    Route,
}

/// What the router does with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Read and acted on as the Node.js router does.
    Honoured,
    /// Read and acted on, in a way that differs on purpose (see `docs/compatibility.md`); setting it
    /// logs a warning with the reason.
    Differs(&'static str),
    /// A setting of this router only; the Node.js router does not read it.
    Own,
    /// Setting it stops start-up: the Node.js router would behave differently with it.
    Refused(&'static str),
    /// Setting it changes nothing here; a warning names it once at start.
    Warned(&'static str),
    /// It means something to a Node.js process only; an informational line names it at start.
    NodeOnly(&'static str),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The name; a trailing `*` makes it a prefix (a family of variables).
    pub name: &'static str,
    pub source: Source,
    pub status: Status,
    /// Values that leave the router's behaviour as it is (case-insensitive): a refused or warned
    /// setting with one of them passes silently, e.g. `NODE_TLS_REJECT_UNAUTHORIZED=1`.
    pub harmless: &'static [&'static str],
}

impl Setting {
    /// Whether `name` is this row's.
    pub fn matches(&self, name: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.name == name,
        }
    }

    /// Whether `value` leaves the router's behaviour unchanged.
    pub fn is_harmless(&self, value: &str) -> bool {
        let value = value.trim();
        self.harmless
            .iter()
            .any(|harmless| harmless.eq_ignore_ascii_case(value))
    }
}

/// How loud a start-up note about a setting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
}

/// A start-up note about a setting that is set: it is honoured differently, ignored, or Node-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    /// The setting, as `NAME` or `xs-app.json: routes[2].key`.
    pub name: String,
    pub message: String,
}

const fn row(source: Source, name: &'static str, status: Status) -> Setting {
    Setting {
        name,
        source,
        status,
        harmless: &[],
    }
}

const fn env(name: &'static str, status: Status) -> Setting {
    row(Source::Env, name, status)
}

/// `env` with values that change nothing.
const fn env_unless(name: &'static str, status: Status, harmless: &'static [&'static str]) -> Setting {
    Setting {
        name,
        source: Source::Env,
        status,
        harmless,
    }
}

use Status::{Differs, Honoured, NodeOnly, Own, Refused, Warned};

const FALSE: &[&str] = &["false", "0", ""];
const TRUE: &[&str] = &["true", "1"];

const NO_HTML5_REPO: &str = "the HTML5 application repository and the managed application router are not supported";
const NO_IAS: &str = "IAS is not yet supported (XSUAA only)";
const NO_SVC2AR_SESSIONS: &str =
    "service-to-approuter external sessions are not supported: each request with x-approuter-authorization stands alone";
const NO_EXTENSIONS: &str = "the Node.js extension API does not exist here";

/// Every environment variable: the Node.js router's (documented, and those only its source reads),
/// then this router's own.
pub static ENV_VARS: &[Setting] = &[
    // Listener and bindings.
    env("PORT", Honoured),
    env("XS_BIND_ADDRESS", Honoured),
    env("destinations", Honoured),
    env("VCAP_SERVICES", Honoured),
    env("VCAP_APPLICATION", Honoured),
    env("SERVICE_BINDING_ROOT", Honoured),
    env("UAA_SERVICE_NAME", Honoured),
    env("XSUAA_PRIVATE_KEY", Honoured),
    env("IAS_SERVICE_NAME", Refused(NO_IAS)),
    env("IAS_PRIVATE_KEY", Refused(NO_IAS)),
    env("POD_NAME", Honoured),
    env("CF_INSTANCE_INDEX", Honoured),
    // Sessions and login.
    env("SESSION_TIMEOUT", Honoured),
    env("SESSION_COOKIE_NAME", Honoured),
    env("JWT_REFRESH", Honoured),
    env("STATE_CACHE", Honoured),
    env("PRESERVE_FRAGMENT", Honoured),
    env("COOKIES", Honoured),
    env("SECURE_SESSION_COOKIE", Honoured),
    env("EXT_SESSION_MGT", Honoured),
    env("DYNAMIC_IDENTITY_PROVIDER", Honoured),
    env_unless(
        "STATE_PARAMETER_SECRET",
        Differs("the OAuth state and PKCE are always used, for every client (RFC 9700)"),
        TRUE,
    ),
    env_unless(
        "PKCE_ENABLED",
        Differs("PKCE is always used (RFC 9700)"),
        TRUE,
    ),
    env(
        "EXCLUDED_STATE_HANDLING_SUBDOMAINS",
        Differs("the OAuth state is checked on every tenant (login CSRF protection cannot be switched off)"),
    ),
    env_unless(
        "PLATFORM_COOKIE_NAME",
        Warned("the platform's stickiness cookie is not used: sessions are found by the session cookie alone"),
        &["__VCAP_ID__"],
    ),
    env_unless(
        "USE_JSESSION_COOKIE_SUFFIX_REQUIRED",
        Refused("cookie names derived from the application id are not supported; set SESSION_COOKIE_NAME"),
        FALSE,
    ),
    env_unless(
        "LOGOUT_WO_SESSION_TRIGGERS_LOGIN",
        Refused("a logout without a session never starts a login here"),
        FALSE,
    ),
    env_unless(
        "REQUIRE_AUTH_FOR_UNKNOWN_ROUTES",
        Refused("a request that no route matches gets 404 without a login"),
        FALSE,
    ),
    env_unless(
        "MINIMUM_TOKEN_VALIDITY",
        Refused("tokens are not refused for a short remaining validity; they are refreshed JWT_REFRESH minutes before expiry"),
        &["0"],
    ),
    env(
        "INCLUDE_HOST_IN_REDIRECT",
        Warned("the login redirect is built from APPROUTER_URL or the request's trusted host"),
    ),
    env(
        "EXTENDED_LOGIN_CSP",
        Warned("the login page's Content-Security-Policy is fixed (inline script by nonce only)"),
    ),
    env(
        "OMIT_LOGIN_CSP",
        Warned("the login page always carries its Content-Security-Policy"),
    ),
    env(
        "INCLUDE_NONCE_ATTR",
        Warned("the login page's script is always allowed by nonce, never by 'unsafe-inline'"),
    ),
    env(
        "DELETE_STALE_COOKIES",
        Warned("stale cookies are replaced by the next login's cookies; no clean-up redirect"),
    ),
    env("LOGOUT_WITH_TOKEN_HINT", Warned("the central logout redirect carries no id_token_hint")),
    env("DISABLE_XSUAA_ENCODING", Warned("the logout redirect URL is always encoded")),
    env(
        "ENABLE_PERMANENT_AUTHTYPE",
        Warned("the callback's authType parameter is for IAS, which is not supported"),
    ),
    env(
        "MAX_CONCURRENT_TOKEN_REFRESHES",
        Warned("each session refreshes its token at most once at a time; refreshes are not limited in number"),
    ),
    env(
        "TOKEN_REFRESH_TIMEOUT_MS",
        Warned("a refresh has the XSUAA timeout, OUTGOING_REQUEST_OPTIONS.xsuaa"),
    ),
    env(
        "STORE_SESSION_COOKIES_IN_EXTERNAL_SESSION_STORE",
        Warned("backend session cookies are always kept in the session, in Redis when sessions are"),
    ),
    env(
        "COOKIE_BACKWARD_COMPATIBILITY",
        Warned("cookies always carry the SameSite attribute of COOKIES (default Lax)"),
    ),
    env_unless(
        "UGW_GET_SESSION_ATTRIBUTES",
        Refused("the /ugw-session-context endpoint is not served"),
        FALSE,
    ),
    // Requests, headers, security.
    env("INCOMING_CONNECTION_TIMEOUT", Honoured),
    env("INCOMING_REQUEST_TIMEOUT", Honoured),
    env("EXTERNAL_REVERSE_PROXY", Honoured),
    env("MERGE_CSP_HEADERS", Honoured),
    env("ENABLE_FRAME_ANCESTORS_CSP_HEADERS", Honoured),
    env("FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME", Honoured),
    env(
        "SERVER_KEEP_ALIVE",
        Warned("an idle client connection is closed after INCOMING_HEADER_TIMEOUT (default 30 s)"),
    ),
    env("TENANT_HOST_PATTERN", Honoured),
    env("DESTINATION_HOST_PATTERN", Honoured),
    env("httpHeaders", Honoured),
    env("SEND_XFRAMEOPTIONS", Honoured),
    env("CJ_PROTECT_WHITELIST", Honoured),
    env("WS_ALLOWED_ORIGINS", Honoured),
    env("CORS", Honoured),
    env("COMPRESSION", Honoured),
    env(
        "plugins",
        Refused("plugin routes are not supported; add them to the routes of xs-app.json"),
    ),
    env("DISABLE_PATHNAME_VALIDATION", Honoured),
    env(
        "ENABLE_X_FORWARDED_HOST_VALIDATION",
        Differs("a client's X-Forwarded-Host is believed only from trusted proxies (CLIENT_IP_FORWARDED_HOPS)"),
    ),
    env(
        "CHECK_X_FORWARDED_HOST_IN_LOGIN_CALLBACK",
        Differs("the login callback is always bound to the host and browser that started the login"),
    ),
    env(
        "ACCEPTED_FORWARD_PROTOCOLS",
        Differs("a client's X-Forwarded-Proto is believed only from trusted proxies (CLIENT_IP_FORWARDED_HOPS)"),
    ),
    env("REMOVE_CLASHING_BACKEND_SESSION_COOKIE", Honoured),
    env("RETURN_ERROR_SOURCE", Honoured),
    env_unless(
        "SERVICE_2_APPROUTER",
        Differs("the SAP-PASSPORT header always reaches backends unchanged; the router adds no passport of its own"),
        TRUE,
    ),
    env("SVC2AR_*", Refused(NO_SVC2AR_SESSIONS)),
    env(
        "SERVICE_2_APPROUTER_DISABLE_COOKIE_MERGE",
        Warned("a backend's cookies reach a service-to-approuter caller as they are; nothing is merged"),
    ),
    env_unless(
        "ENABLE_SUBSCRIBER_TENANT_HEADER",
        Refused("the tenant always comes from the host (TENANT_HOST_PATTERN); x-subscriber-tenant is not read"),
        FALSE,
    ),
    env(
        "BACKEND_COOKIES_SECRET",
        Warned("a backend's cookies reach a service-to-approuter caller as they are; no encrypted cookie is issued"),
    ),
    // Outbound.
    env("OUTGOING_REQUEST_OPTIONS", Honoured),
    env("BACKEND_MAX_SOCKETS", Honoured),
    env(
        "DISABLE_CONNECTION_REUSE",
        Differs("backend connections are always pooled with keep-alive"),
    ),
    // The Node.js router replaces the system roots with these files; adding them changes nothing
    // for an app that works there (see docs/compatibility.md).
    env("XS_CACERT_PATH", Honoured),
    env_unless(
        "NODE_TLS_REJECT_UNAUTHORIZED",
        Refused("outbound TLS is always verified; trust a private CA with XS_CACERT_PATH"),
        TRUE,
    ),
    env("NODE_EXTRA_CA_CERTS", Honoured),
    env_unless(
        "HTTP2_SUPPORT",
        Refused("cleartext HTTP/2 (h2c) is not served; HTTP/2 is offered over TLS (TLS_CERT_PATH)"),
        FALSE,
    ),
    env(
        "DISABLE_REQUEST_RETRIES",
        Warned("the only retry is one for a connection the peer closed before answering"),
    ),
    env(
        "CIRCUIT_BREAKER_CONF",
        Warned("no circuit breaker: every request is sent, and a dead backend answers 502 or 504 quickly"),
    ),
    // BTP services.
    env(
        "SKIP_CLIENT_CREDENTIALS_TOKENS_LOAD",
        Warned("service tokens are always fetched on first use, never at start-up"),
    ),
    env("CACHE_SERVICE_CREDENTIALS", Warned("bindings are read once at start-up (files: on rotation)")),
    env(
        "SERVICE_DESTINATION_CACHE_TTL",
        Warned("the instance-destination list is not used; destinations are cached for DESTINATION_CACHE_TTL"),
    ),
    env("FETCH_DESTINATIONS_CHUNK_SIZE", Warned("destinations are found one by one, when a request needs them")),
    env("FETCH_DESTINATIONS_CHUNK_DELAY", Warned("destinations are found one by one, when a request needs them")),
    env(
        "TOKEN_CACHE_TTL",
        Warned("weak IAS tokens (x-approuter-access-token) are not exchanged"),
    ),
    env("ZONE_INFO_CACHE_TTL", Warned(NO_IAS)),
    env("ZONE_INFO_MAX_CACHE_TTL", Warned(NO_IAS)),
    env("SUBDOMAIN_CACHE_TTL", Warned(NO_IAS)),
    env_unless(
        "ENABLE_FORWARD_CORPORATE_IDP_TOKEN",
        Refused("the corporate identity provider's token is not forwarded"),
        FALSE,
    ),
    env(
        "SEND_CONNECTIVITY_AUTHENTICATION",
        Refused("SAP-Connectivity-Authentication is sent for PrincipalPropagation destinations only"),
    ),
    env(
        "ENABLE_CONNECTIVITY_TOKEN_EXCHANGE_WS",
        Warned("websockets to on-premise systems carry the same connectivity headers as requests"),
    ),
    env("CLIENT_CERTIFICATE_HEADER_NAME", Warned("subscription-manager (certificate) callbacks are not served")),
    env("OWNAPP_CACHE_TTL", Warned(NO_HTML5_REPO)),
    env("HTML5_APPS_CACHE", Warned(NO_HTML5_REPO)),
    env("APPS_CACHE_*", Warned(NO_HTML5_REPO)),
    env("DIRECT_ROUTING_URI_PATTERNS", Warned(NO_HTML5_REPO)),
    env("OWN_SAP_CLOUD_SERVICE", Warned(NO_HTML5_REPO)),
    env("HTML5_APPS_REPO_NAME", Warned(NO_HTML5_REPO)),
    env("DISABLE_HTML5_REPO_*", Warned(NO_HTML5_REPO)),
    env("HTML5_REPO_KEEP_ALIVE_TIMEOUT", Warned(NO_HTML5_REPO)),
    env("SKIP_APP_KEY_WITH_X_FORWARD_PATH", Warned(NO_HTML5_REPO)),
    env("USE_HTML5_APP_XS_APPJSON_IN_LOGIN_CALLBACK", Warned(NO_HTML5_REPO)),
    env("RETURN_SUBSCRIBED_APPLICATIONS", Warned(NO_HTML5_REPO)),
    env("RETURN_LEP_APPLICATIONS", Warned(NO_HTML5_REPO)),
    env("SAAS_APPROUTER*", Warned(NO_HTML5_REPO)),
    env("MIGRATED_DEST", Warned(NO_HTML5_REPO)),
    env("DISABLED_DEST_CREDS_TENANTS", Warned(NO_HTML5_REPO)),
    // Websockets.
    env_unless("HANDLE_WEBSOCKET_EXT", NodeOnly(NO_EXTENSIONS), FALSE),
    env(
        "WS_BACKPRESSURE_THRESHOLD_BYTES",
        Warned("websocket frames are relayed with backpressure per frame; there is no buffer to bound"),
    ),
    // Logging and diagnostics.
    env("XS_APP_LOG_LEVEL", Honoured),
    env(
        "CF_NODEJS_LOGGING_LEVEL",
        Warned("the level of the Node.js logging library; use XS_APP_LOG_LEVEL"),
    ),
    env("REQUEST_TRACE", Warned("every request is logged by the access log (ACCESS_LOG)")),
    env(
        "ACCEPT_EXTERNAL_LOG_LEVEL",
        Warned("a request cannot raise the log level (x-log-level is not read)"),
    ),
    env("LOG_SESSION_LENGTH", Warned("session sizes are not logged")),
    env("LOG_SIZE_INTERVAL", Warned("session sizes are not logged")),
    env("DEV_ENV_TRACES", Warned("no development traces; use XS_APP_LOG_LEVEL=debug")),
    env("DEBUG", NodeOnly("the Node.js debug module's switch; use XS_APP_LOG_LEVEL or RUST_LOG")),
    env("NODE_DEBUG", NodeOnly("Node.js core's debug switch; use XS_APP_LOG_LEVEL or RUST_LOG")),
    env(
        "NODE_ENV",
        NodeOnly("error bodies never carry stack traces, in any environment"),
    ),
    env("NODE_OPTIONS", NodeOnly("options of the Node.js runtime")),
    // This router's own.
    env("APPROUTER_URL", Own),
    env("CLIENT_IP_FORWARDED_HOPS", Own),
    env("CSRF_ORIGIN_CHECK", Own),
    env("DESTINATION_CACHE_TTL", Own),
    env("BINDING_POLL_INTERVAL_MS", Own),
    env("CERT_EXPIRY_WARNING_HOURS", Own),
    env("INCOMING_HEADER_TIMEOUT", Own),
    env("MAX_HEADER_SIZE", Own),
    env("MAX_CONNECTIONS", Own),
    env("MAX_IN_FLIGHT", Own),
    env("MAX_REQUEST_BODY", Own),
    env("LOGIN_RATE_LIMIT", Own),
    env("ALLOW_ENCODED_SLASH", Own),
    env("ALLOW_UNDERSCORES_IN_HEADERS", Own),
    env("WS_SESSION_CHECK_INTERVAL", Own),
    env("REDIS_URL", Own),
    env("SESSION_SECRET", Own),
    env("TLS_CERT_PATH", Own),
    env("TLS_KEY_PATH", Own),
    env("TLS_RELOAD_INTERVAL", Own),
    env("ADMIN_ADDRESS", Own),
    env("METRICS", Own),
    env("ACCESS_LOG", Own),
    env("HTTP_FAST_PATHS", Own),
    env("TOKIO_WORKER_THREADS", Own),
    env("LOG_JSON", Own),
    env("RUST_LOG", Own),
];

const fn xs(name: &'static str, status: Status) -> Setting {
    row(Source::XsApp, name, status)
}

const fn route(name: &'static str, status: Status) -> Setting {
    row(Source::Route, name, status)
}

/// Every key of `xs-app.json` (top level, then routes). Unknown keys are refused by the parser,
/// as by the Node.js router's schema.
pub static XS_APP_KEYS: &[Setting] = &[
    xs("welcomeFile", Honoured),
    xs("authenticationMethod", Honoured),
    xs(
        "stateProtection",
        Differs("the OAuth state and PKCE are always used (RFC 9700); false changes nothing"),
    ),
    xs("sessionTimeout", Honoured),
    xs("pluginMetadataEndpoint", Refused("plugins are not supported")),
    xs("routes", Honoured),
    xs("login", Honoured),
    xs("logout", Honoured),
    xs("destinations", Honoured),
    xs("services", Refused("business service logout is not yet supported")),
    xs("responseHeaders", Honoured),
    xs("compression", Honoured),
    xs("whitelistService", Honoured),
    xs("websockets", Honoured),
    xs("errorPage", Honoured),
    xs("cors", Honoured),
    route("source", Honoured),
    route("httpMethods", Honoured),
    route("target", Honoured),
    route("destination", Honoured),
    route("service", Honoured),
    route("endpoint", Honoured),
    route("localDir", Honoured),
    route("preferLocal", Honoured),
    route(
        "replace",
        Differs(
            "files it renders answer GET and HEAD only (405 for other methods, which the Node.js router answered 200)",
        ),
    ),
    route("authenticationType", Honoured),
    route("csrfProtection", Honoured),
    route("scope", Honoured),
    route("cacheControl", Honoured),
    route("identityProvider", Honoured),
    route("dynamicIdentityProvider", Honoured),
    route("setBackendSessionCookies", Honoured),
];

/// The row for an environment variable, if it has one.
pub fn env_var(name: &str) -> Option<&'static Setting> {
    ENV_VARS.iter().find(|setting| setting.matches(name))
}

/// The row for an `xs-app.json` key (top level or route), if it has one.
pub fn xs_app_key(source: Source, name: &str) -> Option<&'static Setting> {
    XS_APP_KEYS
        .iter()
        .find(|setting| setting.source == source && setting.matches(name))
}

/// Checks every environment variable that is set against the table: a refused one is an error
/// naming it; the others that change nothing, or work differently here, give a note.
pub fn check_env(env: &Env, errors: &mut Error) -> Vec<Note> {
    let mut notes = Vec::new();
    for (name, value) in env.iter() {
        let Some(setting) = env_var(name) else { continue };
        if setting.is_harmless(value) {
            continue;
        }
        let (level, message) = match setting.status {
            Honoured | Own => continue,
            Refused(reason) => {
                errors.push(
                    name,
                    format!("not yet supported: {name} ({reason}); remove it to start"),
                );
                continue;
            }
            Differs(reason) => (Level::Warn, format!("works differently here: {reason}")),
            Warned(reason) => (Level::Warn, format!("is set but has no effect: {reason}")),
            NodeOnly(reason) => (Level::Info, format!("is for Node.js only: {reason}")),
        };
        notes.push(Note {
            level,
            name: name.to_string(),
            message,
        });
    }
    notes
}

/// Notes for `xs-app.json` keys that are set but work differently (refused keys are errors of the
/// parser already).
pub fn check_xs_app(value: &serde_json::Value) -> Vec<Note> {
    let mut notes = Vec::new();
    let mut note = |key: &str, setting: &Setting| {
        if let Differs(reason) | Warned(reason) = setting.status {
            notes.push(Note {
                level: Level::Warn,
                name: format!("xs-app.json: {key}"),
                message: format!("works differently here: {reason}"),
            });
        }
    };
    let Some(object) = value.as_object() else { return notes };
    for (key, _) in object {
        if let Some(setting) = xs_app_key(Source::XsApp, key) {
            note(key, setting);
        }
    }
    let routes = object.get("routes").and_then(serde_json::Value::as_array);
    for (index, route_value) in routes.into_iter().flatten().enumerate() {
        for (key, _) in route_value.as_object().into_iter().flatten() {
            if let Some(setting) = xs_app_key(Source::Route, key) {
                note(&format!("routes[{index}].{key}"), setting);
            }
        }
    }
    notes
}

/// The table as Markdown, for `docs/configuration.md` (a test keeps the two equal).
pub fn markdown() -> String {
    let mut text = String::from("| setting | where | here | why |\n|---|---|---|---|\n");
    for setting in ENV_VARS.iter().chain(XS_APP_KEYS) {
        let place = match setting.source {
            Source::Env => "variable",
            Source::XsApp => "xs-app.json",
            Source::Route => "route",
        };
        let (here, why) = match setting.status {
            Honoured => ("honoured", ""),
            Own => ("this router's own", ""),
            Differs(reason) => ("honoured differently (warning)", reason),
            Refused(reason) => ("refused at start-up", reason),
            Warned(reason) => ("no effect (warning)", reason),
            NodeOnly(reason) => ("Node.js only (info)", reason),
        };
        let unless = if setting.harmless.is_empty() {
            String::new()
        } else {
            let values: Vec<String> = setting
                .harmless
                .iter()
                .map(|value| match value.is_empty() {
                    true => "empty".to_string(),
                    false => format!("`{value}`"),
                })
                .collect();
            format!(" Unless {}.", values.join(" or "))
        };
        let _ = writeln!(text, "| `{}` | {place} | {here} | {why}{unless} |", setting.name);
    }
    text
}

#[cfg(test)]
mod tests;
