//! [`DevXsuaa`] helpers for multitenancy: the zones' URLs, tokens minted in
//! a zone, the subscription callback token and the `saas-registry` binding.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use crate::binding;
use crate::config::User;
use crate::destination::Destination;
use crate::jwt;
use crate::token;
use crate::util::{self, lock};
use crate::zone::{Zone, CERT_DOMAIN, UAA_DOMAIN};
use crate::DevXsuaa;

/// The OAuth client id of the SaaS registry, which calls the subscription
/// callbacks with a token of the provider zone ([`DevXsuaa::callback_token`]).
pub const SAAS_REGISTRY_CLIENT_ID: &str = "sb-saas-registry!b1";

impl DevXsuaa {
    /// Whether zones are chosen by host name ([`crate::Builder::tenant`],
    /// [`crate::Builder::multi_zone`]).
    pub fn is_multi_zone(&self) -> bool {
        self.state.multi_zone
    }

    /// `https://<subdomain>.auth.localhost:PORT`, the `url` of a zone; for a
    /// subdomain that is no zone the server answers 404 there. Without
    /// multi-zone mode this is [`DevXsuaa::url`].
    pub fn tenant_url(&self, subdomain: &str) -> String {
        self.hosts.urls(subdomain).0
    }

    /// `https://<subdomain>.auth.cert.localhost:PORT`, the mTLS token host of
    /// a zone (the `certurl` host minus its first label, prefixed by the
    /// subdomain). Without multi-zone mode this is [`DevXsuaa::cert_url`].
    pub fn tenant_cert_url(&self, subdomain: &str) -> String {
        self.hosts.urls(subdomain).1
    }

    /// Adds or replaces a destination of the zone with this subdomain while
    /// the server runs; `properties` are as for [`crate::Builder::destination`].
    ///
    /// # Errors
    /// Fails when no zone has this subdomain.
    pub fn set_tenant_destination<K, V>(
        &self,
        subdomain: &str,
        name: &str,
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> anyhow::Result<()>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let zone = self.zone(subdomain)?;
        let properties = properties.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        lock(&zone.destinations).insert(name.to_string(), Destination::new(properties, Vec::new()));
        Ok(())
    }

    /// The zone id of the zone with this subdomain (the provider's included).
    pub fn tenant_zone_id(&self, subdomain: &str) -> Option<String> {
        self.state.zone_by_subdomain(subdomain).map(|zone| zone.zone_id.clone())
    }

    /// The host names a client must resolve to 127.0.0.1 to reach the zones
    /// (`url` and `certurl` hosts of every zone, and `auth.localhost`), or
    /// nothing without multi-zone mode.
    pub fn zone_host_names(&self) -> Vec<String> {
        if !self.state.multi_zone {
            return Vec::new();
        }
        let mut names = vec![UAA_DOMAIN.to_string(), CERT_DOMAIN.to_string()];
        for zone in &self.state.zones {
            names.push(format!("{}.{UAA_DOMAIN}", zone.subdomain));
            names.push(format!("{}.{CERT_DOMAIN}", zone.subdomain));
        }
        names
    }

    /// Signs arbitrary claims with the current key of the zone with this
    /// subdomain (its `jku`).
    ///
    /// # Errors
    /// Fails when no zone has this subdomain or signing fails.
    pub fn mint_token_in(&self, subdomain: &str, claims: Value) -> anyhow::Result<String> {
        let zone = self.zone(subdomain)?;
        let key = lock(&zone.keys).current();
        Ok(jwt::sign(&key, &zone.url, &claims)?)
    }

    fn zone(&self, subdomain: &str) -> anyhow::Result<&Zone> {
        self.state
            .zone_by_subdomain(subdomain)
            .with_context(|| format!("no zone has the subdomain {subdomain:?}"))
    }

    /// The access token claims a login of `user` in the zone with this
    /// subdomain would produce now (`iss`, `zid`, `ext_attr` of that zone).
    ///
    /// # Errors
    /// Fails when no zone has this subdomain or the random generator fails.
    pub fn user_token_claims_in(&self, subdomain: &str, user: &User) -> anyhow::Result<Value> {
        let zone = self.zone(subdomain)?;
        let jti = util::random_id().context("system random generator failed")?;
        Ok(self.claims_in(zone, user, &jti))
    }

    /// A provider-zone token of the SaaS registry's client
    /// ([`SAAS_REGISTRY_CLIENT_ID`], `grant_type: client_credentials`) with
    /// the authority `<xsappname>.Callback`: what subscription callbacks
    /// carry.
    ///
    /// # Errors
    /// Fails when the random generator or signing fails.
    pub fn callback_token(&self) -> anyhow::Result<String> {
        let scopes = vec![
            "uaa.resource".to_string(),
            format!("{}.Callback", self.state.config.xsappname),
        ];
        let answer = token::issue_client_token(&self.state, self.state.provider(), SAAS_REGISTRY_CLIENT_ID, scopes)
            .map_err(|err| anyhow::anyhow!("issuing the callback token: {}", err.description))?;
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .context("the token answer has no access_token")
    }

    /// Credentials of a `saas-registry` binding for an application whose
    /// callbacks are served under `app_url` (the router's base URL):
    /// `appName`, `xsappname`, `appUrls` (a JSON string with
    /// `getDependencies` and `onSubscription`), `clientid`, `url`.
    pub fn saas_registry_credentials(&self, app_url: &str) -> Value {
        binding::saas_registry_credentials(&self.state, app_url)
    }

    /// `VCAP_SERVICES` JSON with the xsuaa, destination and connectivity
    /// bindings and a `saas-registry` binding holding these credentials.
    pub fn vcap_services_with_saas_registry(
        &self,
        xsuaa: &Value,
        destination: &Value,
        connectivity: &Value,
        saas_registry: &Value,
    ) -> String {
        binding::vcap_services_with_saas_registry(xsuaa, destination, connectivity, saas_registry)
    }

    /// Writes the binding directory `root/saas-registry` (`type`
    /// `saas-registry`), as [`DevXsuaa::write_binding_dir`] does for XSUAA.
    ///
    /// # Errors
    /// Fails on IO errors or when `credentials` is not a JSON object.
    pub fn write_saas_registry_binding_dir(&self, root: &Path, credentials: &Value) -> io::Result<PathBuf> {
        binding::write_binding_dir(root, binding::SAAS_REGISTRY, binding::SAAS_REGISTRY, credentials)
    }
}
