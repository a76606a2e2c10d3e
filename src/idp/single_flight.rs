//! A bounded cache whose entries are fetched once however many callers ask at the same time
//! (single flight per key), each kept until the Unix second its fetch says.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use super::Clock;

/// One entry: a value and the Unix second it is good until; its lock is what callers for the same
/// key queue on.
type Slot<V> = Arc<tokio::sync::Mutex<Option<(V, u64)>>>;

/// Values by key, at most `capacity` of them, shared by every worker thread.
pub struct SingleFlight<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> SingleFlight<K, V> {
        SingleFlight {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Entries held now, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value for `key`: the cached one while `clock` is before its end, else what `fetch`
    /// returns (a value and the Unix second it is good until). Concurrent callers for one key
    /// wait for the first one's fetch; a failed fetch is not cached, the next caller tries again.
    ///
    /// # Errors
    /// The error of `fetch`.
    pub async fn get_or_fetch<F, Fut, E>(&self, key: K, clock: &Clock, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, u64), E>>,
    {
        let slot = self.slot(key, clock.now());
        let mut cached = slot.lock().await;
        if let Some((value, until)) = cached.as_ref() {
            if *until > clock.now() {
                return Ok(value.clone());
            }
        }
        let (value, until) = fetch().await?;
        *cached = Some((value.clone(), until));
        Ok(value)
    }

    /// Keeps only the entries whose key `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| keep(key));
    }

    /// Forgets `key` (a value found to be no longer good).
    pub fn remove(&self, key: &K) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    fn slot(&self, key: K, now: u64) -> Slot<V> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(&key) {
            return slot.clone();
        }
        if slots.len() >= self.capacity {
            // Expired entries nobody waits on go first, then any entry nobody waits on.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map(|entry| entry.as_ref().is_some_and(|(_, until)| *until > now))
                        .unwrap_or(true)
            });
            while slots.len() >= self.capacity {
                let idle = slots
                    .iter()
                    .find(|(_, slot)| Arc::strong_count(slot) == 1)
                    .map(|(key, _)| key.clone());
                match idle {
                    Some(idle) => slots.remove(&idle),
                    None => break,
                };
            }
        }
        let slot = Slot::default();
        slots.insert(key, slot.clone());
        slot
    }
}

#[cfg(test)]
mod tests;
