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

#[tokio::test(start_paused = true)]
async fn a_budget_allows_its_rate_per_minute() {
    let budget = Budget::new(20);
    for _ in 0..20 {
        assert!(budget.take());
    }
    assert!(!budget.take());
    tokio::time::advance(std::time::Duration::from_secs(3)).await;
    assert!(budget.take());
    assert!(!budget.take());
}
