//! approuter: the application router in front of business apps.
//!
//! A request enters at [`server`] (the HTTP/1.1 fast lane on the [`http1`] codec, or hyper), runs
//! the phases of [`pipeline`] in their order, and leaves through [`proxy`] (or [`static_files`],
//! or the user API); [`error`] turns whatever fails into the response. Layout:
//!
//! - [`config`]: `xs-app.json` and the environment, checked into one typed `Config`.
//! - [`routing`]: the compiled route table and the one form of a request path (no IO).
//! - [`pipeline`]: `RequestCtx` and the phases of one request, run in one order.
//! - [`auth`]: the login and authorization flow: authenticate, login and callback, logout, CSRF,
//!   scopes, the user API; [`limits`]: the client address and the failed-login limit.
//! - [`idp`]: the identity-provider client: token requests, JWT validation, certificate rotation.
//! - [`destination`]: the Destination service: find destination, its checked answer, the cache, and
//!   `DestinationServices`, which routes use.
//! - [`session`]: session storage: the store trait, the memory store, the Redis store.
//! - [`cookies`]: the `Cookie` reader and the router's `Set-Cookie` values.
//! - [`proxy`]: the upstream pool, the inline HTTP/1.1 client, the header policy, websockets.
//! - [`connect`]: every outbound connection: TCP, proxy tunnels, TLS with trust roots and client
//!   identities.
//! - [`http1`]: the HTTP/1.1 codec shared by the fast lane and the inline client.
//! - [`cors`], [`clickjacking`]: CORS and the framing allowlist service; [`origin`]: web origins;
//!   [`csp`]: how `Content-Security-Policy` values combine.
//! - [`saas`]: the SaaS registry's subscription callbacks (dependencies, subscribe, unsubscribe).
//! - [`static_files`]: `localDir` routes.
//! - [`tls`]: PEM loading, trust roots, the HTTPS listener's reloading certificate.
//! - [`server`]: listeners, the fast lane, hyper's connections, compression, graceful shutdown,
//!   and the admin listener.
//! - [`metrics`]: Prometheus metrics (a leaf: errors reach it as labels); [`logging`]: log
//!   format and the access log.
//! - [`error`]: `GatewayError`, the one status table, error responses and their metric labels.
//! - [`state`]: `AppState` and the hot-swappable `Snapshot`; [`app`]: start-up glue.
//! - [`cli`]: the `check` and `binding-params` subcommands (reports, no serving).
//!
//! No two top-level modules depend on each other in a cycle (`tests/module_graph.rs`).
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
pub mod csp;
pub mod destination;
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
pub mod saas;
pub mod server;
pub mod session;
pub mod state;
pub mod static_files;
pub mod tls;
mod util;
