//! Server-side state shared by the listeners: the zones, pending codes,
//! refresh tokens, the OAuth clients and their accepted certificates and
//! counters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::certs::Ca;
use crate::config::{Config, ServiceKind, User};
use crate::connectivity::Records;
use crate::util::lock;
use crate::zone::Zone;

/// Counters since start; a snapshot is returned by [`crate::DevXsuaa::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests to /oauth/authorize, valid or not.
    pub authorize_requests: u64,
    /// Requests to /oauth/token by their `grant_type` form value (`""` when
    /// missing), refused ones included.
    pub token_requests_by_grant: BTreeMap<String, u64>,
    /// Token requests answered with an error.
    pub token_requests_refused: u64,
    /// Completed TLS handshakes on the `certurl` listener.
    pub certurl_tls_handshakes: u64,
    /// Requests to /token_keys.
    pub jwks_requests: u64,
    /// Requests to /token_keys by the zone id whose keys they asked for
    /// (`?zid=`, else the zone of the host), unknown ones included.
    pub jwks_requests_by_zid: BTreeMap<String, u64>,
    /// Requests to /userinfo.
    pub userinfo_requests: u64,
    /// Requests to /logout.do.
    pub logout_requests: u64,
    /// Find-destination calls by destination name, refused ones included.
    pub destination_lookups: BTreeMap<String, u64>,
    /// Find-destination calls answered 401.
    pub destination_requests_refused: u64,
    /// Connectivity proxy requests answered 407.
    pub connectivity_requests_refused: u64,
}

/// What the last /oauth/token request carried, for assertions on how a
/// client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestRecord {
    /// `"url"` or `"certurl"`: the listener that received it.
    pub listener: String,
    /// The request's `Host` (or HTTP/2 `:authority`), port included; empty
    /// when it had neither.
    pub host: String,
    /// The decoded form body.
    pub form: BTreeMap<String, String>,
    /// The client id from an HTTP Basic `Authorization` header, if any.
    pub basic_auth_client: Option<String>,
    /// SHA-256 hex fingerprint of the TLS client certificate, if any.
    pub client_cert_fingerprint: Option<String>,
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Url,
    CertUrl,
    Destination,
}

impl Listener {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Url => "url",
            Self::CertUrl => "certurl",
            Self::Destination => "destination",
        }
    }
}

/// An authorization code waiting for its token request.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    /// The zone that issued it: only its token endpoint redeems it.
    pub(crate) zone_id: String,
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: Option<String>,
    pub(crate) user: User,
    pub(crate) expires_at: u64,
}

/// A refresh token held server side.
#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    /// The zone that issued it: only its token endpoint accepts it.
    pub(crate) zone_id: String,
    pub(crate) client_id: String,
    pub(crate) user: User,
    pub(crate) expires_at: u64,
}

/// The OAuth client of a bound service at this XSUAA.
pub(crate) struct ServiceClient {
    pub(crate) kind: ServiceKind,
    pub(crate) client_id: String,
    pub(crate) xsappname: String,
    /// Set in secret mode, as for the XSUAA client.
    pub(crate) secret: Option<String>,
    /// Fingerprints of client certificates accepted for this client only.
    pub(crate) accepted_certs: Mutex<HashSet<String>>,
}

/// What the find-destination endpoint answers besides the configured
/// destinations: a forced status and a delay, changed at run time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FindBehaviour {
    pub(crate) failure: Option<StatusCode>,
    pub(crate) delay: Option<Duration>,
}

/// Everything the handlers share.
pub(crate) struct State {
    pub(crate) config: Config,
    /// Never empty: the provider zone first, then the subscriber zones.
    pub(crate) zones: Vec<Zone>,
    /// Whether the zone of a request is chosen by its host name.
    pub(crate) multi_zone: bool,
    pub(crate) destination_url: String,
    pub(crate) find_behaviour: Mutex<FindBehaviour>,
    /// A status /userinfo answers instead of the user's info.
    pub(crate) userinfo_failure: Mutex<Option<StatusCode>>,
    /// Host and port the connectivity binding names: the proxy here unless
    /// the builder named another.
    pub(crate) connectivity_proxy: (String, u16),
    /// Systems by lower-cased virtual `host:port`, as the Cloud Connector
    /// maps them.
    pub(crate) virtual_hosts: Mutex<HashMap<String, String>>,
    pub(crate) proxy_records: Records,
    pub(crate) ca: Ca,
    pub(crate) access_token_lifetime: Mutex<Duration>,
    pub(crate) codes: Mutex<HashMap<String, PendingCode>>,
    pub(crate) refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    /// Fingerprints of client certificates accepted for the client.
    pub(crate) accepted_certs: Mutex<HashSet<String>>,
    pub(crate) service_clients: BTreeMap<ServiceKind, ServiceClient>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) last_token_request: Mutex<Option<TokenRequestRecord>>,
    pub(crate) security_settings: Mutex<crate::security_settings::SecuritySettings>,
}

impl State {
    pub(crate) fn new(
        config: Config,
        zones: Vec<Zone>,
        destination_url: String,
        connectivity_proxy: (String, u16),
        ca: Ca,
        service_clients: BTreeMap<ServiceKind, ServiceClient>,
    ) -> Self {
        let mut config = config;
        let virtual_hosts = std::mem::take(&mut config.virtual_hosts).into_iter().collect();
        Self {
            access_token_lifetime: Mutex::new(config.access_token_lifetime),
            multi_zone: config.multi_zone,
            config,
            zones,
            destination_url,
            find_behaviour: Mutex::default(),
            userinfo_failure: Mutex::default(),
            connectivity_proxy,
            virtual_hosts: Mutex::new(virtual_hosts),
            proxy_records: Mutex::default(),
            ca,
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            accepted_certs: Mutex::default(),
            service_clients,
            stats: Mutex::default(),
            last_token_request: Mutex::default(),
            security_settings: Mutex::default(),
        }
    }

    /// Applies `f` to the counters under the lock.
    pub(crate) fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
    }

    pub(crate) fn access_lifetime_secs(&self) -> u64 {
        lock(&self.access_token_lifetime).as_secs()
    }

    /// The provider zone (the binding's own).
    pub(crate) fn provider(&self) -> &Zone {
        // handle::start always builds the provider zone first.
        &self.zones[0]
    }

    /// The zone with this id.
    pub(crate) fn zone_by_id(&self, zone_id: &str) -> Option<&Zone> {
        self.zones.iter().find(|zone| zone.zone_id == zone_id)
    }

    /// The zone with this subdomain.
    pub(crate) fn zone_by_subdomain(&self, subdomain: &str) -> Option<&Zone> {
        self.zones.iter().find(|zone| zone.subdomain == subdomain)
    }

    /// A token issued in any zone, with that zone and the token's claims.
    pub(crate) fn verify_any(&self, token: &str) -> Option<(&Zone, Value)> {
        self.zones
            .iter()
            .find_map(|zone| zone.verify(token).map(|claims| (zone, claims)))
    }
}
