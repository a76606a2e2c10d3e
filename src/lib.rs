//! approuter: the application router in front of business apps.
//!
//! - [`config`]: `xs-app.json` and the environment, checked into one typed `Config`.
//! - [`routing`]: the compiled route table (no IO).
//! - [`auth`]: login at XSUAA, sessions, tokens, CSRF and scopes.
//! - [`proxy`]: the upstream client pool and the header policy.
//! - [`static_files`]: `localDir` routes.
//! - [`tls`]: PEM loading and rustls configurations.
//! - [`server`]: listeners, protocols, limits and graceful shutdown.
//! - [`pipeline`]: the order of phases for one request; [`error`]: errors to responses.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod pipeline;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod static_files;
pub mod tls;
mod util;
