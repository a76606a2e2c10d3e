//! `EXTERNAL_REVERSE_PROXY=true`: the host a proxy in front names in `X-Custom-Host` is the
//! request's host for the tenant, the login redirect URI and `"*"` destinations; without the
//! variable the header is not believed. It never reaches a backend.

mod support;

use serde_json::{json, Value};
use support::idp::param;
use support::{backend, client, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

async fn router(dev: &DevXsuaa, backend: &Backend, external: bool) -> Gateway {
    let (destination, connectivity) = support::idp::service_credentials(dev);
    let registry = dev.saas_registry_credentials("https://dev.app.localhost");
    let vcap = dev.vcap_services_with_saas_registry(&dev.credentials(), &destination, &connectivity, &registry);
    let mut builder = gateway(app())
        .services(dev, &dev.credentials())
        .env("VCAP_SERVICES", vcap)
        .destination_entries(json!([{"name": "backend", "url": backend.url()}]))
        .env("TENANT_HOST_PATTERN", r"^(.*)\.app\.localhost$")
        .env("PRESERVE_FRAGMENT", "false");
    if external {
        builder = builder.env("EXTERNAL_REVERSE_PROXY", "true");
    }
    builder.start().await
}

#[tokio::test]
async fn the_tenant_and_the_redirect_uri_come_from_x_custom_host() {
    let backend = backend().await;
    let dev = DevXsuaa::builder()
        .tenant("acme", "zone-acme")
        .start()
        .await
        .expect("development XSUAA");
    let router = router(&dev, &backend, true).await;
    let custom_host = format!("acme.app.localhost:{}", router.addr.port());

    // The connection's Host names no tenant; the proxy's X-Custom-Host does.
    let response = client()
        .get(router.url("/api/x"))
        .header("x-custom-host", &custom_host)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().expect("location").to_string();
    assert!(location.contains("acme"), "the tenant's zone: {location}");
    assert_eq!(
        param(&location, "redirect_uri").as_deref(),
        Some(format!("http://{custom_host}/login/callback").as_str())
    );

    // A public route forwards, and the backend never sees the header; the host it is told is the
    // one the client asked the proxy for.
    let response = client()
        .get(router.url("/open/x"))
        .header("x-custom-host", &custom_host)
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let seen = backend.next_matching(|seen| seen.uri.ends_with("/x")).await;
    assert!(seen.headers.get("x-custom-host").is_none(), "{:?}", seen.headers);
    assert_eq!(seen.headers["x-forwarded-host"], custom_host.as_str());
}

#[tokio::test]
async fn without_the_variable_x_custom_host_is_not_believed() {
    let backend = backend().await;
    let dev = DevXsuaa::builder()
        .tenant("acme", "zone-acme")
        .start()
        .await
        .expect("development XSUAA");
    let router = router(&dev, &backend, false).await;
    let response = client()
        .get(router.url("/api/x"))
        .header("x-custom-host", format!("acme.app.localhost:{}", router.addr.port()))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("response");
    // 127.0.0.1 names no tenant.
    assert_eq!(response.status(), 404);
}

#[test]
fn external_reverse_proxy_must_be_a_boolean() {
    let (_dir, config) = gateway(json!({"routes": []}))
        .env("EXTERNAL_REVERSE_PROXY", "maybe")
        .config();
    let errors = config.expect_err("not a boolean").to_string();
    assert!(errors.contains("EXTERNAL_REVERSE_PROXY"), "{errors}");
}
