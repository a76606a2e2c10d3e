//! A development XSUAA: a real HTTPS OAuth 2.0 authorization server shaped
//! like SAP XSUAA, for integration tests and local setups.
//!
//! It serves two loopback TLS listeners, `url` (authorize, secret-client
//! token endpoint, `/token_keys`, `/userinfo`, `/logout.do`, OpenID
//! discovery) and `certurl` (the mTLS token endpoint), with certificates
//! from a CA minted at start and RS256 tokens from a rotating key ring.
//!
//! Layout:
//! - `config`: [`User`] and [`Builder`];
//! - `handle`: [`DevXsuaa`], the running server and its test helpers;
//! - `server`: rustls configs, accept loop, request dispatch;
//! - `endpoints` and `token`: the HTTP endpoints;
//! - `jwt`: signing keys, JWKS and XSUAA claims;
//! - `certs`: the development CA and client certificates;
//! - `binding`: credentials, `VCAP_SERVICES` and binding directories;
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
mod endpoints;
mod handle;
mod http;
mod jwt;
mod server;
mod state;
mod token;
mod util;

pub use certs::{ClientCert, ClientCertOpts, KeyKind};
pub use config::{Builder, User};
pub use handle::DevXsuaa;
pub use state::{Stats, TokenRequestRecord};
