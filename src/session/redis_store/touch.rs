//! When this instance last extended each session's TTL, so that reads extend it at most once per
//! interval instead of writing on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Entries per shard before stale ones are dropped.
const SHARD_CAPACITY: usize = 8192;
const SHARDS: usize = 16;

/// Last touch per session tag.
type Shard = Mutex<HashMap<[u8; 16], Instant>>;

/// Bounded: an entry older than the interval means "touch now" just like a missing one, so a full
/// shard drops those first and, if still full, starts over (which costs one extra PEXPIRE per
/// session, nothing else).
pub(super) struct TouchMap {
    shards: Box<[Shard]>,
    interval: Duration,
}

impl TouchMap {
    pub fn new(interval: Duration) -> TouchMap {
        TouchMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            interval,
        }
    }

    fn shard(&self, tag: [u8; 16]) -> &Shard {
        // The tag is an HMAC output: its bytes are already uniformly spread.
        &self.shards[tag[0] as usize % SHARDS]
    }

    /// True when the TTL should be extended now; counts the touch as done.
    pub fn due(&self, tag: [u8; 16], now: Instant) -> bool {
        let Ok(mut map) = self.shard(tag).lock() else {
            return true;
        };
        if let Some(last) = map.get(&tag) {
            if now.saturating_duration_since(*last) < self.interval {
                return false;
            }
        }
        self.insert(&mut map, tag, now);
        true
    }

    /// Notes a write that set the TTL anyway (a save).
    pub fn record(&self, tag: [u8; 16], now: Instant) {
        if let Ok(mut map) = self.shard(tag).lock() {
            self.insert(&mut map, tag, now);
        }
    }

    pub fn forget(&self, tag: [u8; 16]) {
        if let Ok(mut map) = self.shard(tag).lock() {
            map.remove(&tag);
        }
    }

    fn insert(&self, map: &mut HashMap<[u8; 16], Instant>, tag: [u8; 16], now: Instant) {
        if map.len() >= SHARD_CAPACITY && !map.contains_key(&tag) {
            map.retain(|_, last| now.saturating_duration_since(*last) < self.interval);
            if map.len() >= SHARD_CAPACITY {
                map.clear();
            }
        }
        map.insert(tag, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn touches_are_spaced_by_the_interval() {
        let map = TouchMap::new(Duration::from_secs(30));
        let tag = [7u8; 16];
        assert!(map.due(tag, Instant::now()));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!map.due(tag, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(map.due(tag, Instant::now()));
        map.forget(tag);
        assert!(map.due(tag, Instant::now()), "after a removal the next load touches");
    }

    #[test]
    fn the_map_stays_bounded() {
        let map = TouchMap::new(Duration::from_secs(30));
        let now = Instant::now();
        for n in 0..(SHARD_CAPACITY * SHARDS * 2) as u32 {
            let mut tag = [0u8; 16];
            tag[..4].copy_from_slice(&n.to_le_bytes());
            map.record(tag, now);
        }
        let total: usize = map.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARD_CAPACITY * SHARDS, "{total}");
    }
}
