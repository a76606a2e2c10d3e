//! Found destinations, cached per (user, name): a destination with a token for as long as the
//! token lasts, one without for a fixed time; one find per key however many requests wait.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{DestinationError, FoundDestination};
use crate::destination::resolve::Resolved;
use crate::idp::single_flight::SingleFlight;
use crate::idp::Clock;

/// How long a destination without a token of its own is kept unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Destinations kept at most unless configured.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// A destination's token is renewed this long before it expires (at most half its life).
const RENEW_BEFORE: u64 = 60;

/// Whose destination: none (found with the binding's own token) or a user's, by the SHA-256 of
/// the user's token so that the cache holds no user token and never hands one user's
/// user-bound token to another.
type Key = (Option<Box<str>>, Option<[u8; 32]>, String);

/// What the cache holds: a found destination, or something built from one.
pub trait Found {
    /// How long the destination's own token lasts (`authTokens[0].expires_in`), if it has one.
    fn token_lifetime(&self) -> Option<Duration>;
}

impl Found for FoundDestination {
    fn token_lifetime(&self) -> Option<Duration> {
        self.auth_expires_in
    }
}

impl Found for Resolved {
    fn token_lifetime(&self) -> Option<Duration> {
        self.found.auth_expires_in
    }
}

/// Found destinations shared by every worker thread.
pub struct DestinationCache<V = Resolved> {
    entries: SingleFlight<Key, Arc<V>>,
    ttl: Duration,
    clock: Clock,
}

impl<V: Found + Send + Sync + 'static> DestinationCache<V> {
    /// A cache of at most `capacity` destinations; those without a token expire after `ttl`.
    pub fn new(capacity: usize, ttl: Duration, clock: Clock) -> DestinationCache<V> {
        DestinationCache {
            entries: SingleFlight::new(capacity),
            ttl,
            clock,
        }
    }

    /// Forgets every destination of `tenant` (the tenant unsubscribed).
    pub fn forget_tenant(&self, tenant: &str) {
        self.entries.retain(|(cached, _, _)| cached.as_deref() != Some(tenant));
    }

    /// Destinations held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The destination `name` of `tenant` (multitenancy; `None`: the provider's) for `user_token`
    /// (or none): cached, or found by `find`.
    ///
    /// # Errors
    /// What `find` returns; errors are not cached.
    pub async fn get_or_find<F, Fut>(
        &self,
        tenant: Option<&str>,
        user_token: Option<&str>,
        name: &str,
        find: F,
    ) -> Result<Arc<V>, DestinationError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, DestinationError>>,
    {
        let user = user_token.map(|token| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            let mut hash = [0u8; 32];
            hash.copy_from_slice(digest.as_ref());
            hash
        });
        self.entries
            .get_or_fetch((tenant.map(Box::from), user, name.to_string()), &self.clock, || async {
                let found = find().await?;
                let lifetime = match found.token_lifetime() {
                    Some(expires_in) => {
                        let seconds = expires_in.as_secs();
                        seconds - RENEW_BEFORE.min(seconds / 2)
                    }
                    None => self.ttl.as_secs(),
                };
                let until = self.clock.now().saturating_add(lifetime);
                Ok((Arc::new(found), until))
            })
            .await
    }
}
