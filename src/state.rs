//! Shared state: everything that reloads sits in one [`Snapshot`] behind one `ArcSwap`; a request
//! loads it once and uses it throughout.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Auth;
use crate::clickjacking::FrameAncestors;
use crate::config::Config;
use crate::destination::DestinationServices;
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::saas::Subscriptions;

/// What one request works with: the configuration and the clients built for it.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub upstream: Upstream,
}

/// State shared by every connection.
pub struct AppState {
    snapshot: ArcSwap<Snapshot>,
    /// Login and sessions; `None` when no XSUAA is bound (then only public routes exist).
    pub auth: Option<Arc<Auth>>,
    /// Counters and histograms, shared with `auth`.
    pub metrics: Arc<Metrics>,
    /// The Destination service (and Connectivity service), when bound.
    pub destinations: Option<Arc<DestinationServices>>,
    /// The SaaS registry's subscription callbacks, when `saas-registry` is bound.
    pub subscriptions: Option<Subscriptions>,
    /// The frame-ancestors CSP (`ENABLE_FRAME_ANCESTORS_CSP_HEADERS`).
    pub frame_ancestors: Option<Arc<FrameAncestors>>,
}

impl AppState {
    /// State serving `snapshot`, with metrics that record nothing.
    pub fn new(snapshot: Snapshot, auth: Option<Arc<Auth>>) -> AppState {
        AppState::with_metrics(snapshot, auth, Metrics::disabled())
    }

    /// State serving `snapshot` that records into `metrics`.
    pub fn with_metrics(snapshot: Snapshot, auth: Option<Arc<Auth>>, metrics: Arc<Metrics>) -> AppState {
        AppState {
            snapshot: ArcSwap::from_pointee(snapshot),
            auth,
            metrics,
            destinations: None,
            subscriptions: None,
            frame_ancestors: None,
        }
    }

    /// This state, finding destinations at `services`.
    pub fn with_destinations(mut self, services: Option<Arc<DestinationServices>>) -> AppState {
        self.destinations = services;
        self
    }

    /// This state, answering the SaaS registry's callbacks with `subscriptions`.
    pub fn with_subscriptions(mut self, subscriptions: Option<Subscriptions>) -> AppState {
        self.subscriptions = subscriptions;
        self
    }

    /// This state, sending the frame-ancestors CSP of `frames`.
    pub fn with_frame_ancestors(mut self, frames: Option<Arc<FrameAncestors>>) -> AppState {
        self.frame_ancestors = frames;
        self
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot as a whole; requests in flight keep the one they loaded.
    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }
}
