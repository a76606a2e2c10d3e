//! [`DevXsuaa`]: the running server as a test sees it, with helpers for
//! credentials, client certificates, key rotation and inspection.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::binding;
use crate::certs::{self, Ca, ClientCert, ClientCertOpts};
use crate::config::{Builder, Config, ServiceKind, User};
use crate::connectivity::{self, ProxyRecord};
use crate::destination::Destination;
use crate::jwt;
use crate::server;
use crate::state::{Listener, ServiceClient, State, Stats, TokenRequestRecord};
use crate::util::{self, lock};
use crate::zone::{Hosts, Zone};

/// A running development XSUAA. Dropping it (or [`DevXsuaa::shutdown`])
/// stops the listeners and closes their connections.
pub struct DevXsuaa {
    pub(crate) state: Arc<State>,
    default_cert: ClientCert,
    service_certs: BTreeMap<ServiceKind, ClientCert>,
    connectivity_proxy_addr: SocketAddr,
    pub(crate) hosts: Hosts,
    tasks: Vec<JoinHandle<()>>,
}

pub(crate) async fn start(mut config: Config) -> anyhow::Result<DevXsuaa> {
    let url_listener = TcpListener::bind("127.0.0.1:0").await.context("binding url listener")?;
    let cert_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding certurl listener")?;
    let destination_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding destination listener")?;
    let proxy_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding connectivity proxy listener")?;
    let connectivity_proxy_addr = proxy_listener.local_addr()?;
    let hosts = Hosts {
        multi_zone: config.multi_zone,
        url_port: url_listener.local_addr()?.port(),
        cert_port: cert_listener.local_addr()?.port(),
    };
    let destination_url = format!("https://127.0.0.1:{}", destination_listener.local_addr()?.port());

    let ca = Ca::new("xsuaa-dev CA").context("minting the development CA")?;
    let (chain, key) = ca.server_cert().context("minting the server certificate")?;
    let url_tls = server::url_tls(chain.clone(), key.clone_key()).context("url tls config")?;
    let cert_tls = server::certurl_tls(ca.der().clone(), chain, key).context("certurl tls config")?;
    let mut zones = vec![Zone::new(
        &hosts,
        &config.provider_subdomain,
        &config.zone_id,
        config.users.clone(),
        std::mem::take(&mut config.destinations),
        "xsuaa-dev-key",
    )?];
    zones.extend(Zone::tenants(&config, &hosts)?);
    let default_cert = ca
        .client_cert(&config.client_id, &ClientCertOpts::default())
        .context("minting the client certificate")?;

    let mut service_clients = BTreeMap::new();
    let mut service_certs = BTreeMap::new();
    for (kind, (client_id, xsappname)) in &config.services {
        let cert = ca
            .client_cert(client_id, &ClientCertOpts::default())
            .context("minting a service client certificate")?;
        // Each service client gets a secret of its own in secret mode.
        let secret = match config.client_secret {
            Some(_) => Some(util::random_id().context("generating a service client secret")?),
            None => None,
        };
        service_clients.insert(
            *kind,
            ServiceClient {
                kind: *kind,
                client_id: client_id.clone(),
                xsappname: xsappname.clone(),
                secret,
                accepted_certs: Mutex::new(HashSet::from([cert.sha256_fingerprint.clone()])),
            },
        );
        service_certs.insert(*kind, cert);
    }

    let connectivity_proxy = config
        .connectivity_proxy
        .clone()
        .unwrap_or_else(|| (connectivity_proxy_addr.ip().to_string(), connectivity_proxy_addr.port()));
    let state = Arc::new(State::new(
        config,
        zones,
        destination_url,
        connectivity_proxy,
        ca,
        service_clients,
    ));
    lock(&state.accepted_certs).insert(default_cert.sha256_fingerprint.clone());
    let tasks = vec![
        tokio::spawn(server::serve(
            url_listener,
            Arc::clone(&url_tls),
            Arc::clone(&state),
            Listener::Url,
        )),
        tokio::spawn(server::serve(
            cert_listener,
            cert_tls,
            Arc::clone(&state),
            Listener::CertUrl,
        )),
        tokio::spawn(server::serve(
            destination_listener,
            url_tls,
            Arc::clone(&state),
            Listener::Destination,
        )),
        tokio::spawn(connectivity::serve(proxy_listener, Arc::clone(&state))),
    ];
    Ok(DevXsuaa {
        state,
        default_cert,
        service_certs,
        connectivity_proxy_addr,
        hosts,
        tasks,
    })
}

impl DevXsuaa {
    /// A builder with development defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The provider zone's `url` (no trailing slash): `https://127.0.0.1:PORT`
    /// of the main listener, or `https://<provider subdomain>.auth.localhost:PORT`
    /// in multi-zone mode.
    pub fn url(&self) -> String {
        self.state.provider().url.clone()
    }

    /// The provider zone's `certurl`: `https://127.0.0.1:PORT` of the mTLS
    /// token listener, or `https://<provider subdomain>.auth.cert.localhost:PORT`
    /// in multi-zone mode.
    pub fn cert_url(&self) -> String {
        self.state.provider().cert_url.clone()
    }

    /// `127.0.0.1:PORT`, or `auth.localhost` in multi-zone mode: clients
    /// fetch `https://<uaadomain>/token_keys?zid=<zid>` (in multi-zone mode
    /// on the port of [`DevXsuaa::url`]).
    pub fn uaa_domain(&self) -> String {
        binding::uaa_domain(&self.state).to_string()
    }

    /// PEM of the CA that issued the server and client certificates.
    pub fn ca_pem(&self) -> String {
        self.state.ca.pem().to_string()
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> String {
        self.state.config.client_id.clone()
    }

    /// The application name that prefixes scopes.
    pub fn xsappname(&self) -> String {
        self.state.config.xsappname.clone()
    }

    /// The provider's identity zone id (`zid`).
    pub fn zone_id(&self) -> String {
        self.state.provider().zone_id.clone()
    }

    /// x509 credentials as in a `VCAP_SERVICES` xsuaa binding, with the
    /// client certificate minted at start.
    pub fn credentials(&self) -> Value {
        binding::x509_credentials(&self.state, &self.default_cert)
    }

    /// binding-secret credentials (`clientsecret`, no certificate).
    ///
    /// # Errors
    /// Fails when the server was built without [`Builder::client_secret`].
    pub fn secret_credentials(&self) -> anyhow::Result<Value> {
        let secret = self
            .state
            .config
            .client_secret
            .as_deref()
            .context("no client secret configured; use Builder::client_secret")?;
        Ok(binding::secret_credentials(&self.state, secret))
    }

    /// x509 credentials carrying `cert` and its key.
    pub fn credentials_with(&self, cert: &ClientCert) -> Value {
        binding::x509_credentials(&self.state, cert)
    }

    /// `VCAP_SERVICES` JSON with one xsuaa binding holding `credentials`.
    pub fn vcap_services(&self, credentials: &Value) -> String {
        binding::vcap_services(credentials)
    }

    /// Writes `root/name` in the Kubernetes service-binding layout (one file
    /// per field plus `type` and `provider`, behind a `..data` symlink); a
    /// second call for the same name swaps the content atomically.
    ///
    /// # Errors
    /// Fails on IO errors or when `credentials` is not a JSON object.
    pub fn write_binding_dir(&self, root: &Path, name: &str, credentials: &Value) -> io::Result<PathBuf> {
        binding::write_binding_dir(root, name, "xsuaa", credentials)
    }

    /// Writes a service's binding directory `root/<label>` (`type` is the
    /// label), as [`DevXsuaa::write_binding_dir`] does for XSUAA.
    ///
    /// # Errors
    /// Fails on IO errors or when `credentials` is not a JSON object.
    pub fn write_service_binding_dir(
        &self,
        root: &Path,
        kind: ServiceKind,
        credentials: &Value,
    ) -> io::Result<PathBuf> {
        binding::write_binding_dir(root, kind.label(), kind.label(), credentials)
    }

    /// `https://127.0.0.1:PORT` of the Destination service (the destination
    /// binding's `uri`).
    pub fn destination_url(&self) -> String {
        self.state.destination_url.clone()
    }

    fn service(&self, kind: ServiceKind) -> anyhow::Result<&ServiceClient> {
        self.state
            .service_clients
            .get(&kind)
            .with_context(|| format!("no {} client configured", kind.label()))
    }

    /// The OAuth client id of a service's client.
    pub fn service_client_id(&self, kind: ServiceKind) -> String {
        self.service(kind).map(|s| s.client_id.clone()).unwrap_or_default()
    }

    /// The xsappname of a service's client.
    pub fn service_xsappname(&self, kind: ServiceKind) -> String {
        self.service(kind).map(|s| s.xsappname.clone()).unwrap_or_default()
    }

    /// x509 credentials of a service binding, with the service client's
    /// certificate minted at start.
    ///
    /// # Errors
    /// Fails when the service has no client (never with the builder's
    /// defaults).
    pub fn service_credentials(&self, kind: ServiceKind) -> anyhow::Result<Value> {
        let service = self.service(kind)?;
        let cert = self
            .service_certs
            .get(&kind)
            .context("no certificate for the service client")?;
        Ok(binding::service_x509_credentials(&self.state, service, cert))
    }

    /// binding-secret credentials of a service binding.
    ///
    /// # Errors
    /// Fails when the server was built without [`Builder::client_secret`].
    pub fn service_secret_credentials(&self, kind: ServiceKind) -> anyhow::Result<Value> {
        let service = self.service(kind)?;
        let secret = service
            .secret
            .as_deref()
            .context("no client secret configured; use Builder::client_secret")?;
        Ok(binding::service_secret_credentials(&self.state, service, secret))
    }

    /// x509 credentials of a service binding carrying `cert`.
    ///
    /// # Errors
    /// Fails when the service has no client.
    pub fn service_credentials_with(&self, kind: ServiceKind, cert: &ClientCert) -> anyhow::Result<Value> {
        Ok(binding::service_x509_credentials(
            &self.state,
            self.service(kind)?,
            cert,
        ))
    }

    /// Issues a client certificate from the dev CA accepted for the service's
    /// client only.
    ///
    /// # Errors
    /// Fails when the service has no client or certificate generation fails.
    pub fn issue_service_client_cert(&self, kind: ServiceKind, opts: ClientCertOpts) -> anyhow::Result<ClientCert> {
        let service = self.service(kind)?;
        let name = opts.common_name.clone().unwrap_or_else(|| service.client_id.clone());
        let cert = self.state.ca.client_cert(&name, &opts)?;
        lock(&service.accepted_certs).insert(cert.sha256_fingerprint.clone());
        Ok(cert)
    }

    /// `VCAP_SERVICES` JSON with the xsuaa, destination and connectivity
    /// bindings holding these credentials.
    pub fn vcap_services_all(&self, xsuaa: &Value, destination: &Value, connectivity: &Value) -> String {
        binding::vcap_services_all(xsuaa, destination, connectivity)
    }

    /// Adds or replaces a provider-zone destination while the server runs; `properties`
    /// are as for [`Builder::destination`].
    pub fn set_destination<K, V>(&self, name: &str, properties: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<String>,
        V: Into<String>,
    {
        let properties = properties.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        lock(&self.state.provider().destinations).insert(name.to_string(), Destination::new(properties, Vec::new()));
    }

    /// Removes a destination while the server runs: later finds answer 404.
    pub fn remove_destination(&self, name: &str) {
        lock(&self.state.provider().destinations).remove(name);
    }

    /// With `Some(status)` every find-destination call answers `status`
    /// (after any delay); `None` restores normal answers.
    pub fn set_destination_failure(&self, status: Option<StatusCode>) {
        lock(&self.state.find_behaviour).failure = status;
    }

    /// The trusted framing domains (`iframeDomains`, space-separated) the security settings of
    /// `subdomain` answer; `None` answers without them.
    pub fn set_iframe_domains(&self, subdomain: &str, domains: Option<&str>) {
        let mut settings = lock(&self.state.security_settings);
        match domains {
            Some(domains) => settings
                .iframe_domains
                .insert(subdomain.to_string(), domains.to_string()),
            None => settings.iframe_domains.remove(subdomain),
        };
    }

    /// With `Some(status)` the security settings answer `status`; `None` restores them.
    pub fn set_security_settings_failure(&self, status: Option<StatusCode>) {
        lock(&self.state.security_settings).failure = status;
    }

    /// Requests the security settings endpoint has received.
    pub fn security_settings_requests(&self) -> u64 {
        lock(&self.state.security_settings).requests
    }

    /// The provider zone's subdomain (the binding's `identityzone`).
    pub fn subdomain(&self) -> String {
        self.state.provider().subdomain.clone()
    }

    /// With `Some(status)` /userinfo answers that status (after checking the
    /// token) instead of the user's info; `None` answers normally.
    pub fn set_userinfo_failure(&self, status: Option<StatusCode>) {
        *lock(&self.state.userinfo_failure) = status;
    }

    /// With `Some(delay)` every find-destination call waits that long
    /// before answering; `None` answers at once.
    pub fn set_destination_delay(&self, delay: Option<Duration>) {
        lock(&self.state.find_behaviour).delay = delay;
    }

    /// `127.0.0.1:PORT` of the connectivity proxy (plain HTTP), which the
    /// connectivity binding names unless [`Builder::connectivity_proxy`]
    /// named another.
    pub fn connectivity_proxy_addr(&self) -> SocketAddr {
        self.connectivity_proxy_addr
    }

    /// Maps a virtual `host:port` to a system's address while the server
    /// runs, as [`Builder::virtual_host`] does at start.
    pub fn set_virtual_host(&self, virtual_host: &str, system: impl ToString) {
        lock(&self.state.virtual_hosts).insert(virtual_host.to_ascii_lowercase(), system.to_string());
    }

    /// Removes a virtual host mapping: the proxy answers 503 for it again.
    pub fn remove_virtual_host(&self, virtual_host: &str) {
        lock(&self.state.virtual_hosts).remove(&virtual_host.to_ascii_lowercase());
    }

    /// The requests the connectivity proxy received, oldest first (the
    /// last 1000).
    pub fn connectivity_requests(&self) -> Vec<ProxyRecord> {
        lock(&self.state.proxy_records).iter().cloned().collect()
    }

    /// How often `GET .../destinations/{name}` was called for `name`.
    pub fn destination_lookups(&self, name: &str) -> u64 {
        lock(&self.state.stats)
            .destination_lookups
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Issues a client certificate from the dev CA and accepts it for the
    /// client.
    ///
    /// # Panics
    /// Panics if certificate generation fails (a broken crypto backend).
    pub fn issue_client_cert(&self, opts: ClientCertOpts) -> ClientCert {
        let name = opts.common_name.clone().unwrap_or_else(|| self.client_id());
        let cert = self
            .state
            .ca
            .client_cert(&name, &opts)
            .expect("client certificate generation failed");
        lock(&self.state.accepted_certs).insert(cert.sha256_fingerprint.clone());
        cert
    }

    /// A valid-looking client certificate from a fresh CA the server does not
    /// trust: the certurl handshake rejects it.
    ///
    /// # Panics
    /// Panics if certificate generation fails (a broken crypto backend).
    pub fn foreign_client_cert(&self) -> ClientCert {
        Ca::new("foreign CA")
            .and_then(|ca| ca.client_cert(&self.state.config.client_id, &ClientCertOpts::default()))
            .expect("foreign certificate generation failed")
    }

    /// Stops accepting the certificate with this SHA-256 fingerprint (hex,
    /// any case, colons allowed): the token endpoint answers 401 invalid_client.
    pub fn revoke_client_cert(&self, sha256_fingerprint: &str) {
        lock(&self.state.accepted_certs).remove(&certs::normalize_fingerprint(sha256_fingerprint));
    }

    /// Adds a new signing key with a new kid to the provider zone; both keys
    /// are published and new tokens are signed with the new one.
    ///
    /// # Panics
    /// Panics if RSA key generation fails (a broken crypto backend).
    pub fn rotate_signing_key(&self) {
        lock(&self.state.provider().keys)
            .rotate()
            .expect("rsa key generation failed");
    }

    /// Removes every signing key of the provider zone but the current one
    /// from /token_keys.
    pub fn drop_old_signing_keys(&self) {
        lock(&self.state.provider().keys).drop_old();
    }

    /// Signs arbitrary claims with the provider zone's current key and the
    /// usual header.
    ///
    /// # Panics
    /// Panics if signing fails (a broken crypto backend).
    pub fn mint_token(&self, claims: Value) -> String {
        let zone = self.state.provider();
        let key = lock(&zone.keys).current();
        jwt::sign(&key, &zone.url, &claims).expect("jwt signing failed")
    }

    /// The access token claims a login of `user` in the provider zone would
    /// produce now.
    ///
    /// # Panics
    /// Panics if the system random generator fails.
    pub fn user_token_claims(&self, user: &User) -> Value {
        let jti = util::random_id().expect("system random generator failed");
        self.claims_in(self.state.provider(), user, &jti)
    }

    pub(crate) fn claims_in(&self, zone: &Zone, user: &User, jti: &str) -> Value {
        let lifetime = self.state.access_lifetime_secs();
        jwt::user_claims(
            &self.state.config,
            zone,
            user,
            "authorization_code",
            util::now_secs(),
            lifetime,
            jti,
        )
    }

    /// PKCS#8 PEM of the provider zone's current signing key.
    pub fn signing_key_pem(&self) -> String {
        lock(&self.state.provider().keys).current().private_pem.clone()
    }

    /// PEM (SubjectPublicKeyInfo) of the provider zone's current signing key.
    pub fn public_key_pem(&self) -> String {
        lock(&self.state.provider().keys).current().public_pem.clone()
    }

    /// Changes the lifetime of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.access_token_lifetime) = lifetime;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.state.stats).clone()
    }

    /// The last request to /oauth/token on either listener.
    pub fn last_token_request(&self) -> Option<TokenRequestRecord> {
        lock(&self.state.last_token_request).clone()
    }

    /// Stops the listeners and waits until their tasks have ended.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // The only expected error is the cancellation just requested.
            let _ = task.await;
        }
    }
}

impl Drop for DevXsuaa {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for DevXsuaa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevXsuaa")
            .field("url", &self.state.provider().url)
            .field("cert_url", &self.state.provider().cert_url)
            .field("client_id", &self.state.config.client_id)
            .finish_non_exhaustive()
    }
}
