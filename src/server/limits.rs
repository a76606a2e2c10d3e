//! Protection against floods: the client address behind trusted proxies, and the per-address
//! token bucket for failed logins.

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
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_empty_the_bucket_which_refills_over_the_minute() {
        let limiter = RateLimiter::new(30);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..30 {
            assert_eq!(limiter.check(client), Ok(()));
            limiter.charge(client);
        }
        assert_eq!(limiter.check(client), Err(2), "one token every two seconds");
        assert_eq!(limiter.check(client), Err(2), "a refused check takes nothing");
        assert_eq!(limiter.check(other), Ok(()), "buckets are per address");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(limiter.check(client), Ok(()));
        limiter.charge(client);
        assert!(limiter.check(client).is_err());
    }

    #[test]
    fn checks_alone_never_refuse_nor_track() {
        let limiter = RateLimiter::new(1);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1_000 {
            assert_eq!(limiter.check(client), Ok(()));
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_failures_beyond_the_limit_are_paid_back() {
        let limiter = RateLimiter::new(60);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        // Let through together, failed together: 90 failures against a limit of 60.
        for _ in 0..90 {
            limiter.charge(client);
        }
        assert_eq!(limiter.check(client), Err(31), "30 failures over, one token a second");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(limiter.check(client), Ok(()));
        for _ in 0..1_000 {
            limiter.charge(client);
        }
        assert_eq!(limiter.check(client), Err(61), "the debt is at most a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_never_refuses_a_new_address() {
        let limiter = RateLimiter::new(1);
        for index in 0..MAX_TRACKED as u32 {
            limiter.charge(IpAddr::V4((0x0a00_0000 + index).into()));
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED);
        let newcomer: IpAddr = "192.0.2.1".parse().unwrap();
        limiter.charge(newcomer);
        assert_eq!(limiter.check(newcomer), Ok(()), "unrecorded, not refused");
        assert_eq!(limiter.tracked(), MAX_TRACKED);
        // Once the buckets have refilled, the next rescan forgets them.
        tokio::time::advance(Duration::from_secs(60)).await;
        limiter.charge(newcomer);
        assert_eq!(limiter.tracked(), 1);
        assert!(limiter.check(newcomer).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64_block() {
        let limiter = RateLimiter::new(1);
        limiter.charge("2001:db8:1:2::1".parse().unwrap());
        assert!(limiter.check("2001:db8:1:2::ffff".parse().unwrap()).is_err());
        assert_eq!(limiter.check("2001:db8:1:3::1".parse().unwrap()), Ok(()));
    }

    #[test]
    fn client_address_uses_only_entries_of_trusted_proxies() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.7"));
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.2:4711"));
        let table: &[(usize, &str)] = &[
            (0, "10.0.0.1"),
            (1, "198.51.100.2"),
            (2, "203.0.113.7"),
            (3, "6.6.6.6"),
            (4, "10.0.0.1"),
        ];
        for (hops, expected) in table {
            assert_eq!(client_addr(peer, &headers, *hops).to_string(), *expected, "hops {hops}");
        }
        assert_eq!(client_addr(peer, &HeaderMap::new(), 1), peer);
    }
}
