//! `identityProvider` on XS advanced: with `XS_BIND_ADDRESS` set, the identity provider reaches
//! the authorize URL as `login_hint={"origin":"…"}`, as from the Node.js router.

mod support;

use serde_json::json;
use support::idp::{dev_xsuaa, param};
use support::{backend, gateway};

#[tokio::test]
async fn the_identity_provider_is_a_login_hint_when_xs_bind_address_is_set() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let app = json!({
        "routes": [
            {"source": "^/idp/(.*)$", "target": "/$1", "destination": "backend", "identityProvider": "corp-ids"},
            {"source": "^/dynidp/(.*)$", "target": "/$1", "destination": "backend", "dynamicIdentityProvider": true}
        ]
    });
    let router = gateway(app)
        .destination_entries(json!([{"name": "backend", "url": backend.url()}]))
        .xsuaa(&dev, &dev.credentials())
        .env("PRESERVE_FRAGMENT", "false")
        .env("XS_BIND_ADDRESS", "127.0.0.1")
        .start()
        .await;
    let client = support::client();
    for (path, origin) in [("/idp/x", "corp-ids"), ("/dynidp/x?sap_idp=other-ids", "other-ids")] {
        let response = client.get(router.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 302, "{path}");
        let location = response.headers()["location"].to_str().expect("text").to_string();
        assert!(
            location.starts_with(&format!("{}/oauth/authorize?", dev.url())),
            "{location}"
        );
        assert_eq!(
            param(&location, "login_hint"),
            Some(format!(r#"{{"origin":"{origin}"}}"#)),
            "{location}"
        );
        assert_eq!(param(&location, "idp"), None, "{location}");
    }
}
