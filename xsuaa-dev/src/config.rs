//! What a test configures: users, the OAuth client and token lifetimes
//! ([`Builder`]), frozen into a [`Config`] when the server starts.

use std::time::Duration;

use crate::DevXsuaa;

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
        }
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
}

/// Configures a [`DevXsuaa`]; create it with [`DevXsuaa::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    config: Config,
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
            },
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

    /// Adds a user. The first one added is logged in by /oauth/authorize;
    /// all of them can use the password grant. Default: `User::new("jane.doe")`.
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

    /// Identity zone id: the `zid` claim and the only zid /token_keys accepts
    /// (default `dev-zone`).
    pub fn zone_id(mut self, zone_id: &str) -> Self {
        self.config.zone_id = zone_id.to_string();
        self
    }

    /// When true, /oauth/authorize redirects back with `error=access_denied`.
    pub fn deny_login(mut self, deny: bool) -> Self {
        self.config.deny_login = deny;
        self
    }

    /// Mints the CA, certificates and signing key, binds both listeners on
    /// 127.0.0.1:0 and starts serving.
    ///
    /// # Errors
    /// Fails when key generation, TLS setup or binding fails.
    pub async fn start(mut self) -> anyhow::Result<DevXsuaa> {
        if self.config.users.is_empty() {
            self.config.users.push(User::new("jane.doe"));
        }
        crate::handle::start(self.config).await
    }
}
