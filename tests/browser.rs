//! A real browser logs in through the router: headless Chromium (Debian's package) navigates to a
//! protected URL with a fragment, runs the router's login page script, follows the development
//! XSUAA's redirect back to /login/callback, and ends on the original URL — fragment included —
//! showing the backend's echo of a request that carried the user's bearer token.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::chromium::{trust_spki_of, Chromium};
use support::idp::dev_xsuaa;
use support::{backend, gateway};

#[tokio::test]
async fn headless_chromium_logs_in_forwards_the_token_and_keeps_the_fragment() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = gateway(json!({
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
    .xsuaa(&dev, &dev.credentials())
    .start()
    .await;

    // Chromium trusts exactly the development XSUAA's server key, nothing else.
    let trust = trust_spki_of(&dev.url(), &dev.ca_pem()).await;
    let start = router.url("/api/page#section-2");

    // Starting the browser and the whole login are bounded together; a Chromium still running
    // when the test ends is killed (kill_on_drop).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut chromium = tokio::time::timeout_at(deadline, Chromium::launch(&[trust]))
        .await
        .expect("Chromium started within 60 s");
    let loaded = tokio::time::timeout_at(
        deadline,
        chromium.visit(&start, |page| page.content_type == "application/json"),
    )
    .await;
    let page = match loaded {
        Ok(page) => page,
        Err(_) => panic!(
            "no JSON page within 60 s; documents requested: {:#?}\nChromium's log:\n{}",
            chromium.documents,
            chromium.log()
        ),
    };
    let documents = chromium.documents.clone();
    chromium.close().await;

    // The browser went router -> XSUAA -> callback -> original URL, and ended there with the fragment.
    assert_eq!(documents.len(), 4, "{documents:#?}");
    assert_eq!(documents[0], start);
    assert!(
        documents[1].starts_with(&format!("{}/oauth/authorize?", dev.url())),
        "{documents:#?}"
    );
    assert!(
        documents[2].starts_with(&router.url("/login/callback?")),
        "{documents:#?}"
    );
    assert_eq!(documents[3], start);
    assert_eq!(page.href, start, "the fragment survived the login");

    // The page shows the backend's echo: the request carried the user's token.
    let echo: Value = serde_json::from_str(&page.text)
        .unwrap_or_else(|e| panic!("the page is the backend's JSON echo ({e}): {}", page.dom));
    assert_eq!(echo["path"], "/page");
    let bearer = echo["headers"]["authorization"].as_str().expect("authorization header");
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    assert!(
        token.starts_with("ey") && token.split('.').count() == 3,
        "a JWT: {bearer}"
    );
    assert!(
        page.dom.contains(&format!("\"authorization\":\"{bearer}\"")),
        "{}",
        page.dom
    );
    assert!(
        echo["headers"]["cookie"]
            .as_str()
            .is_none_or(|cookie| !cookie.contains("JSESSIONID")),
        "the router's session cookie is not forwarded: {echo}"
    );

    let seen = backend.seen();
    assert_eq!(seen.len(), 1, "only the logged-in request reached the backend");
    assert_eq!(seen[0].headers["authorization"], bearer);
    assert_eq!(dev.stats().authorize_requests, 1);
    let exchange = dev.last_token_request().expect("the code was exchanged");
    assert_eq!(
        exchange.form.get("grant_type").map(String::as_str),
        Some("authorization_code")
    );
}
