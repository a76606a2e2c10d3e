//! Serde input types for `xs-app.json` and the JSON-valued environment variables.
//! Only `config/` sees these; everything else uses the checked [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The top level of `xs-app.json`, as the reference's schema defines it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct XsApp {
    pub welcome_file: Option<String>,
    pub authentication_method: Option<AuthenticationMethod>,
    pub state_protection: Option<bool>,
    pub session_timeout: Option<u64>,
    pub plugin_metadata_endpoint: Option<String>,
    /// Parsed route by route so that every broken route is reported, not just the first.
    #[serde(default)]
    pub routes: Vec<Value>,
    pub login: Option<Login>,
    pub logout: Option<Logout>,
    pub destinations: Option<BTreeMap<String, LogoutTarget>>,
    pub services: Option<BTreeMap<String, ServiceLogout>>,
    pub response_headers: Option<Vec<ResponseHeader>>,
    pub compression: Option<Compression>,
    pub whitelist_service: Option<WhitelistService>,
    pub websockets: Option<Websockets>,
    pub error_page: Option<Vec<ErrorPage>>,
    pub cors: Option<Vec<Cors>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticationMethod {
    None,
    Route,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Login {
    pub callback_endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logout {
    pub logout_endpoint: Option<String>,
    pub logout_page: Option<String>,
    pub logout_method: Option<LogoutMethod>,
    pub csrf_protection: Option<bool>,
    pub back_channel_logout_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogoutMethod {
    Get,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackendLogoutMethod {
    Get,
    Post,
    Put,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogoutTarget {
    pub logout_path: Option<String>,
    pub logout_method: Option<BackendLogoutMethod>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceLogout {
    pub endpoint: Option<String>,
    pub logout_path: Option<String>,
    pub logout_method: Option<BackendLogoutMethod>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Compression {
    pub enabled: Option<bool>,
    pub min_size: Option<u64>,
    pub compress_response_mixed_type_content: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhitelistService {
    pub endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Websockets {
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPage {
    pub status: OneOrMany<u16>,
    pub file: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cors {
    pub uri_pattern: String,
    pub host_pattern: Option<String>,
    pub allowed_origin: Vec<AllowedOrigin>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    /// Seconds; a negative value sends no `Access-Control-Max-Age`.
    pub max_age: Option<i64>,
    pub allowed_credentials: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedOrigin {
    pub host: String,
    pub protocol: Option<String>,
    pub port: Option<u16>,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    pub source: Source,
    pub http_methods: Option<Vec<HttpMethod>>,
    pub target: Option<String>,
    pub destination: Option<String>,
    pub service: Option<String>,
    pub endpoint: Option<String>,
    pub local_dir: Option<String>,
    pub prefer_local: Option<bool>,
    pub replace: Option<Replace>,
    pub authentication_type: Option<AuthenticationType>,
    pub csrf_protection: Option<bool>,
    pub scope: Option<Scope>,
    pub cache_control: Option<String>,
    pub identity_provider: Option<String>,
    pub dynamic_identity_provider: Option<bool>,
    pub set_backend_session_cookies: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Pattern(String),
    Object(SourceObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceObject {
    pub path: String,
    pub match_case: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Delete,
    Get,
    Head,
    Options,
    Post,
    Put,
    Trace,
    Patch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticationType {
    Xsuaa,
    Ias,
    Basic,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Replace {
    pub path_suffixes: Vec<String>,
    pub vars: Option<Vec<String>>,
    pub services: Option<BTreeMap<String, Value>>,
}

/// `scope`: a string, a list, or a per-method object with `default`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    One(String),
    Many(Vec<String>),
    // Boxed: the per-method form is far larger than the others.
    PerMethod(Box<ScopePerMethod>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopePerMethod {
    #[serde(rename = "GET")]
    pub get: Option<OneOrMany<String>>,
    #[serde(rename = "POST")]
    pub post: Option<OneOrMany<String>>,
    #[serde(rename = "PUT")]
    pub put: Option<OneOrMany<String>>,
    #[serde(rename = "DELETE")]
    pub delete: Option<OneOrMany<String>>,
    #[serde(rename = "PATCH")]
    pub patch: Option<OneOrMany<String>>,
    #[serde(rename = "HEAD")]
    pub head: Option<OneOrMany<String>>,
    #[serde(rename = "OPTIONS")]
    pub options: Option<OneOrMany<String>>,
    #[serde(rename = "TRACE")]
    pub trace: Option<OneOrMany<String>>,
    #[serde(rename = "CONNECT")]
    pub connect: Option<OneOrMany<String>>,
    pub default: Option<OneOrMany<String>>,
}

/// One entry of the `destinations` environment variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    pub name: String,
    pub url: String,
    pub proxy_host: Option<String>,
    pub proxy_port: Option<PortValue>,
    pub forward_auth_token: Option<bool>,
    pub forward_auth_certificates: Option<bool>,
    #[serde(rename = "strictSSL")]
    pub strict_ssl: Option<bool>,
    pub timeout: Option<u64>,
    pub proxy_type: Option<String>,
    pub set_x_forwarded_headers: Option<bool>,
    #[serde(rename = "IASDependencyName")]
    pub ias_dependency_name: Option<String>,
    pub preserve_host_header: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    Number(u16),
    Text(String),
}
