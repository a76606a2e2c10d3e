//! On-premise destinations through the development connectivity proxy: the router sends requests
//! in absolute form with the connectivity token, the Cloud Connector location and, for principal
//! propagation, the user; the proxy refuses anything else. And the Destination service failing:
//! down, slow, or answering errors.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::idp::Browser;
use support::{backend, client, gateway, Backend, Gateway};
use xsuaa_dev::{DevXsuaa, ServiceKind};

const VIRTUAL_HOST: &str = "erp.internal:44300";

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/onprem/(.*)$", "target": "/$1", "destination": "on-premise", "authenticationType": "none"},
            {"source": "^/technical/(.*)$", "target": "/$1", "destination": "technical-user", "authenticationType": "none"},
            {"source": "^/env-onprem/(.*)$", "target": "/$1", "destination": "erp-env", "authenticationType": "none"},
            {"source": "^/basic/(.*)$", "target": "/$1", "destination": "basic", "authenticationType": "none"},
            {"source": "^/pp/(.*)$", "target": "/$1", "destination": "principal-propagation"}
        ]
    })
}

/// The development XSUAA with its default destinations, whose virtual host maps to `backend`.
async fn stack(extra: &[(&str, &str)]) -> (Backend, DevXsuaa, Gateway) {
    let backend = backend().await;
    let dev = DevXsuaa::builder()
        .virtual_host(VIRTUAL_HOST, backend.addr.to_string())
        .destination(
            "basic",
            [
                ("URL", backend.url().as_str()),
                ("ProxyType", "Internet"),
                ("Authentication", "BasicAuthentication"),
                ("User", "alice"),
                ("Password", "wonderland"),
            ],
        )
        .start()
        .await
        .expect("development XSUAA");
    let mut builder = gateway(app()).services(&dev, &dev.credentials()).destination_entries(
        json!([{"name": "erp-env", "url": format!("http://{VIRTUAL_HOST}"), "proxyType": "OnPremise"}]),
    );
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    let router = builder.start().await;
    (backend, dev, router)
}

async fn get(router: &Gateway, path: &str) -> reqwest::Response {
    client()
        .get(router.url(path))
        .header("proxy-authorization", "Bearer from-the-client")
        .header("sap-connectivity-authentication", "Bearer forged")
        .header("sap-connectivity-technical-authentication", "Bearer forged")
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn on_premise_requests_go_through_the_proxy_with_the_connectivity_token() {
    let (backend, dev, router) = stack(&[]).await;
    let connectivity_client = dev.service_client_id(ServiceKind::Connectivity);
    for path in ["/onprem/orders?top=1", "/env-onprem/orders?top=1"] {
        let response = get(&router, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let seen = backend.seen().pop().expect("the system was reached");
        assert_eq!(seen.uri, "/orders?top=1", "{path}");
        assert_eq!(seen.headers["host"], VIRTUAL_HOST, "{path}: the virtual host");
        let record = dev.connectivity_requests().pop().expect("the proxy saw it");
        assert_eq!(record.target, format!("http://{VIRTUAL_HOST}/orders?top=1"), "{path}");
        assert_eq!(record.cid.as_deref(), Some(connectivity_client.as_str()), "{path}");
        // The client's forged connectivity headers never pass.
        assert!(
            !record.sap_headers.values().any(|value| value.contains("forged")),
            "{path}: {:?}",
            record.sap_headers
        );
        if path.starts_with("/onprem") {
            assert_eq!(
                record
                    .sap_headers
                    .get("sap-connectivity-scc-location_id")
                    .map(String::as_str),
                Some("loc1")
            );
        }
    }
}

#[tokio::test]
async fn technical_user_propagation_sends_the_service_header_to_the_proxy() {
    let (_backend, dev, router) = stack(&[]).await;
    assert_eq!(get(&router, "/technical/x").await.status(), 200);
    let record = dev.connectivity_requests().pop().expect("the proxy saw it");
    let technical = record
        .sap_headers
        .get("sap-connectivity-technical-authentication")
        .expect("the technical user's token");
    assert!(technical.starts_with("Bearer ey"), "{technical}");
}

#[tokio::test]
async fn principal_propagation_carries_the_logged_in_user() {
    let (backend, dev, router) = stack(&[]).await;
    let browser = Browser::new(&dev);
    let (response, visited) = browser.navigate(&router.url("/pp/me")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    assert_eq!(backend.seen().pop().expect("reached").uri, "/me");
    let record = dev.connectivity_requests().pop().expect("the proxy saw it");
    let user = record
        .sap_headers
        .get("sap-connectivity-authentication")
        .expect("the user for principal propagation");
    let claims = support::bearer_claims(user);
    assert!(claims["user_name"].is_string(), "{claims}");
    assert_eq!(claims["cid"], dev.service_client_id(ServiceKind::Destination));
}

#[tokio::test]
async fn a_refused_or_unmapped_system_is_a_gateway_error() {
    let (_backend, dev, router) = stack(&[]).await;
    dev.remove_virtual_host(VIRTUAL_HOST);
    let response = get(&router, "/onprem/x").await;
    assert_eq!(
        response.status(),
        503,
        "the proxy's answer for an unmapped system passes"
    );
    // A connectivity binding whose certificate XSUAA does not accept: no token, no request.
    let foreign = dev.foreign_client_cert();
    let connectivity = dev
        .service_credentials_with(ServiceKind::Connectivity, &foreign)
        .expect("credentials");
    let destination = dev.service_credentials(ServiceKind::Destination).expect("credentials");
    let router = gateway(app())
        .services_with(&dev, &dev.credentials(), &destination, &connectivity)
        .destination_entries(
            json!([{"name": "erp-env", "url": format!("http://{VIRTUAL_HOST}"), "proxyType": "OnPremise"}]),
        )
        .start()
        .await;
    let before = dev.connectivity_requests().len();
    assert_eq!(get(&router, "/env-onprem/x").await.status(), 502);
    assert_eq!(get(&router, "/onprem/x").await.status(), 502);
    assert_eq!(dev.connectivity_requests().len(), before, "nothing reached the proxy");
}

#[tokio::test]
async fn an_on_premise_destination_without_connectivity_stops_start_up() {
    let (_dir, config) = gateway(app())
        .destination_entries(json!([{"name": "erp-env", "url": "http://erp.internal:44300", "proxyType": "OnPremise"}]))
        .config();
    let errors = config.expect_err("no connectivity binding").to_string();
    assert!(
        errors.contains("erp-env.proxyType") && errors.contains("connectivity"),
        "{errors}"
    );
    let (_dir, config) = gateway(json!({"routes": [
        {"source": "^/(.*)$", "destination": "erp-env", "authenticationType": "none"}
    ]}))
    .destination_entries(json!([{"name": "erp-env", "url": "https://erp.internal:44300", "proxyType": "OnPremise"}]))
    .config();
    let errors = config.expect_err("https on premise").to_string();
    assert!(
        errors.contains("destinations[0].url") && errors.contains("http://"),
        "{errors}"
    );
}

#[tokio::test]
async fn the_destination_service_failing_is_503_or_502_and_slow_is_504() {
    let (backend, dev, router) = stack(&[("OUTGOING_REQUEST_OPTIONS", r#"{"destination":{"timeout":300}}"#)]).await;
    for (status, expected) in [(500, 502), (503, 503), (401, 502), (403, 502)] {
        dev.set_destination_failure(Some(http::StatusCode::from_u16(status).expect("status")));
        assert_eq!(
            get(&router, "/basic/x").await.status(),
            expected,
            "service answered {status}"
        );
    }
    dev.set_destination_failure(None);
    dev.set_destination_delay(Some(Duration::from_secs(2)));
    assert_eq!(get(&router, "/basic/x").await.status(), 504, "slower than the timeout");
    dev.set_destination_delay(None);
    // Nothing was cached from the failures: the next request finds and forwards.
    assert_eq!(get(&router, "/basic/x").await.status(), 200);
    assert!(backend.seen().len() == 1);
    let metrics = router.state.metrics.encode();
    for outcome in ["failed", "refused", "timeout", "found"] {
        assert!(
            metrics.contains(&format!("approuter_destination_lookups_total{{outcome=\"{outcome}\"}}")),
            "{outcome}: {metrics}"
        );
    }
}
