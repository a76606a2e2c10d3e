//! Session time through the real router, the development XSUAA and a backend, with tokio's clock
//! moved forward instead of sleeping: the idle timeout (`SESSION_TIMEOUT`) and the token refresh
//! (`JWT_REFRESH`).
//!
//! How time moves here:
//! - the session store measures idleness with tokio's clock, and the router's token clock is
//!   `Clock::tokio()` (Unix time at start plus tokio time since), so a jump of tokio's clock ages
//!   sessions and tokens at once;
//! - the development XSUAA mints `exp` from the real system clock, so after a jump the router sees
//!   the token as that much older: that is what makes a refresh due;
//! - not `start_paused`: while the clock is paused, tokio auto-advances to the next timer each
//!   time the runtime waits for I/O (the time driver advances on every park, even when loopback
//!   data is already there), so a login's TLS round trips would skip hours and expire the login
//!   state. The clock is paused only for the jump ([`jump`]: pause, advance, resume) and runs
//!   normally while requests are in flight; the tests still never sleep;
//! - after a jump, idle keep-alive connections may have been closed by the server's header-read
//!   timeout, so each request after a jump uses a fresh client with the session cookie.

mod support;

use std::time::Duration;

use approuter::app::Options;
use approuter::idp::Clock;
use serde_json::json;
use support::idp::Browser;
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

async fn router(dev: &DevXsuaa, backend: &Backend, env: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(json!({
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
    .xsuaa(dev, &dev.credentials())
    .options(Options {
        clock: Clock::tokio(),
        sweep_interval: Duration::from_secs(10),
    });
    for (name, value) in env {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

/// Logs a browser in and returns its session cookie (`JSESSIONID=…`).
async fn log_in(dev: &DevXsuaa, router: &Gateway) -> String {
    let browser = Browser::new(dev);
    let (response, visited) = browser.navigate(&router.url("/api/status/200")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let id = browser.cookie(&router.url("/"), "JSESSIONID").expect("session cookie");
    format!("JSESSIONID={id}")
}

/// An XHR with the session cookie on a new connection; returns the status.
async fn xhr(router: &Gateway, path: &str, cookie: &str) -> u16 {
    support::client()
        .get(router.url(path))
        .header("cookie", cookie)
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Moves tokio's clock forward by `by` (timers due meanwhile fire), then lets it run again.
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

fn bearer(seen: &support::Seen) -> String {
    seen.headers["authorization"].to_str().unwrap().to_string()
}

fn refreshes(dev: &DevXsuaa) -> u64 {
    dev.stats()
        .token_requests_by_grant
        .get("refresh_token")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn idle_sessions_end_after_session_timeout_and_use_slides_it() {
    let dev = DevXsuaa::builder().start().await.unwrap();
    let backend = backend().await;
    let router = router(&dev, &backend, &[("SESSION_TIMEOUT", "1")]).await;
    let cookie = log_in(&dev, &router).await;
    assert_eq!(backend.seen().len(), 1);

    jump(Duration::from_secs(50)).await;
    assert_eq!(xhr(&router, "/api/a", &cookie).await, 200, "50 s idle");
    jump(Duration::from_secs(50)).await;
    assert_eq!(xhr(&router, "/api/b", &cookie).await, 200, "use slid the timeout");
    assert_eq!(backend.seen().len(), 3);

    jump(Duration::from_secs(61)).await;
    assert_eq!(xhr(&router, "/api/c", &cookie).await, 401, "61 s idle");
    assert_eq!(backend.seen().len(), 3, "the backend was not reached");

    // A navigation with the dead cookie starts a new login.
    let navigation = support::client()
        .get(router.url("/api/d"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(navigation.status(), 200);
    let page = navigation.text().await.unwrap();
    assert!(page.contains(&format!("{}/oauth/authorize", dev.url())), "{page}");
    assert_eq!(backend.seen().len(), 3);
    assert_eq!(refreshes(&dev), 0);
}

#[tokio::test]
async fn tokens_are_refreshed_once_before_they_expire() {
    let dev = DevXsuaa::builder()
        .access_token_lifetime(Duration::from_secs(180))
        .start()
        .await
        .unwrap();
    let backend = backend().await;
    let router = router(&dev, &backend, &[("JWT_REFRESH", "1")]).await;
    let cookie = log_in(&dev, &router).await;
    let first = bearer(&backend.seen()[0]);

    // 30 s later: the token has 150 s left, more than the 60 s window: no refresh.
    jump(Duration::from_secs(30)).await;
    assert_eq!(xhr(&router, "/api/early", &cookie).await, 200);
    assert_eq!(bearer(backend.seen().last().unwrap()), first);
    assert_eq!(refreshes(&dev), 0);

    // 130 s after login the token is inside the window: two requests at once, one refresh.
    jump(Duration::from_secs(100)).await;
    let (a, b) = tokio::join!(xhr(&router, "/api/one", &cookie), xhr(&router, "/api/two", &cookie));
    assert_eq!((a, b), (200, 200));
    assert_eq!(refreshes(&dev), 1, "exactly one refresh for concurrent requests");
    let record = dev.last_token_request().unwrap();
    assert_eq!(record.form.get("grant_type").map(String::as_str), Some("refresh_token"));
    assert_eq!(record.listener, "certurl");

    let seen = backend.seen();
    assert_eq!(seen.len(), 4);
    let refreshed = bearer(&seen[2]);
    assert_ne!(refreshed, first, "the backend got the new token");
    assert_eq!(
        bearer(&seen[3]),
        refreshed,
        "the waiting request used the refreshed session"
    );

    // And the new token is used from now on, without another refresh.
    jump(Duration::from_secs(10)).await;
    assert_eq!(xhr(&router, "/api/later", &cookie).await, 200);
    assert_eq!(bearer(backend.seen().last().unwrap()), refreshed);
    assert_eq!(refreshes(&dev), 1);
}

#[tokio::test]
async fn with_refresh_off_the_session_ends_with_its_token() {
    let dev = DevXsuaa::builder()
        .access_token_lifetime(Duration::from_secs(180))
        .start()
        .await
        .unwrap();
    let backend = backend().await;
    let router = router(&dev, &backend, &[("JWT_REFRESH", "0")]).await;
    let cookie = log_in(&dev, &router).await;

    // Sessions end 30 s before their token expires; until then the token is used as is.
    jump(Duration::from_secs(140)).await;
    assert_eq!(xhr(&router, "/api/still", &cookie).await, 200);
    jump(Duration::from_secs(20)).await;
    assert_eq!(xhr(&router, "/api/gone", &cookie).await, 401);
    assert_eq!(refreshes(&dev), 0, "JWT_REFRESH=0 turns refreshing off");
    assert_eq!(backend.seen().len(), 2);
}
