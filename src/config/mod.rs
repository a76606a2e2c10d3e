//! Configuration: `xs-app.json` plus the environment (`destinations`, `httpHeaders`, …), checked once
//! into a typed [`Config`]. Every problem is reported with its key path, all at once.

mod binding;
mod env;
mod error;
mod frame_ancestors;
mod origins;
mod parse;
pub mod raw;
mod routes;
pub mod saas;
mod services;
mod session_store;
pub mod settings;
pub mod tenancy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

pub use self::binding::{credentials_from_map, find_xsuaa, read_binding_files, BindingSource, XsuaaCredentials};
pub use self::env::{load_default_env, Env};
pub use self::error::{Error, Problem};
pub use self::frame_ancestors::FrameAncestorsSettings;
pub use self::origins::CorsRule;
use self::parse::parse_all;
pub use self::raw::{AuthenticationType, BackendLogoutMethod, LogoutMethod};
pub use self::routes::{DestinationRef, Route, RouteKind, ScopeRule, USER_API_SERVICE};
pub use self::services::{
    find_service, find_services, reread as reread_service, LookupSettings, ServiceBinding, ServiceBindings,
    ServiceCredential, ServiceKind,
};
pub use self::session_store::{RedisSettings, SentinelSettings, SessionStoreConfig};

/// The checked configuration of one router.
#[derive(Debug)]
pub struct Config {
    /// The application folder: `localDir` and `errorPage.file` are relative to it.
    pub dir: PathBuf,
    /// `welcomeFile`: where `/` redirects, with a leading `/`.
    pub welcome_file: Option<String>,
    /// `authenticationMethod: none` makes every route public.
    pub authentication_none: bool,
    /// `stateProtection` (always on unless explicitly switched off).
    pub state_protection: bool,
    /// Idle timeout of a session (`sessionTimeout` minutes, `SESSION_TIMEOUT` wins).
    pub session_timeout: Duration,
    /// Routes in the order they are tried.
    pub routes: Vec<Route>,
    /// All routes' sources in one set, for large route tables (`routes::route_set`).
    pub route_set: Option<regex::RegexSet>,
    /// `login.callbackEndpoint`.
    pub login_callback: String,
    /// `logout`.
    pub logout: Option<LogoutConfig>,
    /// Destinations by name, from the `destinations` variable.
    pub destinations: BTreeMap<String, Arc<Destination>>,
    /// `destinations.<name>.logoutPath` of xs-app.json.
    pub backend_logout: Vec<BackendLogout>,
    /// Headers added to every response: `X-Frame-Options`, `httpHeaders`, then `responseHeaders`.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `compression` merged with `COMPRESSION`.
    pub compression: CompressionConfig,
    /// `whitelistService.endpoint`.
    pub whitelist_endpoint: Option<String>,
    /// `websockets.enabled`.
    pub websockets_enabled: bool,
    /// `WS_ALLOWED_ORIGINS`: origins besides the router's own that may open websockets.
    pub ws_allowed_origins: crate::origin::Allowlist,
    /// `WS_SESSION_CHECK_INTERVAL` (milliseconds, default 5000): how often an open websocket of a
    /// logged-in user checks that its session still exists; the bound on closing it after logout.
    pub ws_session_check: Duration,
    /// `CJ_PROTECT_WHITELIST`: who may frame the app; `None` (unset) makes the allowlist service
    /// answer `active: false`.
    pub frame_allowlist: Option<crate::origin::Allowlist>,
    /// `cors` of xs-app.json, then the `CORS` variable, in the order they are tried.
    pub cors: Vec<CorsRule>,
    /// `errorPage`.
    pub error_pages: Vec<ErrorPageRule>,
    /// Listener and limits.
    pub server: ServerSettings,
    /// The XSUAA binding, when one is bound.
    pub xsuaa: Option<XsuaaCredentials>,
    /// The `destination` and `connectivity` bindings, when bound.
    pub services: ServiceBindings,
    /// `TENANT_HOST_PATTERN`: the tenant of each request from its host (multitenancy).
    pub tenancy: Option<tenancy::Tenancy>,
    /// The `saas-registry` binding: the router answers the subscription callbacks.
    pub saas_registry: Option<saas::SaasRegistry>,
    /// Login and session settings.
    pub auth: AuthSettings,
    /// Where sessions live (`EXT_SESSION_MGT`, `REDIS_URL`); in memory by default.
    pub session_store: SessionStoreConfig,
    /// Settings that are set but work differently here, change nothing, or are for Node.js only:
    /// logged once at start and listed by `approuter check`.
    pub notes: Vec<settings::Note>,
    /// `ENABLE_FRAME_ANCESTORS_CSP_HEADERS`: the trusted framing domains as a CSP.
    pub frame_ancestors: Option<FrameAncestorsSettings>,
}

/// Login and session settings from the environment.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `SESSION_COOKIE_NAME` (default `JSESSIONID`).
    pub session_cookie: String,
    /// `JWT_REFRESH`: refresh this long before the access token expires; zero disables.
    pub refresh_before_expiry: Duration,
    /// `PRESERVE_FRAGMENT` (default true): login through a small page that keeps the URL fragment.
    pub preserve_fragment: bool,
    /// `STATE_CACHE`: how long a login attempt may take.
    pub login_attempt_ttl: Duration,
    /// `SameSite` of our cookies (`COOKIES`), default `Lax`.
    pub same_site: String,
    /// `COOKIES.Partitioned`: when our cookies carry `Partitioned`.
    pub partitioned: crate::cookies::Partitioning,
    /// `SECURE_SESSION_COOKIE`: `Some(true)` forces `Secure`, `None` decides per request.
    pub secure_cookie: Option<bool>,
    /// The router's public URL for the login redirect (`APPROUTER_URL`, else
    /// `VCAP_APPLICATION.application_uris[0]`); `None` derives it from each request.
    pub external_url: Option<String>,
    /// Timeout of requests to the identity provider (`OUTGOING_REQUEST_OPTIONS.xsuaa`).
    pub idp_timeout: Duration,
    /// Whether `X-Forwarded-Host`/`-Proto`/`-Path` from the client are believed: only when a
    /// trusted proxy is in front (`CLIENT_IP_FORWARDED_HOPS` ≥ 1, the default on Cloud Foundry).
    pub trust_forwarded_headers: bool,
    /// `EXTERNAL_REVERSE_PROXY` (default false): the proxy in front names the host the browser
    /// used in `X-Custom-Host`, which then wins over `X-Forwarded-Host` and `Host` for the tenant,
    /// `DESTINATION_HOST_PATTERN`, the redirect URI and the own-origin checks.
    pub external_reverse_proxy: bool,
    /// `CSRF_ORIGIN_CHECK` (default true): refuse state-changing requests from other origins.
    pub csrf_origin_check: bool,
    /// `DYNAMIC_IDENTITY_PROVIDER`: `?sap_idp=` chooses the identity provider on every route.
    pub dynamic_identity_provider: bool,
    /// `XS_BIND_ADDRESS` is set (XS advanced): the identity provider goes to the authorize URL
    /// as `login_hint={"origin":"<idp>"}` instead of `idp=<idp>`.
    pub idp_as_login_hint: bool,
    /// How often binding files are re-read for rotated credentials (`BINDING_POLL_INTERVAL_MS`,
    /// default 10 s).
    pub binding_poll_interval: Duration,
    /// Warn when the client certificate has less than this left (`CERT_EXPIRY_WARNING_HOURS`,
    /// default 48 h).
    pub certificate_expiry_warning: Duration,
}

/// `logout` of xs-app.json.
#[derive(Debug, Clone)]
pub struct LogoutConfig {
    pub endpoint: Option<String>,
    pub page: Option<String>,
    pub method: LogoutMethod,
    pub csrf_protection: bool,
}

/// A backend to call when a session ends.
#[derive(Debug, Clone)]
pub struct BackendLogout {
    pub destination: String,
    pub path: String,
    pub method: Method,
}

/// Response compression settings.
#[derive(Debug, Clone, Copy)]
pub struct CompressionConfig {
    pub enabled: bool,
    pub min_size: u64,
    pub compress_mixed_content: bool,
}

/// One `errorPage` entry.
#[derive(Debug, Clone)]
pub struct ErrorPageRule {
    pub statuses: Vec<u16>,
    pub target: ErrorPageTarget,
}

/// What an error page rule does.
#[derive(Debug, Clone)]
pub enum ErrorPageTarget {
    /// Serve this file with the original status.
    File(PathBuf),
    /// Redirect (302) to this path.
    Redirect(String),
}

/// A backend the router forwards to (one entry of the `destinations` variable).
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    /// `http` or `https` (`ws`/`wss` are mapped to them).
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The URL's path without a trailing `/`; kept in front of every forwarded path.
    pub base_path: String,
    pub proxy: Option<(String, u16)>,
    pub forward_auth_token: bool,
    pub forward_auth_certificates: bool,
    pub strict_ssl: bool,
    pub timeout: Duration,
    pub set_x_forwarded_headers: bool,
    pub preserve_host_header: bool,
    /// `Host` for requests to this destination, built once.
    pub host_header: http::HeaderValue,
    /// Requests go through the Connectivity service's on-premise proxy (`ProxyType: OnPremise`).
    pub on_premise: bool,
}

/// Listener settings and limits.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Worker threads, each with its own event loop and listening socket (`TOKIO_WORKER_THREADS`,
    /// default one per core).
    pub workers: usize,
    /// How long a connection may take to send a request's headers (and stay idle between requests).
    pub header_read_timeout: Duration,
    /// Upper bound on the request head (request line + headers); larger gets 431.
    pub max_header_bytes: usize,
    /// `INCOMING_CONNECTION_TIMEOUT` (ms, 0 or unset: none): a client connection on which nothing
    /// moved for this long is closed.
    pub connection_idle_timeout: Option<Duration>,
    /// `INCOMING_REQUEST_TIMEOUT` (ms, default 300000, 0: none): the time from a request's head
    /// until its body has arrived; past it the request is answered 408 and the connection closed.
    pub request_timeout: Option<Duration>,
    /// `BACKEND_MAX_SOCKETS`: idle connections kept per backend.
    pub backend_max_idle: usize,
    /// Extra trust roots for outbound TLS (`XS_CACERT_PATH`).
    pub ca_cert_paths: Vec<PathBuf>,
    /// `DISABLE_PATHNAME_VALIDATION`.
    pub path_validation: bool,
    /// `ALLOW_ENCODED_SLASH` (default false): a `%2F` in the path is kept encoded instead of refused.
    pub allow_encoded_slash: bool,
    /// `TLS_CERT_PATH` + `TLS_KEY_PATH`: serve HTTPS instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `ADMIN_ADDRESS` (default `127.0.0.1:9090`; `off` disables): health and metrics listener.
    pub admin: Option<AdminAddress>,
    /// `MAX_CONNECTIONS`: open client connections; at the cap the listener stops accepting.
    pub max_connections: Option<usize>,
    /// `MAX_IN_FLIGHT`: requests being handled at once; beyond it requests get 503 at once.
    pub max_in_flight: Option<usize>,
    /// `MAX_REQUEST_BODY`: bytes a request body may have (declared or streamed); beyond it 413.
    pub max_request_body: Option<u64>,
    /// `LOGIN_RATE_LIMIT`: failed login callbacks per minute and client address, past which the
    /// address's login starts and callbacks get 429; `None` is off.
    pub login_rate_limit: Option<u32>,
    /// `CLIENT_IP_FORWARDED_HOPS`: how many trusted proxies in front append to `X-Forwarded-For`
    /// (0: the TCP peer is the client, and the client's `X-Forwarded-Host`/`-Proto`/`-Path` are
    /// replaced by what the router sees).
    pub forwarded_hops: usize,
    /// `ALLOW_UNDERSCORES_IN_HEADERS` (default false): request headers with `_` in their name
    /// reach backends (except look-alikes of the headers the router manages).
    pub allow_underscores_in_headers: bool,
    /// `METRICS` (default true): record metrics.
    pub metrics: bool,
    /// `ACCESS_LOG` (default true): one log line per request (target `access`).
    pub access_log: bool,
    /// `RETURN_ERROR_SOURCE` (default false): errors the router answers itself carry
    /// `x-error-source: gateway`, as from the Node.js router, so clients tell them from a backend's.
    pub return_error_source: bool,
    /// `REMOVE_CLASHING_BACKEND_SESSION_COOKIE` (default false): a backend's `Set-Cookie` named
    /// like the router's session cookie is dropped, as by the Node.js router.
    pub remove_clashing_cookie: bool,
    /// `MERGE_CSP_HEADERS` (default false): a backend's `Content-Security-Policy` and the
    /// configured one are both enforced (`csp::merge`); otherwise the backend's replaces it.
    pub merge_csp_headers: bool,
    /// `HTTP_FAST_PATHS` (default true): the HTTP/1.1 fast lane of client connections and the
    /// inline upstream client. Off, hyper serves every client connection and sends every upstream
    /// request.
    pub fast_paths: bool,
}

/// The certificate and key files of the HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for a new certificate (`TLS_RELOAD_INTERVAL`, ms).
    pub reload_interval: Duration,
}

/// Where the admin listener binds.
#[derive(Debug, Clone, Copy)]
pub struct AdminAddress {
    pub addr: SocketAddr,
    /// Set by `ADMIN_ADDRESS` rather than the default: failing to bind it is fatal.
    pub explicit: bool,
}

const DEFAULT_SESSION_TIMEOUT_MINUTES: u64 = 15;
const DEFAULT_DESTINATION_TIMEOUT: Duration = Duration::from_millis(30_000);

impl Config {
    /// The router's own origin for a request, from its settings (`APPROUTER_URL`, whether
    /// forwarded headers are trusted): what the CORS and websocket origin checks compare a
    /// request's `Origin` with (see [`crate::origin::own_origin`]).
    ///
    /// # Errors
    /// As [`crate::origin::own_origin`].
    pub fn own_origin(
        &self,
        headers: &http::HeaderMap,
        scheme: &str,
    ) -> Result<crate::origin::WebOrigin, crate::origin::OwnOriginError> {
        crate::origin::own_origin(
            headers,
            scheme,
            self.auth.external_url.as_deref(),
            self.auth.trust_forwarded_headers,
            self.auth.external_reverse_proxy,
        )
    }

    /// Checks `xs-app.json` (its text) together with the environment.
    ///
    /// # Errors
    /// Every problem found, each with its key path.
    pub fn load(xs_app_json: &str, env: &Env, dir: &Path) -> Result<Config, Error> {
        let mut errors = Error::default();
        let mut notes = settings::check_env(env, &mut errors);
        let xs_app = match serde_json::from_str::<serde_json::Value>(xs_app_json) {
            Ok(value) if value.is_object() => {
                notes.extend(settings::check_xs_app(&value));
                parse_all::<raw::XsApp>(value, "xs-app.json: ", &mut errors).unwrap_or_default()
            }
            Ok(_) => {
                errors.push("xs-app.json", "must be a JSON object");
                raw::XsApp::default()
            }
            Err(error) => {
                errors.push("xs-app.json", format!("not valid JSON: {error}"));
                raw::XsApp::default()
            }
        };
        let mut config = build(xs_app, env, dir, &mut errors);
        notes.append(&mut config.notes);
        config.notes = notes;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// The destination a route names, if any.
    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(name)
    }
}

/// A route's destination needs what finds it: the Destination service for a name the
/// `destinations` variable lacks, `DESTINATION_HOST_PATTERN` for `*`.
fn check_destination_ref(route: &Route, services: &ServiceBindings, errors: &mut Error) {
    let path = format!("xs-app.json: routes[{}].destination", route.index);
    match &route.kind {
        RouteKind::Destination(DestinationRef::Service(name)) if services.destination.is_none() => errors.push(
            path,
            format!(
                "destination {name:?} is not defined in the destinations variable, and no destination \
                 service is bound to find it (bind one, or define {name:?} in destinations)"
            ),
        ),
        RouteKind::Destination(DestinationRef::Host) if services.lookup.host_pattern.is_none() => errors.push(
            path,
            "\"*\" takes the destination's name from the host: set DESTINATION_HOST_PATTERN",
        ),
        _ => {}
    }
}

/// `forwardAuthCertificates` presents the XSUAA binding's certificate: without one the
/// destination is refused, rather than reached without it as the Node.js router does.
fn check_forward_auth_certificates(
    destinations: &BTreeMap<String, Arc<Destination>>,
    xsuaa: Option<&XsuaaCredentials>,
    errors: &mut Error,
) {
    let why = match xsuaa {
        Some(credentials) if credentials.is_x509() => return,
        Some(credentials) => format!(
            "presents the XSUAA binding's client certificate, but binding {:?} has none \
             (credential-type x509 gives it one)",
            credentials.name
        ),
        None => "presents the XSUAA binding's client certificate, but no XSUAA binding was found \
                 in VCAP_SERVICES or SERVICE_BINDING_ROOT"
            .to_string(),
    };
    for destination in destinations
        .values()
        .filter(|destination| destination.forward_auth_certificates)
    {
        errors.push(
            format!("destinations: {}.forwardAuthCertificates", destination.name),
            why.clone(),
        );
    }
}

fn build(xs_app: raw::XsApp, env: &Env, dir: &Path, errors: &mut Error) -> Config {
    let destinations = env::destinations(env, errors);
    let notes = plain_http_certificates(&destinations);
    let authentication_none = xs_app.authentication_method == Some(raw::AuthenticationMethod::None);
    let declared_routes = xs_app.routes.len();
    let mut routes = routes::compile(&xs_app.routes, &destinations, dir, authentication_none, env, errors);
    let xsuaa = binding::find_xsuaa(env, errors);
    let services = services::find_services(env, errors);
    let tenancy = tenancy::from_env(env, xsuaa.as_ref(), errors);
    let saas_registry = saas::find(env, errors);
    if let Some(registry) = &saas_registry {
        check_saas_registry(registry, xsuaa.as_ref(), tenancy.is_some(), errors);
    }
    if services.connectivity.is_none() {
        for destination in destinations.values().filter(|destination| destination.on_premise) {
            errors.push(
                format!("destinations: {}.proxyType", destination.name),
                "OnPremise needs a connectivity binding, but none was found in VCAP_SERVICES or SERVICE_BINDING_ROOT",
            );
        }
    }
    check_forward_auth_certificates(&destinations, xsuaa.as_ref(), errors);
    let frame_ancestors = frame_ancestors::from_env(env, xsuaa.as_ref(), errors);
    for route in &mut routes {
        if route.is_protected() && xsuaa.is_none() {
            let path = match route.index < declared_routes {
                true => format!("xs-app.json: routes[{}].authenticationType", route.index),
                false => routes::IMPLICIT_ROUTE.to_string(),
            };
            errors.push(
                path,
                "needs an XSUAA binding, but none was found in VCAP_SERVICES or SERVICE_BINDING_ROOT \
                 (make the route public with \"authenticationType\": \"none\" or bind XSUAA)",
            );
        }
        if let (Some(scope), Some(xsuaa)) = (&mut route.scope, &xsuaa) {
            scope.resolve_xsappname(&xsuaa.xsappname);
        }
        check_destination_ref(route, &services, errors);
    }

    let session_timeout_minutes = match env.get("SESSION_TIMEOUT") {
        Some(text) => env::positive_integer("SESSION_TIMEOUT", text, errors).unwrap_or(DEFAULT_SESSION_TIMEOUT_MINUTES),
        None => match xs_app.session_timeout {
            Some(0) => {
                errors.push("xs-app.json: sessionTimeout", "must be at least 1 (minutes)");
                DEFAULT_SESSION_TIMEOUT_MINUTES
            }
            Some(minutes) => minutes,
            None => DEFAULT_SESSION_TIMEOUT_MINUTES,
        },
    };

    let login_callback = match xs_app.login {
        Some(login) => {
            check_relative_uri("xs-app.json: login.callbackEndpoint", &login.callback_endpoint, errors);
            login.callback_endpoint
        }
        None => "/login/callback".to_string(),
    };

    let logout = xs_app.logout.map(|logout| check_logout(logout, errors));
    let backend_logout = check_backend_logout(xs_app.destinations, &routes, errors);
    if let Some(services) = &xs_app.services {
        if !services.is_empty() {
            errors.push("xs-app.json: services", "business service logout is not yet supported");
        }
    }

    let welcome_file = xs_app.welcome_file.map(|file| {
        if file.is_empty() {
            errors.push("xs-app.json: welcomeFile", "must not be empty");
        }
        if file.starts_with('/') {
            file
        } else {
            format!("/{file}")
        }
    });

    let response_headers = env::response_headers(env, xs_app.response_headers.unwrap_or_default(), errors);
    let compression = env::compression(env, xs_app.compression.unwrap_or_default(), errors);

    let whitelist_endpoint = xs_app.whitelist_service.map(|service| {
        check_relative_uri("xs-app.json: whitelistService.endpoint", &service.endpoint, errors);
        service.endpoint
    });

    let error_pages = check_error_pages(xs_app.error_page.unwrap_or_default(), dir, errors);

    let cors = origins::cors_rules(xs_app.cors, env, errors);
    let ws_session_check = env
        .get("WS_SESSION_CHECK_INTERVAL")
        .and_then(|text| env::positive_integer("WS_SESSION_CHECK_INTERVAL", text, errors))
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(5));
    if xs_app.plugin_metadata_endpoint.is_some() {
        errors.push(
            "xs-app.json: pluginMetadataEndpoint",
            "is not yet supported (plugins are not supported; add plugin routes to routes)",
        );
    }

    let route_set = routes::route_set(&routes);
    Config {
        dir: dir.to_path_buf(),
        welcome_file,
        authentication_none,
        state_protection: xs_app.state_protection.unwrap_or(true),
        session_timeout: Duration::from_secs(session_timeout_minutes.saturating_mul(60)),
        routes,
        route_set,
        login_callback,
        logout,
        destinations,
        backend_logout,
        response_headers,
        compression,
        whitelist_endpoint,
        websockets_enabled: xs_app.websockets.map(|ws| ws.enabled).unwrap_or(false),
        ws_allowed_origins: origins::allowlist(env, "WS_ALLOWED_ORIGINS", errors).unwrap_or_default(),
        ws_session_check,
        frame_allowlist: origins::allowlist(env, "CJ_PROTECT_WHITELIST", errors),
        cors,
        error_pages,
        server: env::server_settings(env, errors),
        xsuaa,
        services,
        tenancy,
        saas_registry,
        auth: env::auth_settings(env, errors),
        session_store: session_store::from_env(env, errors),
        notes,
        frame_ancestors,
    }
}

/// `forwardAuthCertificates` on an `http` (or on-premise) destination, where no TLS carries a
/// certificate: accepted, as by the Node.js router, and named at start.
fn plain_http_certificates(destinations: &BTreeMap<String, Arc<Destination>>) -> Vec<settings::Note> {
    destinations
        .values()
        .filter(|destination| {
            destination.forward_auth_certificates
                && (destination.scheme == http::uri::Scheme::HTTP || destination.on_premise)
        })
        .map(|destination| settings::Note {
            level: settings::Level::Warn,
            name: format!("destinations: {}.forwardAuthCertificates", destination.name),
            message: "has no effect: the destination is reached without TLS, so no client certificate is presented"
                .into(),
        })
        .collect()
}

/// Subscriptions make tenants, which only `TENANT_HOST_PATTERN` serves; and the callbacks accept
/// tokens of the provider's zone only, so the XSUAA binding must name it.
fn check_saas_registry(
    registry: &saas::SaasRegistry,
    xsuaa: Option<&XsuaaCredentials>,
    tenancy: bool,
    errors: &mut Error,
) {
    let binding = registry.source.key_path(&registry.name);
    if !tenancy {
        errors.push(
            "TENANT_HOST_PATTERN",
            format!(
                "the saas-registry binding {:?} subscribes tenants, which need tenant hosts: set TENANT_HOST_PATTERN \
                 (and bind XSUAA with tenantmode shared), or unbind saas-registry",
                registry.name
            ),
        );
    }
    match xsuaa {
        Some(xsuaa) if xsuaa.identityzoneid.is_none() => errors.push(
            format!("{}.identityzoneid", xsuaa.source.key_path(&xsuaa.name)),
            format!("is needed by the saas-registry binding ({binding}): callbacks accept tokens of this zone only"),
        ),
        _ => {}
    }
}

/// A "relative URI" in the reference's schema: a path starting with `/`.
fn check_relative_uri(path: &str, value: &str, errors: &mut Error) {
    if !value.starts_with('/') || value.starts_with("//") || value.contains(char::is_whitespace) {
        errors.push(
            path,
            format!("must be a path starting with a single '/', got {value:?}"),
        );
    }
}

fn check_logout(logout: raw::Logout, errors: &mut Error) -> LogoutConfig {
    let path = "xs-app.json: logout";
    if let Some(endpoint) = &logout.logout_endpoint {
        check_relative_uri(&format!("{path}.logoutEndpoint"), endpoint, errors);
    }
    if logout.logout_page.is_some() && logout.logout_endpoint.is_none() {
        errors.push(format!("{path}.logoutPage"), "requires logout.logoutEndpoint");
    }
    if let Some(endpoint) = &logout.back_channel_logout_endpoint {
        errors.push(
            format!("{path}.backChannelLogoutEndpoint"),
            format!("back-channel logout ({endpoint}) is not yet supported"),
        );
    }
    let method = logout.logout_method.unwrap_or(LogoutMethod::Get);
    if logout.csrf_protection.is_some() && method != LogoutMethod::Post {
        errors.push(
            format!("{path}.csrfProtection"),
            "is only allowed with logoutMethod POST",
        );
    }
    LogoutConfig {
        endpoint: logout.logout_endpoint,
        page: logout.logout_page,
        method,
        csrf_protection: logout.csrf_protection.unwrap_or(method == LogoutMethod::Post),
    }
}

fn check_backend_logout(
    destinations: Option<BTreeMap<String, raw::LogoutTarget>>,
    routes: &[Route],
    errors: &mut Error,
) -> Vec<BackendLogout> {
    let mut result = Vec::new();
    for (name, target) in destinations.unwrap_or_default() {
        let path = format!("xs-app.json: destinations.{name}");
        let used = routes
            .iter()
            .any(|route| matches!(&route.kind, RouteKind::Destination(DestinationRef::Named(n)) if *n == name));
        if !used {
            errors.push(&path, "destination is not used by any route");
        }
        if let Some(logout_path) = target.logout_path {
            check_relative_uri(&format!("{path}.logoutPath"), &logout_path, errors);
            let method = match target.logout_method.unwrap_or(BackendLogoutMethod::Post) {
                BackendLogoutMethod::Get => Method::GET,
                BackendLogoutMethod::Post => Method::POST,
                BackendLogoutMethod::Put => Method::PUT,
            };
            result.push(BackendLogout {
                destination: name,
                path: logout_path,
                method,
            });
        }
    }
    result
}

fn check_error_pages(pages: Vec<raw::ErrorPage>, dir: &Path, errors: &mut Error) -> Vec<ErrorPageRule> {
    let mut rules = Vec::new();
    for (index, page) in pages.into_iter().enumerate() {
        let path = format!("xs-app.json: errorPage[{index}]");
        let statuses = page.status.to_vec();
        for status in &statuses {
            if !(400..=599).contains(status) {
                errors.push(
                    format!("{path}.status"),
                    format!("{status} is not an error status (400-599)"),
                );
            }
        }
        let target = match (page.file, page.path) {
            (Some(file), None) => {
                let full = dir.join(file.trim_start_matches('/'));
                if !full.is_file() {
                    errors.push(format!("{path}.file"), format!("file not found: {}", full.display()));
                }
                ErrorPageTarget::File(full)
            }
            (None, Some(redirect)) => {
                check_relative_uri(&format!("{path}.path"), &redirect, errors);
                ErrorPageTarget::Redirect(redirect)
            }
            _ => {
                errors.push(&path, "needs exactly one of \"file\" and \"path\"");
                continue;
            }
        };
        rules.push(ErrorPageRule { statuses, target });
    }
    rules
}

#[cfg(test)]
mod tests;
