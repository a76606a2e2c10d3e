//! approuter: the application router in front of business apps.
//!
//! - [`config`]: `xs-app.json` and the environment, checked into one typed `Config`.
//! - [`routing`]: the compiled route table (no IO).
//! - [`auth`]: the login and authorization flow: authenticate, login and callback, logout, CSRF,
//!   scopes, the user API; [`limits`]: the failed-login limit per client address.
//! - [`idp`]: the identity-provider client: token requests, JWT validation, certificate rotation.
//! - [`session`]: session storage: the store trait, the memory store, the Redis store.
//! - [`cookies`]: the `Cookie` reader and the router's `Set-Cookie` values.
//! - [`proxy`]: the upstream client pool, the header policy, and websockets.
//! - [`cors`], [`clickjacking`]: CORS and the framing allowlist service; [`origin`]: web origins.
//! - [`static_files`]: `localDir` routes.
//! - [`tls`]: PEM loading and rustls configurations.
//! - [`server`]: listeners, protocols, limits, graceful shutdown, and the admin listener.
//! - [`metrics`]: Prometheus metrics; [`logging`]: log format and the access log.
//! - [`pipeline`]: the order of phases for one request; [`error`]: errors to responses.
//! - [`cli`]: the `check` and `binding-params` subcommands (reports, no serving).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// Library code never unwraps: a panic on a request path would drop the connection (tests may).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod clickjacking;
pub mod config;
pub mod connect;
pub mod cookies;
pub mod cors;
pub mod error;
pub mod http1;
pub mod idp;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod origin;
pub mod pipeline;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod session;
pub mod state;
pub mod static_files;
pub mod tls;
mod util;
