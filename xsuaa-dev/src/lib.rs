//! A development XSUAA: a real HTTPS OAuth 2.0 authorization server shaped
//! like SAP XSUAA, for integration tests and local setups.
//!
//! It serves three loopback TLS listeners, `url` (authorize, secret-client
//! token endpoint, `/token_keys`, `/userinfo`, `/logout.do`, OpenID
//! discovery), `certurl` (the mTLS token endpoint) and a development
//! Destination service, with certificates from a CA minted at start and RS256
//! tokens from a rotating key ring, plus a plain-HTTP connectivity proxy.
//!
//! Bound services: besides XSUAA, a `destination` and a `connectivity`
//! binding ([`DevXsuaa::service_credentials`], [`DevXsuaa::vcap_services_all`],
//! [`DevXsuaa::write_service_binding_dir`]), each with its own OAuth client
//! here. Their clients get tokens at the same endpoints as the XSUAA client
//! (certificate at `certurl`, or secret at `url` in secret mode; another
//! client's certificate is refused):
//! - `client_credentials`: scopes `uaa.resource` and
//!   `<xsappname>.Destination.read` (`Connectivity.read` for connectivity);
//! - `urn:ietf:params:oauth:grant-type:jwt-bearer` with `assertion=<user
//!   access token of this XSUAA>` (valid signature, not expired, our issuer
//!   and zone): a user token for the calling client with scopes `openid`,
//!   `uaa.user` and the service scope (the XSUAA client keeps its user's
//!   scopes); no refresh token.
//!
//! The Destination service (`uri` of its binding,
//! [`DevXsuaa::destination_url`]) serves
//! `GET /destination-configuration/v1/destinations/{name}`: 401 unless the
//! bearer is a valid token of the destination client (client credentials or
//! exchanged user token), and for a non-empty `X-user-token` that is not a
//! valid user token; 404 for an unknown name; else `owner`,
//! `destinationConfiguration` (`Name`, `Type: HTTP` and the configured
//! properties), `authTokens` and `certificates` when configured.
//! `BasicAuthentication` yields `Basic base64(User:Password)`;
//! `OAuth2ClientCredentials` a client token for `clientId`;
//! `OAuth2UserTokenExchange`/`OAuth2JWTBearer`/`OAuth2SAMLBearerAssertion`
//! a user token for `clientId` exchanged from `X-user-token` or else a user
//! bearer, with that token's scopes; `OAuth2Password` a user token for
//! `clientId` when `User`/`Password` are a configured user's;
//! `OAuth2TechnicalUserPropagation` a client token for `clientId` under the
//! header key `SAP-Connectivity-Technical-Authentication`;
//! `PrincipalPropagation` and `ClientCertificateAuthentication` no token.
//! Tokens are issued here only when `tokenServiceURL` is absent or this
//! XSUAA's; any other token service, a missing user token or `clientId`, or
//! an unknown type set `authTokens[0].error`. The default set (see
//! [`Builder::destination`]): `no-auth`, `basic`, `oauth-cc`,
//! `user-exchange`, `jwt-bearer`, `saml-bearer`, `password` (the first
//! user), `token-error`, and on premise (`http://erp.internal:44300`, a
//! virtual host mapped to no system by default) `on-premise`,
//! `principal-propagation` (both with location `loc1`) and
//! `technical-user`. Destinations change at run time
//! ([`DevXsuaa::set_destination`], [`DevXsuaa::remove_destination`]), and
//! every find can be made to fail ([`DevXsuaa::set_destination_failure`]) or
//! wait ([`DevXsuaa::set_destination_delay`]). Calls are counted per name in
//! [`Stats::destination_lookups`].
//!
//! The connectivity proxy ([`DevXsuaa::connectivity_proxy_addr`], named by
//! the connectivity binding unless [`Builder::connectivity_proxy`] names
//! another) takes absolute-form `http://` requests with
//! `Proxy-Authorization: Bearer <token of the connectivity client>` (else
//! 407 with `Proxy-Authenticate: Bearer`). `https://` targets and `CONNECT`
//! get 405, origin-form targets 400, a virtual `host:port` mapped to no
//! system ([`Builder::virtual_host`], [`DevXsuaa::set_virtual_host`]) 503.
//! Other requests, websocket upgrades included, go to the mapped system in
//! origin form with `Host` unchanged and without `Proxy-Authorization`,
//! `SAP-Connectivity-*` and hop-by-hop headers. Each request is recorded
//! ([`DevXsuaa::connectivity_requests`], the last 1000).
//!
//! Multi-zone mode ([`Builder::tenant`], [`Builder::multi_zone`]) serves
//! several identity zones as XSUAA does for the subaccounts subscribed to a
//! multitenant application. Zone hosts are names under `localhost`, which
//! resolve to loopback without DNS (RFC 6761): the provider zone (subdomain
//! `dev`, [`Builder::provider_subdomain`]) is `https://dev.auth.localhost:PORT`
//! with `certurl` `https://dev.auth.cert.localhost:CERTPORT`, a tenant `acme`
//! is [`DevXsuaa::tenant_url`] `https://acme.auth.localhost:PORT` and
//! [`DevXsuaa::tenant_cert_url`] `https://acme.auth.cert.localhost:CERTPORT`;
//! the listeners stay on 127.0.0.1 and the server certificate covers these
//! names (a client that asks the system resolver instead maps
//! [`DevXsuaa::zone_host_names`] to 127.0.0.1 itself, as `tests/zones.rs`
//! does with reqwest's `resolve`). The `Host` header picks the zone; a subdomain that is no zone gets
//! 404, and the bare `auth.localhost` serves only `/token_keys?zid=`. Each
//! zone has its own signing keys (`/token_keys` of its host, or `?zid=` on any
//! host; an unknown zid gets 400), users ([`Builder::tenant_user`], else
//! `user@<subdomain>`) and destinations ([`Builder::tenant_destination`]).
//! The XSUAA client and the service clients exist in every zone; tokens
//! issued on a zone's host carry its `iss`, `zid`, `ext_attr.zdn` and
//! `ext_attr.subaccountid`. Codes, refresh tokens and jwt-bearer assertions
//! are accepted only in the zone that issued them; the Destination service
//! answers with the destinations of the bearer token's zone and the
//! connectivity proxy admits connectivity tokens of any zone. The binding
//! then says `tenantmode: shared` and `uaadomain: auth.localhost`.
//! Subscription callbacks carry [`DevXsuaa::callback_token`];
//! [`DevXsuaa::saas_registry_credentials`] is the `saas-registry` binding.
//!
//! Layout:
//! - `config`: [`User`] and [`Builder`];
//! - `zone`: identity zones and how a request's host picks one;
//! - `handle`: [`DevXsuaa`], the running server and its test helpers;
//! - `tenancy`: [`DevXsuaa`]'s helpers for zones and subscriptions;
//! - `server`: rustls configs, accept loop, request dispatch;
//! - `endpoints` and `token`: the HTTP endpoints;
//! - `destination`: destinations and the find-destination endpoint;
//! - `connectivity`: the connectivity proxy and [`ProxyRecord`];
//! - `jwt`: signing keys, JWKS and XSUAA claims;
//! - `certs`: the development CA and client certificates;
//! - `binding`: credentials (`xsuaa`, services, `saas-registry`),
//!   `VCAP_SERVICES` and binding directories;
//! - `state`: shared server state and [`Stats`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let xsuaa = xsuaa_dev::DevXsuaa::builder().user(xsuaa_dev::User::new("alice")).start().await?;
//! let vcap = xsuaa.vcap_services(&xsuaa.credentials());
//! # drop(vcap); Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod binding;
mod certs;
mod config;
mod connectivity;
mod destination;
mod endpoints;
mod handle;
mod http;
mod jwt;
mod security_settings;
mod server;
mod state;
mod tenancy;
mod token;
mod util;
mod zone;

pub use certs::{ClientCert, ClientCertOpts, KeyKind};
pub use config::{Builder, ServiceKind, User};
pub use connectivity::ProxyRecord;
pub use handle::DevXsuaa;
pub use state::{Stats, TokenRequestRecord};
pub use tenancy::SAAS_REGISTRY_CLIENT_ID;
