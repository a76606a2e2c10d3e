//! Shared state: everything that reloads sits in one [`Snapshot`] behind one `ArcSwap`; a request
//! loads it once and uses it throughout.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::proxy::Upstream;

/// What one request works with: the configuration and the clients built for it.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub upstream: Upstream,
}

/// State shared by every connection.
pub struct AppState {
    snapshot: ArcSwap<Snapshot>,
}

impl AppState {
    /// State serving `snapshot`.
    pub fn new(snapshot: Snapshot) -> AppState {
        AppState {
            snapshot: ArcSwap::from_pointee(snapshot),
        }
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
