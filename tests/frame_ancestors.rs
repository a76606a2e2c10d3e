//! `ENABLE_FRAME_ANCESTORS_CSP_HEADERS`: the trusted domains of the subaccount, read at the
//! development XSUAA's security settings, reach responses as a frame-ancestors CSP; a change is
//! seen after the cache time, and an unavailable endpoint leaves `X-Frame-Options` alone in charge.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{backend, client, gateway, Backend, Gateway};
use tokio::sync::watch;
use xsuaa_dev::DevXsuaa;

const PATIENCE: Duration = Duration::from_secs(10);

fn app() -> serde_json::Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    })
}

async fn router(dev: &DevXsuaa, backend: &Backend, cache_seconds: u64) -> Gateway {
    gateway(app())
        .xsuaa(dev, &dev.credentials())
        .destinations(&[("backend", &backend.url())])
        .env("ENABLE_FRAME_ANCESTORS_CSP_HEADERS", "true")
        .env("FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME", cache_seconds.to_string())
        .start()
        .await
}

fn fetches(router: &Gateway) -> watch::Receiver<u64> {
    router
        .state
        .frame_ancestors
        .as_ref()
        .expect("frame-ancestors CSP enabled")
        .subscribe()
}

/// Waits until at least `count` fetches of the security settings have ended.
async fn fetched(fetches: &mut watch::Receiver<u64>, count: u64) {
    tokio::time::timeout(PATIENCE, fetches.wait_for(|done| *done >= count))
        .await
        .expect("a fetch within the patience")
        .expect("router alive");
}

async fn headers(router: &Gateway) -> reqwest::header::HeaderMap {
    let response = client().get(router.url("/page")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    response.headers().clone()
}

fn csp(headers: &reqwest::header::HeaderMap) -> Option<&str> {
    headers
        .get("content-security-policy")
        .map(|value| value.to_str().expect("ASCII"))
}

#[tokio::test]
async fn the_trusted_domains_become_the_csp_and_a_change_is_seen_after_the_cache_time() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    dev.set_iframe_domains(&dev.subdomain(), Some("https://a.example https://*.b.example"));
    let backend = backend().await;
    let router = router(&dev, &backend, 1).await;
    let mut fetches = fetches(&router);
    // The binding's own subdomain is fetched at start, outside any request.
    fetched(&mut fetches, 1).await;
    let first = headers(&router).await;
    assert_eq!(
        csp(&first),
        Some("frame-ancestors https://a.example https://*.b.example;")
    );
    assert_eq!(first.get("x-frame-options").expect("X-Frame-Options"), "SAMEORIGIN");
    assert_eq!(
        dev.security_settings_requests(),
        1,
        "requests within the cache time use the cache"
    );
    // A backend's own policy is kept.
    let own = client().get(router.url("/csp")).send().await.expect("response");
    assert_eq!(csp(own.headers()), Some("default-src 'self'"));

    dev.set_iframe_domains(&dev.subdomain(), Some("https://c.example"));
    // The cache time has to pass; nothing is waited for but the clock.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The first request after it is answered at once with what is known and starts the fetch.
    assert_eq!(
        csp(&headers(&router).await),
        Some("frame-ancestors https://a.example https://*.b.example;")
    );
    fetched(&mut fetches, 2).await;
    assert_eq!(csp(&headers(&router).await), Some("frame-ancestors https://c.example;"));
    assert_eq!(dev.security_settings_requests(), 2);
}

#[tokio::test]
async fn an_unavailable_endpoint_leaves_x_frame_options_alone() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    dev.set_iframe_domains(&dev.subdomain(), Some("https://a.example"));
    dev.set_security_settings_failure(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let backend = backend().await;
    let router = router(&dev, &backend, 1).await;
    let mut fetches = fetches(&router);
    fetched(&mut fetches, 1).await;
    let failed = headers(&router).await;
    assert_eq!(csp(&failed), None, "no policy from a failed fetch");
    assert_eq!(failed.get("x-frame-options").expect("X-Frame-Options"), "SAMEORIGIN");

    // Once the endpoint answers again, the next fetch after the cache time brings the domains.
    dev.set_security_settings_failure(None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(csp(&headers(&router).await), None);
    fetched(&mut fetches, 2).await;
    assert_eq!(csp(&headers(&router).await), Some("frame-ancestors https://a.example;"));
}

#[tokio::test]
async fn a_subaccount_without_trusted_domains_gets_no_csp() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let backend = backend().await;
    let router = router(&dev, &backend, 300).await;
    let mut fetches = fetches(&router);
    fetched(&mut fetches, 1).await;
    assert_eq!(csp(&headers(&router).await), None);
    assert_eq!(dev.security_settings_requests(), 1);
}

#[tokio::test]
async fn a_binding_without_apiurl_stops_start_up_naming_both() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let mut credentials = dev.credentials();
    credentials.as_object_mut().expect("object").remove("apiurl");
    let (_dir, config) = gateway(app())
        .xsuaa(&dev, &credentials)
        .destinations(&[("backend", "http://127.0.0.1:1")])
        .env("ENABLE_FRAME_ANCESTORS_CSP_HEADERS", "true")
        .config();
    let errors = config.expect_err("no apiurl").to_string();
    assert!(errors.contains("ENABLE_FRAME_ANCESTORS_CSP_HEADERS"), "{errors}");
    assert!(errors.contains("apiurl"), "{errors}");

    // Without the variable the binding is fine.
    let (_dir, config) = gateway(app())
        .xsuaa(&dev, &credentials)
        .destinations(&[("backend", "http://127.0.0.1:1")])
        .config();
    assert!(config.is_ok(), "{:?}", config.err());
}

#[tokio::test]
async fn each_tenant_gets_the_domains_of_its_own_subaccount() {
    let dev = DevXsuaa::builder()
        .tenant("acme", "zone-acme")
        .tenant("beta", "zone-beta")
        .start()
        .await
        .expect("development XSUAA with two tenants");
    dev.set_iframe_domains("acme", Some("https://portal.acme.example"));
    dev.set_iframe_domains(&dev.subdomain(), Some("https://provider.example"));
    let backend = backend().await;
    let router = gateway(app())
        .xsuaa(&dev, &dev.credentials())
        .destinations(&[("backend", &backend.url())])
        .env("TENANT_HOST_PATTERN", r"^(.*)\.app\.localhost$")
        .env("ENABLE_FRAME_ANCESTORS_CSP_HEADERS", "true")
        .start()
        .await;
    let mut fetches = fetches(&router);
    fetched(&mut fetches, 1).await;
    let client = reqwest::Client::builder()
        .resolve("acme.app.localhost", router.addr)
        .resolve("beta.app.localhost", router.addr)
        .build()
        .expect("client");
    let get = |tenant: &'static str| {
        let client = client.clone();
        let url = format!("http://{tenant}.app.localhost:{}/page", router.addr.port());
        async move {
            let response = client.get(url).send().await.expect("response");
            assert_eq!(response.status(), 200);
            response.headers().clone()
        }
    };
    // A tenant's first request starts the fetch of its subaccount and is answered without waiting.
    assert_eq!(csp(&get("acme").await), None);
    assert_eq!(csp(&get("beta").await), None);
    fetched(&mut fetches, 3).await;
    assert_eq!(
        csp(&get("acme").await),
        Some("frame-ancestors https://portal.acme.example;")
    );
    assert_eq!(csp(&get("beta").await), None, "beta trusts no domain");
}

/// A configured policy (`httpHeaders`) and the frame-ancestors one are both enforced; a backend's
/// own policy wins over both unless `MERGE_CSP_HEADERS`, which keeps all of them.
#[tokio::test]
async fn the_policy_is_enforced_beside_a_configured_one_and_merged_with_a_backends_on_request() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    dev.set_iframe_domains(&dev.subdomain(), Some("https://a.example"));
    let backend = backend().await;
    let start = |merge: &'static str| {
        gateway(app())
            .xsuaa(&dev, &dev.credentials())
            .destinations(&[("backend", &backend.url())])
            .env("ENABLE_FRAME_ANCESTORS_CSP_HEADERS", "true")
            .env("httpHeaders", r#"[{"Content-Security-Policy": "img-src 'self'"}]"#)
            .env("MERGE_CSP_HEADERS", merge)
            .start()
    };
    let router = start("false").await;
    let mut done = fetches(&router);
    fetched(&mut done, 1).await;
    assert_eq!(
        csp(&headers(&router).await),
        Some("img-src 'self', frame-ancestors https://a.example;")
    );
    let own = client().get(router.url("/csp")).send().await.expect("response");
    assert_eq!(csp(own.headers()), Some("default-src 'self'"));

    let merging = start("true").await;
    let mut done = fetches(&merging);
    fetched(&mut done, 1).await;
    let own = client().get(merging.url("/csp")).send().await.expect("response");
    assert_eq!(
        csp(own.headers()),
        Some("default-src 'self', img-src 'self', frame-ancestors https://a.example;")
    );
}

/// Any client can name tenant hosts: new subdomains cost a fetch each, so only so many a minute
/// are fetched, and the others are answered without the header (`X-Frame-Options` applies).
#[tokio::test]
async fn made_up_tenant_hosts_cause_a_bounded_number_of_fetches() {
    let dev = DevXsuaa::builder()
        .tenant("acme", "zone-acme")
        .start()
        .await
        .expect("development XSUAA with a tenant");
    let backend = backend().await;
    let router = gateway(app())
        .xsuaa(&dev, &dev.credentials())
        .destinations(&[("backend", &backend.url())])
        .env("TENANT_HOST_PATTERN", r"^(.*)\.app\.localhost$")
        .env("ENABLE_FRAME_ANCESTORS_CSP_HEADERS", "true")
        .start()
        .await;
    let mut fetches = fetches(&router);
    fetched(&mut fetches, 1).await;
    let started = tokio::time::Instant::now();
    for n in 0..100 {
        let response = client()
            .get(router.url("/page"))
            .header("host", format!("made-up-{n}.app.localhost:{}", router.addr.port()))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(csp(response.headers()), None);
        assert_eq!(response.headers()["x-frame-options"], "SAMEORIGIN");
    }
    // 60 a minute, the binding's own subdomain included; one more each second that passed.
    fetched(&mut fetches, 60).await;
    let refills = started.elapsed().as_secs();
    let requests = dev.security_settings_requests();
    assert!((60..=60 + refills).contains(&requests), "{requests} fetches");
}
