//! What a test configures: users, the OAuth clients, token lifetimes and
//! destinations ([`Builder`]), frozen into a [`Config`] when the server starts.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::destination::{default_destinations, Destination};
use crate::DevXsuaa;

/// A BTP service bound next to XSUAA, each with its own OAuth client at the
/// development XSUAA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// The Destination service (label and tag `destination`).
    Destination,
    /// The Connectivity service (label and tag `connectivity`): its binding,
    /// token client and on-premise proxy.
    Connectivity,
}

impl ServiceKind {
    /// Both services, in binding order.
    pub const ALL: [ServiceKind; 2] = [ServiceKind::Destination, ServiceKind::Connectivity];

    /// The binding `label` and `VCAP_SERVICES` key.
    pub fn label(self) -> &'static str {
        match self {
            Self::Destination => "destination",
            Self::Connectivity => "connectivity",
        }
    }

    /// The local scope the service's tokens carry as `<xsappname>.<scope>`.
    pub(crate) fn scope(self) -> &'static str {
        match self {
            Self::Destination => "Destination.read",
            Self::Connectivity => "Connectivity.read",
        }
    }
}

/// A user the server can log in (authorization code) or authenticate
/// (password grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name (`user_name` claim).
    pub user_name: String,
    /// `email` claim.
    pub email: String,
    /// `given_name` claim.
    pub given_name: String,
    /// `family_name` claim.
    pub family_name: String,
    /// Identity provider origin key (`origin` claim).
    pub origin: String,
    /// Password for the password grant.
    pub password: String,
    /// local scope names, e.g. "Display"; tokens carry "`<xsappname>.Display`"
    pub scopes: Vec<String>,
    /// User attributes: tokens carry them as `xs.user.attributes`, /userinfo
    /// as `user_attributes`.
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user with defaults derived from the name: `jane.doe` becomes
    /// Jane Doe, `jane.doe@example.com`, origin `sap.default`, password
    /// `secret`, scopes `["Display"]`.
    pub fn new(user_name: &str) -> Self {
        let mut parts = user_name.split(['.', '_', '-']).filter(|p| !p.is_empty());
        let given = parts.next().unwrap_or(user_name);
        let family = parts.next().unwrap_or("User");
        Self {
            user_name: user_name.to_string(),
            email: format!("{user_name}@example.com"),
            given_name: capitalize(given),
            family_name: capitalize(family),
            origin: "sap.default".to_string(),
            password: "secret".to_string(),
            scopes: vec!["Display".to_string()],
            attributes: BTreeMap::new(),
        }
    }

    /// The user with attribute `name` set to `values`.
    pub fn with_attribute(mut self, name: &str, values: &[&str]) -> Self {
        self.attributes
            .insert(name.to_string(), values.iter().map(|v| v.to_string()).collect());
        self
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The frozen configuration shared by all request handlers.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) client_id: String,
    pub(crate) xsappname: String,
    pub(crate) client_secret: Option<String>,
    /// Never empty: the first user is the one /oauth/authorize logs in.
    pub(crate) users: Vec<User>,
    pub(crate) zone_id: String,
    pub(crate) deny_login: bool,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) refresh_token_lifetime: Duration,
    /// Client id and xsappname of each service's OAuth client.
    pub(crate) services: BTreeMap<ServiceKind, (String, String)>,
    /// The provider zone's destinations at start, by name; its `Zone`
    /// takes them over.
    pub(crate) destinations: BTreeMap<String, Destination>,
    /// `onpremise_proxy_host` and `onpremise_proxy_http_port` of the
    /// connectivity binding; `None` names the proxy started here.
    pub(crate) connectivity_proxy: Option<(String, u16)>,
    /// The proxy's virtual hosts at start (`host:port`, lower case) and the
    /// systems they map to; `State` takes them over.
    pub(crate) virtual_hosts: BTreeMap<String, String>,
    /// Whether zones are chosen by host name under `auth.localhost`.
    pub(crate) multi_zone: bool,
    /// The provider zone's subdomain (`identityzone`, `zdn`).
    pub(crate) provider_subdomain: String,
    /// Subscriber zones in the order they were added.
    pub(crate) tenants: Vec<TenantConfig>,
}

/// A subscriber zone as the builder collects it.
#[derive(Debug, Clone)]
pub(crate) struct TenantConfig {
    pub(crate) subdomain: String,
    /// `None` until [`Builder::tenant`] names the zone.
    pub(crate) zone_id: Option<String>,
    pub(crate) users: Vec<User>,
    pub(crate) destinations: BTreeMap<String, Destination>,
}

impl TenantConfig {
    /// The user a zone without configured users logs in: `user@<subdomain>`.
    pub(crate) fn default_user(subdomain: &str) -> User {
        let mut user = User::new(&format!("user.{subdomain}"));
        user.user_name = format!("user@{subdomain}");
        user.email = format!("user@{subdomain}.example.com");
        user
    }
}

/// Configures a [`DevXsuaa`]; create it with [`DevXsuaa::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    config: Config,
    /// Whether `start` adds the default `password` destination, which
    /// names the first user and so can only be built once users are known.
    password_destination: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            config: Config {
                client_id: "sb-approuter-dev!t1".to_string(),
                xsappname: "approuter-dev!t1".to_string(),
                client_secret: None,
                users: Vec::new(),
                zone_id: "dev-zone".to_string(),
                deny_login: false,
                access_token_lifetime: Duration::from_secs(3600),
                refresh_token_lifetime: Duration::from_secs(86400),
                // Shaped like broker-issued clone clients: `sb-clone-<id>!b<n>|<xsappname>!b<n>`.
                services: BTreeMap::from([
                    (
                        ServiceKind::Destination,
                        (
                            "sb-clone-dev!b1|destination-xsappname!b404".to_string(),
                            "clone-dev!b1|destination-xsappname!b404".to_string(),
                        ),
                    ),
                    (
                        ServiceKind::Connectivity,
                        (
                            "sb-clone-dev!b2|connectivity!b17".to_string(),
                            "clone-dev!b2|connectivity!b17".to_string(),
                        ),
                    ),
                ]),
                destinations: default_destinations(),
                connectivity_proxy: None,
                virtual_hosts: BTreeMap::new(),
                multi_zone: false,
                provider_subdomain: "dev".to_string(),
                tenants: Vec::new(),
            },
            password_destination: true,
        }
    }
}

impl Builder {
    /// OAuth client id (default `sb-approuter-dev!t1`).
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.config.client_id = client_id.to_string();
        self
    }

    /// Application name that prefixes scopes (default `approuter-dev!t1`).
    pub fn xsappname(mut self, xsappname: &str) -> Self {
        self.config.xsappname = xsappname.to_string();
        self
    }

    /// Enables secret client authentication (`binding-secret`) on the `url`
    /// listener with this secret.
    pub fn client_secret(mut self, secret: &str) -> Self {
        self.config.client_secret = Some(secret.to_string());
        self
    }

    /// Adds a user of the provider zone. The first one added is logged in by
    /// /oauth/authorize; all of them can use the password grant. Default:
    /// `User::new("jane.doe")`.
    pub fn user(mut self, user: User) -> Self {
        self.config.users.push(user);
        self
    }

    /// Lifetime of access tokens (default 3600 s).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.access_token_lifetime = lifetime;
        self
    }

    /// Lifetime of refresh tokens (default 86400 s).
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.refresh_token_lifetime = lifetime;
        self
    }

    /// The provider's identity zone id: the `zid` claim of its tokens and,
    /// without subscriber zones, the only zid /token_keys accepts (default
    /// `dev-zone`).
    pub fn zone_id(mut self, zone_id: &str) -> Self {
        self.config.zone_id = zone_id.to_string();
        self
    }

    /// When true, /oauth/authorize redirects back with `error=access_denied`.
    pub fn deny_login(mut self, deny: bool) -> Self {
        self.config.deny_login = deny;
        self
    }

    /// OAuth client id and xsappname of a bound service's client.
    pub fn service_client(mut self, kind: ServiceKind, client_id: &str, xsappname: &str) -> Self {
        self.config
            .services
            .insert(kind, (client_id.to_string(), xsappname.to_string()));
        self
    }

    /// Adds or replaces a destination of the provider zone. `properties` are the
    /// `destinationConfiguration` fields (`URL`, `Authentication`,
    /// `ProxyType`, `User`, `Password`, `clientId`, `HTML5.*`, ...); `Name`
    /// is set from `name` and `Type` defaults to `HTTP`.
    pub fn destination<K, V>(mut self, name: &str, properties: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let properties = properties.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.config
            .destinations
            .insert(name.to_string(), Destination::new(properties, Vec::new()));
        self
    }

    /// Replaces all destinations (the default set included) by those of a
    /// JSON object `{"<name>": {"<property>": "<value>", ...,
    /// "certificates": [{"Name", "Content", "Type"}]}}`.
    ///
    /// # Errors
    /// Fails when the text is not such an object or a property is not a
    /// string.
    pub fn destinations_json(mut self, json: &str) -> anyhow::Result<Self> {
        self.config.destinations = crate::destination::parse_destinations(json)?;
        self.password_destination = false;
        Ok(self)
    }

    /// Removes every destination, the default set included.
    pub fn no_destinations(mut self) -> Self {
        self.config.destinations.clear();
        self.password_destination = false;
        self
    }

    /// Host and port the connectivity binding names as its proxy instead of
    /// the proxy started here (which still runs).
    pub fn connectivity_proxy(mut self, host: &str, port: u16) -> Self {
        self.config.connectivity_proxy = Some((host.to_string(), port));
        self
    }

    /// Maps a virtual `host:port` (as in an on-premise destination's `URL`)
    /// to the address of the system the connectivity proxy forwards to, as a
    /// Cloud Connector mapping does. Host names compare case-insensitively.
    pub fn virtual_host(mut self, virtual_host: &str, system: impl ToString) -> Self {
        self.config
            .virtual_hosts
            .insert(virtual_host.to_ascii_lowercase(), system.to_string());
        self
    }

    /// Switches to multi-zone mode without adding a subscriber zone: the
    /// provider zone is served at `https://<provider subdomain>.auth.localhost:PORT`
    /// and `uaadomain` is `auth.localhost`.
    pub fn multi_zone(mut self) -> Self {
        self.config.multi_zone = true;
        self
    }

    /// The provider zone's subdomain: `identityzone`, `ext_attr.zdn` and, in
    /// multi-zone mode, the first label of `url` and `certurl` (default `dev`).
    pub fn provider_subdomain(mut self, subdomain: &str) -> Self {
        self.config.provider_subdomain = subdomain.to_ascii_lowercase();
        self
    }

    /// Adds a subscriber zone (tenant) with its own signing keys, users and
    /// destinations, served at `https://<subdomain>.auth.localhost:PORT`, and
    /// switches to multi-zone mode. The XSUAA client and the service clients
    /// exist in every zone, as for a `tenantmode: shared` binding.
    pub fn tenant(mut self, subdomain: &str, zone_id: &str) -> Self {
        self.tenant_entry(subdomain).zone_id = Some(zone_id.to_string());
        self.config.multi_zone = true;
        self
    }

    /// Adds a user to a subscriber zone; the first one is the one its
    /// /oauth/authorize logs in. A zone without users has `user@<subdomain>`.
    /// [`Builder::start`] fails when no [`Builder::tenant`] adds the zone.
    pub fn tenant_user(mut self, subdomain: &str, user: User) -> Self {
        self.tenant_entry(subdomain).users.push(user);
        self
    }

    /// Adds or replaces a destination of a subscriber zone (which has none
    /// by default), answered to that zone's tokens only; `properties` as for
    /// [`Builder::destination`].
    pub fn tenant_destination<K, V>(
        mut self,
        subdomain: &str,
        name: &str,
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let properties = properties.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.tenant_entry(subdomain)
            .destinations
            .insert(name.to_string(), Destination::new(properties, Vec::new()));
        self
    }

    fn tenant_entry(&mut self, subdomain: &str) -> &mut TenantConfig {
        let subdomain = subdomain.to_ascii_lowercase();
        let tenants = &mut self.config.tenants;
        let index = match tenants.iter().position(|t| t.subdomain == subdomain) {
            Some(index) => index,
            None => {
                tenants.push(TenantConfig {
                    subdomain,
                    zone_id: None,
                    users: Vec::new(),
                    destinations: BTreeMap::new(),
                });
                tenants.len() - 1
            }
        };
        &mut tenants[index]
    }

    /// Mints the CA, certificates and signing key, binds the listeners on
    /// 127.0.0.1:0 and starts serving.
    ///
    /// # Errors
    /// Fails when key generation, TLS setup or binding fails, or when the
    /// zones are inconsistent (a tenant user or destination of a zone no
    /// [`Builder::tenant`] added, a subdomain that is not one DNS label, a
    /// subdomain or zone id used twice).
    pub async fn start(mut self) -> anyhow::Result<DevXsuaa> {
        crate::zone::check_tenants(&self.config)?;
        if self.config.users.is_empty() {
            self.config.users.push(User::new("jane.doe"));
        }
        if self.password_destination {
            let user = &self.config.users[0];
            let password = crate::destination::password_destination(user);
            self.config
                .destinations
                .entry("password".to_string())
                .or_insert(password);
        }
        crate::handle::start(self.config).await
    }
}
