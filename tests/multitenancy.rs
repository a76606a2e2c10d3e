//! Multitenancy end to end: two tenants of a development XSUAA with a zone each (hosts under
//! `localhost`, which are loopback without DNS), logging in through their own hosts, with
//! sessions, tokens and destinations kept apart; in memory and in Redis.

mod support;

use serde_json::{json, Value};
use support::idp::Browser;
use support::redis::RedisServer;
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

const PATTERN: &str = r"^(.*)\.app\.localhost$";

fn app() -> Value {
    json!({
        "logout": {"logoutEndpoint": "/do/logout"},
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/erp/(.*)$", "target": "/$1", "destination": "erp"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

async fn router(dev: &DevXsuaa, backend: &Backend, redis: Option<&RedisServer>) -> Gateway {
    let (destination, connectivity) = support::idp::service_credentials(dev);
    let registry = dev.saas_registry_credentials("https://dev.app.localhost");
    let vcap = dev.vcap_services_with_saas_registry(&dev.credentials(), &destination, &connectivity, &registry);
    let mut builder = gateway(app())
        .services(dev, &dev.credentials())
        .env("VCAP_SERVICES", vcap)
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .env("TENANT_HOST_PATTERN", PATTERN);
    if let Some(redis) = redis {
        builder = builder
            .env("REDIS_URL", redis.url())
            .env("SESSION_SECRET", "multitenancy-test-secret-0123456789abcdef");
    }
    builder.start().await
}

fn url(router: &Gateway, tenant: &str, path: &str) -> String {
    format!("http://{tenant}.app.localhost:{}{path}", router.addr.port())
}

async fn two_tenants_stay_apart(redis: Option<&RedisServer>) {
    let backend = backend().await;
    let dev = support::idp::two_tenants(&backend).await;
    let router = router(&dev, &backend, redis).await;
    let browser = Browser::resolving(
        &dev,
        &[
            "acme.app.localhost",
            "beta.app.localhost",
            "dev.app.localhost",
            "other.localhost",
        ],
    );

    // Each tenant logs in through its own host, at its own XSUAA zone.
    for (tenant, zone) in [("acme", "zone-acme"), ("beta", "zone-beta")] {
        let (response, visited) = browser.navigate(&url(&router, tenant, "/api/whoami")).await;
        assert_eq!(response.status(), 200, "{tenant}: {visited:?}");
        assert!(
            visited[1].starts_with(&format!("{}/oauth/authorize?", dev.tenant_url(tenant))),
            "{tenant} authorizes at its own zone: {visited:?}"
        );
        let record = dev.last_token_request().expect("the code exchange");
        assert_eq!(record.listener, "certurl", "{tenant}");
        assert!(record.client_cert_fingerprint.is_some(), "{tenant}: over mutual TLS");
        assert_eq!(
            Some(record.host.as_str()),
            dev.tenant_cert_url(tenant).strip_prefix("https://"),
            "{tenant}: at the tenant's certificate host"
        );
        let seen = backend.seen().pop().expect("the backend was reached");
        let token = support::bearer_claims(seen.headers["authorization"].to_str().expect("text"));
        assert_eq!(token["zid"], zone, "{tenant}");
        assert_eq!(token["ext_attr"]["zdn"], tenant);
        assert_eq!(seen.headers["tenantid"], zone, "{tenant}");
    }

    // Tenant A's cookie on tenant B's host is no session there: an API call gets 401.
    let acme_cookie = browser
        .cookie(&url(&router, "acme", "/"), "JSESSIONID")
        .expect("acme's session cookie");
    let response = browser
        .client
        .get(url(&router, "beta", "/api/whoami"))
        .header("cookie", format!("JSESSIONID={acme_cookie}"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401, "another tenant's session is not used");
    // ...and it still works on its own host.
    let response = browser
        .client
        .get(url(&router, "acme", "/api/again"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    // A host the pattern does not match gets no login and no route.
    let response = browser
        .client
        .get(format!("http://other.localhost:{}/api/x", router.addr.port()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let response = browser
        .client
        .get(format!("http://other.localhost:{}/open/x", router.addr.port()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404, "public routes too");

    // Tenant-level destinations: acme's `erp` exists in acme's zone only.
    let response = browser
        .client
        .get(url(&router, "acme", "/erp/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let seen = backend.seen().pop().expect("reached through acme's destination");
    assert_eq!(seen.uri, "/orders");
    assert_eq!(seen.headers["x-tenant-destination"], "acme");
    let response = browser
        .client
        .get(url(&router, "beta", "/erp/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502, "beta has no such destination");

    // Logout ends acme's session at acme's XSUAA; beta's session goes on.
    let response = browser
        .client
        .get(url(&router, "acme", "/do/logout"))
        .send()
        .await
        .expect("request");
    let location = response.headers()["location"].to_str().expect("text").to_string();
    assert!(
        location.starts_with(&format!("{}/logout.do", dev.tenant_url("acme"))),
        "{location}"
    );
    let api = |tenant: &'static str| {
        browser
            .client
            .get(url(&router, tenant, "/api/after-logout"))
            .header("x-requested-with", "XMLHttpRequest")
            .send()
    };
    assert_eq!(api("acme").await.expect("request").status(), 401);
    assert_eq!(api("beta").await.expect("request").status(), 200);

    // beta unsubscribes: its sessions end (in every instance sharing the store), acme's stay.
    let (response, _) = browser.navigate(&url(&router, "acme", "/api/again")).await;
    assert_eq!(response.status(), 200, "acme logged in again");
    let unsubscribe = browser
        .client
        .delete(url(&router, "dev", "/callback/v1.0/tenants/zone-beta"))
        .bearer_auth(dev.callback_token().expect("callback token"))
        .header("content-type", "application/json")
        .body(json!({"subscribedSubdomain": "beta", "subscribedTenantId": "zone-beta"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(unsubscribe.status(), 200);
    assert_eq!(
        api("beta").await.expect("request").status(),
        401,
        "beta's session ended"
    );
    assert_eq!(api("acme").await.expect("request").status(), 200);
    // A new login of beta (subscribed again) makes a session that lives.
    let (response, _) = browser.navigate(&url(&router, "beta", "/api/back")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(api("beta").await.expect("request").status(), 200);
}

#[tokio::test]
async fn two_tenants_log_in_through_their_hosts_and_stay_apart() {
    two_tenants_stay_apart(None).await;
}

#[tokio::test]
async fn two_tenants_stay_apart_with_sessions_in_redis() {
    let redis = RedisServer::start().await;
    two_tenants_stay_apart(Some(&redis)).await;
}

#[tokio::test]
async fn a_token_of_another_zone_presented_on_a_tenant_host_is_refused() {
    // beta's token on acme's host: a bearer token is never a session, whoever signed it.
    let backend = backend().await;
    let dev = support::idp::two_tenants(&backend).await;
    let router = router(&dev, &backend, None).await;
    let token = dev
        .mint_token_in(
            "beta",
            dev.user_token_claims_in("beta", &xsuaa_dev::User::new("mallory"))
                .expect("claims"),
        )
        .expect("token");
    // Presented as a bearer token to a protected route, a token is never a session.
    let browser = Browser::resolving(&dev, &["acme.app.localhost"]);
    let response = browser
        .client
        .get(url(&router, "acme", "/api/x"))
        .bearer_auth(&token)
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert!(backend.seen().is_empty());
}
