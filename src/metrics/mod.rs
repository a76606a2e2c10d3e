//! Metrics in the Prometheus (OpenMetrics) text format. Every label has a small, fixed set of
//! values — route index, status class, error kind, outcome — never a path or anything a user sent.
//! The request path touches only pre-created counters and lock-free histograms. A leaf: errors
//! and the things read at scrape time reach it as label enums and closures, never as app types.

mod sharded;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::sharded::{Histogram, ShardedCounter};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of requests that matched no route (404, login callback, welcome redirect).
const NO_ROUTE: &str = "none";
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type RouteLabels = [(&'static str, String); 1];
type RouteStatusLabels = [(&'static str, String); 2];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
/// A value read when metrics are scraped, from something the metrics do not own.
type Reader<T> = Box<dyn Fn() -> Option<T> + Send + Sync>;

/// What a failed request says about the system, for the counters that have a label for it (after
/// linkerd's inbound `ErrorKind`). The error sink (`error.rs`) names the kind of every error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A destination failed: forwarded requests and websocket upgrades alike.
    Upstream(UpstreamErrorKind),
    /// The session store could not answer.
    Store,
    /// A limit refused the request.
    Shed(Shed),
}

/// Why a request failed on the way to or from a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Tls,
}

impl UpstreamErrorKind {
    fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Tls => "tls",
        }
    }
}

/// Why a request was refused before it was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `MAX_IN_FLIGHT` reached: 503.
    InFlight,
    /// `LOGIN_RATE_LIMIT` reached: 429.
    LoginRateLimit,
    /// `MAX_REQUEST_BODY` exceeded: 413.
    BodyTooLarge,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::LoginRateLimit => "login_rate_limit",
            Shed::BodyTooLarge => "body_too_large",
        }
    }
}

/// The counters and histograms of one route, created up front.
struct RouteMetrics {
    by_class: [ShardedCounter; 5],
    duration: Histogram,
    upstream: Histogram,
}

/// Every metric of one router.
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    /// One entry per route index, then one for [`NO_ROUTE`].
    routes: Vec<RouteMetrics>,
    requests: Family<RouteStatusLabels, ShardedCounter>,
    request_duration: HistogramFamily<RouteLabels>,
    upstream_duration: HistogramFamily<RouteLabels>,
    upstream_errors: Family<Labels1, Counter>,
    connections_active: Gauge,
    connections: Counter,
    websockets_active: Gauge,
    in_flight: Gauge,
    shed: Family<Labels1, Counter>,
    sessions: Gauge,
    store_errors: Counter,
    logins_started: Counter,
    logins_completed: Counter,
    logins_failed: Family<Labels1, Counter>,
    token_requests: Family<Labels2, Counter>,
    token_duration: HistogramFamily<Labels1>,
    jwks_fetches: Family<Labels1, Counter>,
    destination_lookups: Family<Labels1, Counter>,
    certificate_expiry: Family<Labels1, Gauge>,
    /// `notAfter` of the HTTPS listener's certificate, read when metrics are scraped.
    server_certificate: Mutex<Option<Reader<i64>>>,
    /// The requests inside the `MAX_IN_FLIGHT` limit, read when metrics are scraped.
    in_flight_limit: Mutex<Option<Reader<usize>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics for a configuration with `route_count` routes; `enabled: false` (`METRICS=false`)
    /// makes every recording call return at once.
    pub fn new(enabled: bool, route_count: usize) -> Metrics {
        let mut registry = Registry::with_prefix("approuter");
        let requests = Family::<RouteStatusLabels, ShardedCounter>::default();
        let request_duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(Histogram::latency);
        let upstream_duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(Histogram::latency);
        let upstream_errors = Family::<Labels1, Counter>::default();
        let connections_active = Gauge::default();
        let connections = Counter::default();
        let websockets_active = Gauge::default();
        let in_flight = Gauge::default();
        let shed = Family::<Labels1, Counter>::default();
        let sessions = Gauge::default();
        let store_errors = Counter::default();
        let logins_started = Counter::default();
        let logins_completed = Counter::default();
        let logins_failed = Family::<Labels1, Counter>::default();
        let token_requests = Family::<Labels2, Counter>::default();
        let token_duration: HistogramFamily<Labels1> = Family::new_with_constructor(Histogram::latency);
        let jwks_fetches = Family::<Labels1, Counter>::default();
        let destination_lookups = Family::<Labels1, Counter>::default();
        let certificate_expiry = Family::<Labels1, Gauge>::default();

        registry.register(
            "requests",
            "Requests answered, by route index and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by route index",
            request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time a destination took to answer with its response head, by route index",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Forwarded requests and websocket upgrades that failed at the destination, by kind (connect, timeout, tls)",
            upstream_errors.clone(),
        );
        registry.register(
            "connections_active",
            "Client connections open now",
            connections_active.clone(),
        );
        registry.register("connections", "Client connections accepted", connections.clone());
        registry.register(
            "websockets_active",
            "Websocket tunnels open now",
            websockets_active.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being handled now (counted by the MAX_IN_FLIGHT limit)",
            in_flight.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused by a limit, by reason (in_flight, login_rate_limit, body_too_large)",
            shed.clone(),
        );
        registry.register(
            "sessions",
            "Sessions held in this instance's memory (idle ones until swept)",
            sessions.clone(),
        );
        registry.register(
            "session_store_errors",
            "Requests that failed because the session store could not answer",
            store_errors.clone(),
        );
        registry.register(
            "logins_started",
            "Redirects to the identity provider",
            logins_started.clone(),
        );
        registry.register(
            "logins_completed",
            "Login callbacks that created a session",
            logins_completed.clone(),
        );
        registry.register(
            "logins_failed",
            "Login callbacks that failed, by reason",
            logins_failed.clone(),
        );
        registry.register(
            "token_requests",
            "Requests to the token endpoint, by grant and outcome (ok, refused, error)",
            token_requests.clone(),
        );
        registry.register(
            "destination_lookups",
            "Find requests to the Destination service (cache hits are not counted), by outcome",
            destination_lookups.clone(),
        );
        registry.register(
            "token_request_duration_seconds",
            "Duration of token endpoint requests, by grant",
            token_duration.clone(),
        );
        registry.register(
            "jwks_fetches",
            "Fetches of the identity provider's token keys, by outcome",
            jwks_fetches.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until a certificate expires (negative: expired), by certificate (client, server)",
            certificate_expiry.clone(),
        );

        let route_names = (0..route_count)
            .map(|index| index.to_string())
            .chain(std::iter::once(NO_ROUTE.to_string()));
        let routes = if enabled {
            route_names
                .map(|name| RouteMetrics {
                    by_class: STATUS_CLASSES.map(|class| {
                        requests
                            .get_or_create(&[("route", name.clone()), ("status_class", class.to_string())])
                            .clone()
                    }),
                    duration: request_duration.get_or_create(&[("route", name.clone())]).clone(),
                    upstream: upstream_duration.get_or_create(&[("route", name)]).clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Metrics {
            enabled,
            registry,
            routes,
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            connections_active,
            connections,
            websockets_active,
            in_flight,
            shed,
            sessions,
            store_errors,
            logins_started,
            logins_completed,
            logins_failed,
            token_requests,
            destination_lookups,
            token_duration,
            jwks_fetches,
            certificate_expiry,
            server_certificate: Mutex::new(None),
            in_flight_limit: Mutex::new(None),
        }
    }

    /// Remembers how to read the HTTPS listener's certificate's `notAfter` (Unix seconds; `None`
    /// once the listener is gone) for the expiry gauge.
    pub fn watch_server_certificate(&self, not_after: impl Fn() -> Option<i64> + Send + Sync + 'static) {
        if let Ok(mut slot) = self.server_certificate.lock() {
            *slot = Some(Box::new(not_after));
        }
    }

    /// `notAfter` (Unix seconds) of the certificate the HTTPS listener serves now, if any.
    pub fn server_certificate_not_after(&self) -> Option<i64> {
        let slot = self.server_certificate.lock().ok()?;
        slot.as_ref()?().filter(|not_after| *not_after > 0)
    }

    /// Metrics that record nothing.
    pub fn disabled() -> Arc<Metrics> {
        Arc::new(Metrics::new(false, 0))
    }

    /// False with `METRICS=false`.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// One answered request. `upstream` is the time the destination took, when it was called.
    pub fn request(&self, route: Option<usize>, status: StatusCode, total: Duration, upstream: Option<Duration>) {
        if !self.enabled {
            return;
        }
        let class = (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1;
        let slot = match route {
            Some(index) if index + 1 < self.routes.len() => self.routes.get(index),
            Some(_) => None,
            None => self.routes.last(),
        };
        match slot {
            Some(metrics) => {
                metrics.by_class[class].inc();
                metrics.duration.observe(total);
                if let Some(upstream) = upstream {
                    metrics.upstream.observe(upstream);
                }
            }
            // A route added by a configuration reload: rare enough for the map lookup.
            None => {
                let name = route.map_or_else(|| NO_ROUTE.to_string(), |index| index.to_string());
                self.requests
                    .get_or_create(&[
                        ("route", name.clone()),
                        ("status_class", STATUS_CLASSES[class].to_string()),
                    ])
                    .inc();
                self.request_duration
                    .get_or_create(&[("route", name.clone())])
                    .observe(total);
                if let Some(upstream) = upstream {
                    self.upstream_duration
                        .get_or_create(&[("route", name)])
                        .observe(upstream);
                }
            }
        }
    }

    /// Counts what a failed request says about the system (the error sink names its kind).
    pub fn request_error(&self, kind: ErrorKind) {
        match kind {
            ErrorKind::Upstream(kind) => self.upstream_error(kind),
            ErrorKind::Store => self.store_error(),
            ErrorKind::Shed(reason) => self.shed(reason),
        }
    }

    /// A forwarded request that failed.
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        if self.enabled {
            self.upstream_errors.get_or_create(&[("kind", kind.label())]).inc();
        }
    }

    /// A request refused by a limit.
    pub fn shed(&self, reason: Shed) {
        if self.enabled {
            self.shed.get_or_create(&[("reason", reason.label())]).inc();
        }
    }

    /// A request that failed because the session store did not answer.
    pub fn store_error(&self) {
        if self.enabled {
            self.store_errors.inc();
        }
    }

    /// A client connection was accepted; the gauge goes down when the guard is dropped.
    pub fn connection(&self) -> GaugeGuard {
        if !self.enabled {
            return GaugeGuard(None);
        }
        self.connections.inc();
        GaugeGuard::up(&self.connections_active)
    }

    /// A websocket tunnel opened; the gauge goes down when the guard is dropped.
    pub fn websocket(&self) -> GaugeGuard {
        if !self.enabled {
            return GaugeGuard(None);
        }
        GaugeGuard::up(&self.websockets_active)
    }

    /// Remembers how to read the requests inside the `MAX_IN_FLIGHT` limit (`None` once it is
    /// gone): the gauge is read when metrics are scraped, so requests pay nothing extra for it.
    pub fn watch_in_flight(&self, inside: impl Fn() -> Option<usize> + Send + Sync + 'static) {
        if let Ok(mut slot) = self.in_flight_limit.lock() {
            *slot = Some(Box::new(inside));
        }
    }

    /// Sets the in-flight gauge from the limit.
    pub fn refresh_in_flight(&self) {
        let Ok(slot) = self.in_flight_limit.lock() else { return };
        if let Some(inside) = slot.as_ref().and_then(|read| read()) {
            self.in_flight.set(i64::try_from(inside).unwrap_or(i64::MAX));
        }
    }

    /// A redirect to the identity provider.
    pub fn login_started(&self) {
        if self.enabled {
            self.logins_started.inc();
        }
    }

    /// A login callback that created a session.
    pub fn login_completed(&self) {
        if self.enabled {
            self.logins_completed.inc();
        }
    }

    /// A login callback that failed, with a fixed reason label.
    pub fn login_failed(&self, reason: &'static str) {
        if self.enabled {
            self.logins_failed.get_or_create(&[("reason", reason)]).inc();
        }
    }

    /// One request to the token endpoint: `grant` and `outcome` are fixed label values.
    pub fn token_request(&self, grant: &'static str, outcome: &'static str, duration: Duration) {
        if self.enabled {
            self.token_requests
                .get_or_create(&[("grant", grant), ("outcome", outcome)])
                .inc();
            self.token_duration.get_or_create(&[("grant", grant)]).observe(duration);
        }
    }

    /// One find request to the Destination service; `outcome` is a fixed label value.
    pub fn destination_lookup(&self, outcome: &'static str) {
        if self.enabled {
            self.destination_lookups.get_or_create(&[("outcome", outcome)]).inc();
        }
    }

    /// One fetch of the token keys.
    pub fn jwks_fetch(&self, ok: bool) {
        if self.enabled {
            let outcome = if ok { "ok" } else { "error" };
            self.jwks_fetches.get_or_create(&[("outcome", outcome)]).inc();
        }
    }

    /// Sets the sessions gauge (read from the store when metrics are scraped).
    pub fn set_sessions(&self, count: usize) {
        self.sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the seconds until `certificate` (`client` or `server`) expires.
    pub fn set_certificate_expiry(&self, certificate: &'static str, seconds: i64) {
        self.certificate_expiry
            .get_or_create(&[("certificate", certificate)])
            .set(seconds);
    }

    /// The whole registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Keeps a gauge one higher while it lives.
pub struct GaugeGuard(Option<Gauge>);

impl GaugeGuard {
    fn up(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(Some(gauge.clone()))
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests;
