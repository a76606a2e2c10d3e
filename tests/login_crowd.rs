//! Many people behind one address logging in, and floods against the login endpoints, on real
//! sockets with the development XSUAA: `LOGIN_RATE_LIMIT` counts only failed callbacks, a forged or
//! replayed callback never reaches the token endpoint, and abandoned logins stay bounded in memory.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use support::idp::{dev_xsuaa, login_page_target, Browser};
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

fn app() -> serde_json::Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}
        ]
    })
}

async fn router(dev: &DevXsuaa, backend: &Backend, extra: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url()}]))
        .xsuaa(dev, &dev.credentials());
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

fn token_requests(dev: &DevXsuaa) -> u64 {
    dev.stats().token_requests_by_grant.values().sum()
}

/// 256 random bits as base64url: the shape of a real state.
fn random_state() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One complete login of a new browser: the router's login page, the authorize redirect, the
/// callback, and the page it was going to. Returns the final status.
async fn log_in(dev: &DevXsuaa, router: &Gateway, path: &str) -> u16 {
    let browser = Browser::new(dev);
    let (response, visited) = browser.navigate(&router.url(path)).await;
    let status = response.status().as_u16();
    assert!(status != 200 || visited.len() == 4, "{visited:?}");
    status
}

/// Moves tokio's clock forward at once, without sleeping (see `tests/login_hostile.rs`: paused
/// only for the jump, so TLS round trips in flight do not skip time).
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// Starts a login at `url` with `headers` and follows it to the identity provider; returns the
/// callback URL the provider sends the browser back to (not yet visited).
async fn start_login(browser: &Browser, url: &str, headers: &[(&str, &str)]) -> String {
    let mut request = browser.client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let page = request.send().await.expect("login page");
    let authorize = browser
        .client
        .get(login_page_target(&page.text().await.expect("page")))
        .send()
        .await
        .expect("authorize");
    authorize.headers()["location"].to_str().expect("location").to_string()
}

#[tokio::test]
async fn eighty_logins_from_one_address_within_a_minute_all_pass_by_default() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let statuses: Vec<u16> = stream::iter(0..80)
        .map(|user| {
            let (dev, router) = (&dev, &router);
            async move { log_in(dev, router, &format!("/api/user/{user}")).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let refused = statuses.iter().filter(|status| **status != 200).count();
    assert_eq!(refused, 0, "{statuses:?}");
    assert_eq!(token_requests(&dev), 80, "one code exchange per login");
    assert_eq!(backend.seen().len(), 80);
}

#[tokio::test]
async fn only_failed_callbacks_count_against_an_address() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(
        &dev,
        &backend,
        &[("LOGIN_RATE_LIMIT", "3"), ("CLIENT_IP_FORWARDED_HOPS", "1")],
    )
    .await;
    let http = support::client();
    // Logins and abandoned starts, far more than the limit, cost nothing.
    for user in 0..10 {
        assert_eq!(
            log_in(&dev, &router, &format!("/api/{user}")).await,
            200,
            "login {user}"
        );
    }
    for _ in 0..10 {
        let start = http.get(router.url("/api/abandoned")).send().await.expect("start");
        assert_eq!(start.status(), 200);
    }

    // A real login in progress behind the same address as the forger (one trusted proxy: the
    // last X-Forwarded-For entry names the client).
    let victim = Browser::new(&dev);
    let forwarded = [("x-forwarded-for", "203.0.113.5")];
    let callback = start_login(&victim, &router.url("/api/victim"), &forwarded).await;

    let forged = |state: &str| router.url(&format!("/login/callback?code=forged&state={state}"));
    for attempt in 0..3 {
        let answer = http
            .get(forged(&random_state()))
            .header(forwarded[0].0, forwarded[0].1)
            .send()
            .await
            .expect("forged callback");
        assert_eq!(answer.status(), 401, "forged callback {attempt}");
    }
    let refused = http
        .get(forged(&random_state()))
        .header(forwarded[0].0, forwarded[0].1)
        .send()
        .await
        .expect("forged callback");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");

    // The address is turned away for starts and callbacks alike, before anything is taken or stored.
    let held = victim
        .client
        .get(&callback)
        .header(forwarded[0].0, forwarded[0].1)
        .send()
        .await
        .expect("callback");
    assert_eq!(held.status(), 429);
    let start = http
        .get(router.url("/api/x"))
        .header(forwarded[0].0, forwarded[0].1)
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), 429);
    // Another address is not affected.
    let other = http
        .get(forged(&random_state()))
        .header("x-forwarded-for", "203.0.113.6")
        .send()
        .await
        .expect("other address");
    assert_eq!(other.status(), 401);
    assert_eq!(token_requests(&dev), 10, "only the ten logins exchanged a code");

    // After the wait, the login that was held completes: its state was not consumed by the 429.
    jump(Duration::from_secs(retry + 1)).await;
    let completed = victim
        .client
        .get(&callback)
        .header(forwarded[0].0, forwarded[0].1)
        .send()
        .await
        .expect("callback");
    assert_eq!(completed.status(), 302);
    assert_eq!(completed.headers()["location"], "/api/victim");
    assert_eq!(token_requests(&dev), 11);
}

/// A forged code with a real state (the attacker's own login) costs exactly one token request, and
/// the refusal counts against the address like any other failure.
#[tokio::test]
async fn a_refused_code_costs_one_token_request_and_counts_as_a_failure() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[("LOGIN_RATE_LIMIT", "1")]).await;
    let browser = Browser::new(&dev);
    let callback = start_login(&browser, &router.url("/api/x"), &[]).await;
    let mut forged = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "code" { "forged".into() } else { value };
            (key.into_owned(), value.into_owned())
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);

    let answer = browser.client.get(forged).send().await.expect("callback");
    assert_eq!(answer.status(), 502);
    assert_eq!(token_requests(&dev), 1);
    assert_eq!(dev.stats().token_requests_refused, 1);
    let again = browser.client.get(router.url("/api/x")).send().await.expect("start");
    assert_eq!(
        again.status(),
        429,
        "the refused code used up the address's one failure"
    );
    assert_eq!(token_requests(&dev), 1);
}

/// Resident memory of this process (router, development XSUAA and clients), in KiB.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 10 000 abandoned login starts and 10 000 forged callbacks from one address: no token request,
/// every start answered, every forged callback refused (400/401, or 429 once the address is over
/// the limit), the attempts held bounded by the store, and a real user logging in afterwards (at
/// once without a limit, after the wait with one). Prints the figures (`--nocapture`).
#[tokio::test]
async fn floods_of_abandoned_starts_and_forged_callbacks_stay_harmless() {
    const FLOOD: usize = 10_000;
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    for limit in ["off", "60"] {
        let router = router(&dev, &backend, &[("LOGIN_RATE_LIMIT", limit)]).await;
        let auth = router.state.auth.clone().expect("login configured");
        let http = support::client();
        let exchanges = token_requests(&dev);
        // Warm the connection pool and the allocator before the first figure.
        let _ = http.get(router.url("/unrouted")).send().await;
        let rss_start = resident_kib();

        let starts: Vec<u16> = stream::iter(0..FLOOD)
            .map(|index| {
                let http = &http;
                let url = router.url(&format!("/api/abandoned/{index}"));
                async move { http.get(url).send().await.expect("start").status().as_u16() }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let rss_starts = resident_kib();
        assert!(
            starts.iter().all(|status| *status == 200),
            "LOGIN_RATE_LIMIT={limit}: starts are never refused"
        );
        let held = auth.store.attempt_count().expect("memory store");
        assert_eq!(held, FLOOD, "every start is held (below the cap)");

        let forged: Vec<u16> = stream::iter(0..FLOOD)
            .map(|index| {
                let http = &http;
                // Unknown states, replays of one state, refusals by the "IdP", no state at all.
                let url = match index % 4 {
                    0 => router.url(&format!("/login/callback?code=forged&state={}", random_state())),
                    1 => router.url("/login/callback?code=forged&state=replayed"),
                    2 => router.url(&format!("/login/callback?error=access_denied&state={}", random_state())),
                    _ => router.url("/login/callback?code=forged"),
                };
                async move { http.get(url).send().await.expect("forged callback").status().as_u16() }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let rss_forged = resident_kib();
        assert_eq!(
            token_requests(&dev),
            exchanges,
            "LOGIN_RATE_LIMIT={limit}: no forged callback reached the token endpoint"
        );
        assert!(
            forged.iter().all(|status| [400, 401, 429].contains(status)),
            "LOGIN_RATE_LIMIT={limit}"
        );
        assert_eq!(
            auth.store.attempt_count(),
            Some(FLOOD),
            "a forged callback takes and stores nothing"
        );
        let refused = forged.iter().filter(|status| **status == 429).count();
        if limit == "off" {
            assert_eq!(refused, 0);
        } else {
            assert!(refused >= FLOOD - 200, "LOGIN_RATE_LIMIT={limit}: {refused} refused");
            // The flooding address waits out its failures (at most a minute's worth) ...
            assert_eq!(log_in(&dev, &router, "/api/real").await, 429);
            jump(Duration::from_secs(62)).await;
        }
        // ... and then a real user behind it logs in.
        assert_eq!(
            log_in(&dev, &router, "/api/real").await,
            200,
            "LOGIN_RATE_LIMIT={limit}"
        );
        assert_eq!(token_requests(&dev), exchanges + 1);
        eprintln!(
            "LOGIN_RATE_LIMIT={limit}: VmRSS {rss_start} KiB; after {FLOOD} abandoned starts {rss_starts} KiB \
             ({held} attempts held, +{} B per attempt); after {FLOOD} forged callbacks {rss_forged} KiB \
             ({refused} refused with 429); token requests for them: 0",
            rss_starts.saturating_sub(rss_start) * 1024 / FLOOD as u64,
        );
    }
}
