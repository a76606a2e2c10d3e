//! Limits that need no server: the client address behind trusted proxies, the per-address token
//! bucket for failed logins, and [`Budget`], one shared bucket for work that clients can cause.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use http::header::HeaderMap;
use tokio::time::Instant;

/// The client's address: the TCP peer, or with `hops` trusted proxies in front, the address the
/// outermost trusted proxy saw (the `hops`-th `X-Forwarded-For` entry from the right). Entries the
/// client wrote itself sit further left and are never used.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, hops: usize) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(hops)
        .and_then(|index| entries.get(index))
        .and_then(|entry| parse_addr(entry))
        .unwrap_or(peer)
}

fn parse_addr(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|addr| addr.ip()))
}

/// At most this many addresses are tracked. Beyond it, addresses whose bucket has refilled are
/// forgotten (at most once a second, so a flood from many addresses does not rescan the table on
/// every request); if none has, a new address's failure goes unrecorded rather than anyone being
/// refused: a per-address limit means nothing against that many addresses anyway.
const MAX_TRACKED: usize = 100_000;

/// How often a full table may be rescanned for refilled buckets.
const PRUNE_INTERVAL_MS: u64 = 1_000;

/// A token bucket per client address for the failures it causes: `per_minute` failures in a burst,
/// refilled evenly over a minute. Only [`RateLimiter::charge`] takes tokens; [`RateLimiter::check`]
/// only looks, so an address that never fails is never tracked and never refused. IPv6 addresses
/// count per /64, the block one host usually controls.
pub struct RateLimiter {
    per_minute: u32,
    table: Mutex<Table>,
    origin: Instant,
}

struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    pruned_ms: Option<u64>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` failures per minute and address.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                pruned_ms: None,
            }),
            origin: Instant::now(),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    fn per_ms(&self) -> f64 {
        self.capacity() / 60_000.0
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Whether `addr` may go on: `Ok(())` while it has a token left, else `Err(seconds)` until it
    /// has one again. Takes nothing.
    ///
    /// # Errors
    /// The number of seconds the client should wait (for `Retry-After`).
    pub fn check(&self, addr: IpAddr) -> Result<(), u64> {
        let now = self.now_ms();
        let Ok(table) = self.table.lock() else {
            return Err(60);
        };
        let Some(bucket) = table.buckets.get(&bucket_key(addr)) else {
            return Ok(());
        };
        let bucket = refill(*bucket, now, self.per_ms(), self.capacity());
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_ms() / 1000.0).ceil().max(1.0) as u64)
        }
    }

    /// Takes one token from `addr` for a failure it caused. Failures that were let through at the
    /// same time may drive the bucket below zero, down to one minute's worth: a burst of parallel
    /// failures waits longer instead of slipping past the limit.
    pub fn charge(&self, addr: IpAddr) {
        let key = bucket_key(addr);
        let now = self.now_ms();
        let (capacity, per_ms) = (self.capacity(), self.per_ms());
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        if !table.buckets.contains_key(&key) && table.buckets.len() >= MAX_TRACKED {
            let due = table
                .pruned_ms
                .is_none_or(|pruned| now.saturating_sub(pruned) >= PRUNE_INTERVAL_MS);
            if !due {
                return;
            }
            table.pruned_ms = Some(now);
            table
                .buckets
                .retain(|_, bucket| refill(*bucket, now, per_ms, capacity).tokens < capacity);
            if table.buckets.len() >= MAX_TRACKED {
                return;
            }
        }
        let bucket = table.buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated_ms: now,
        });
        *bucket = refill(*bucket, now, per_ms, capacity);
        bucket.tokens = (bucket.tokens - 1.0).max(-capacity);
    }

    /// The number of addresses tracked (those with a recent failure).
    pub fn tracked(&self) -> usize {
        self.table.lock().map(|table| table.buckets.len()).unwrap_or(0)
    }
}

fn refill(bucket: Bucket, now_ms: u64, per_ms: f64, capacity: f64) -> Bucket {
    let elapsed = now_ms.saturating_sub(bucket.updated_ms) as f64;
    Bucket {
        tokens: (bucket.tokens + elapsed * per_ms).min(capacity),
        updated_ms: now_ms,
    }
}

fn bucket_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests;

/// A token bucket shared by every caller: at most `per_minute` takes a minute, refilled evenly,
/// for work that clients can start but that costs the router or a service it calls (a key fetch
/// for an identity zone not seen yet, the security settings of a new subdomain).
pub struct Budget {
    per_minute: u32,
    bucket: Mutex<(f64, Instant)>,
}

impl Budget {
    /// A full bucket of `per_minute`.
    pub fn new(per_minute: u32) -> Budget {
        Budget {
            per_minute,
            bucket: Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }

    /// Takes one from the budget; false when it is spent.
    pub fn take(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, updated) = &mut *bucket;
        let capacity = f64::from(self.per_minute);
        *tokens = (*tokens + updated.elapsed().as_secs_f64() * capacity / 60.0).min(capacity);
        *updated = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
