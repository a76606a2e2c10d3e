//! approuter: the application router in front of business apps.
//!
//! - [`config`]: `xs-app.json` and the environment, checked into one typed `Config`.
//! - [`routing`]: the compiled route table (no IO).
//! - [`auth`]: login at XSUAA, sessions, tokens, CSRF and scopes.
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
pub mod cors;
pub mod error;
pub mod http1;
pub mod logging;
pub mod metrics;
pub mod origin;
pub mod pipeline;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod static_files;
pub mod tls;
mod util;
