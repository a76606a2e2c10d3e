//! Protection against floods: the request body limit (declared and streamed), the client address
//! behind trusted proxies, and the per-address token bucket for the login endpoints.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use http::header::{self, HeaderMap};
use tokio::time::Instant;

use crate::body::{self, Body, BoxError};
use crate::error::GatewayError;

/// The request body with `MAX_REQUEST_BODY` applied: a declared `Content-Length` above the limit
/// is refused at once; a streamed body fails when it passes the limit (see [`is_body_too_large`]).
///
/// # Errors
/// [`GatewayError::PayloadTooLarge`] for a declared length above `max`.
pub fn request_body<B>(incoming: B, headers: &HeaderMap, max: Option<u64>) -> Result<Body, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(max) = max else {
        return Ok(body::boxed(incoming));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    Ok(body::boxed(http_body_util::Limited::new(incoming, max)))
}

/// True when `error`'s causes include the body limit tripping: the forward failed because the
/// client sent too much, not because the destination did something wrong.
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(cause) = current {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = cause.source();
    }
    false
}

/// A forward that failed because the request body passed the limit is the client's fault: 413,
/// not a destination failure.
pub fn reclassify(error: GatewayError) -> GatewayError {
    if is_body_too_large(&error) {
        GatewayError::PayloadTooLarge
    } else {
        error
    }
}

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

/// At most this many addresses are tracked; beyond it, addresses whose bucket has refilled are
/// forgotten, and if none has, new addresses are refused (the flood is what the limit is for).
const MAX_TRACKED: usize = 100_000;

/// A token bucket per client address: `per_minute` requests in a burst, refilled evenly over a
/// minute. IPv6 addresses count per /64, the block one host usually controls.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    origin: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per minute and address.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
            origin: Instant::now(),
        }
    }

    /// Takes one token for `addr`: `Ok(())`, or `Err(seconds)` until the next token.
    ///
    /// # Errors
    /// The number of seconds the client should wait (for `Retry-After`).
    pub fn check(&self, addr: IpAddr) -> Result<(), u64> {
        let key = bucket_key(addr);
        let now = self.origin.elapsed().as_millis() as u64;
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err(60);
        };
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, bucket| refill(*bucket, now, per_ms, capacity).tokens < capacity);
            if buckets.len() >= MAX_TRACKED {
                return Err(60);
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated_ms: now,
        });
        *bucket = refill(*bucket, now, per_ms, capacity);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_ms / 1000.0).ceil().max(1.0) as u64)
        }
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
    async fn bucket_allows_a_burst_then_refills_over_the_minute() {
        let limiter = RateLimiter::new(30);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..30 {
            assert_eq!(limiter.check(client), Ok(()));
        }
        assert_eq!(limiter.check(client), Err(2), "one token every two seconds");
        assert_eq!(limiter.check(other), Ok(()), "buckets are per address");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(limiter.check(client), Ok(()));
        assert!(limiter.check(client).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64_block() {
        let limiter = RateLimiter::new(1);
        assert_eq!(limiter.check("2001:db8:1:2::1".parse().unwrap()), Ok(()));
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
