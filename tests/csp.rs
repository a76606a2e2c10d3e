//! `Content-Security-Policy` of configured response headers against a backend's: the backend's
//! wins, unless `MERGE_CSP_HEADERS=true` keeps both enforced; the router's own answers keep the
//! configured one.

mod support;

use serde_json::json;
use support::{backend, client, gateway};

const CONFIGURED: &str = "frame-ancestors 'none'";
const BACKEND: &str = "default-src 'self'";

/// The `Content-Security-Policy` values a GET of `path` gets, with `MERGE_CSP_HEADERS` as `merge`.
async fn policies(merge: Option<&str>, paths: &[&str]) -> Vec<Vec<String>> {
    let backend = backend().await;
    let mut builder = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destinations(&[("backend", &backend.url())])
    .env(
        "httpHeaders",
        json!([{"Content-Security-Policy": CONFIGURED}]).to_string(),
    );
    if let Some(merge) = merge {
        builder = builder.env("MERGE_CSP_HEADERS", merge);
    }
    let gateway = builder.start().await;
    let mut all = Vec::new();
    for path in paths {
        let response = client().get(gateway.url(path)).send().await.expect("response");
        all.push(
            response
                .headers()
                .get_all("content-security-policy")
                .iter()
                .map(|value| value.to_str().expect("text").to_string())
                .collect(),
        );
    }
    all
}

#[tokio::test]
async fn a_backend_policy_replaces_the_configured_one_by_default() {
    let seen = policies(None, &["/csp", "/plain"]).await;
    assert_eq!(seen, [vec![BACKEND.to_string()], vec![CONFIGURED.to_string()]]);
    let seen = policies(Some("false"), &["/csp"]).await;
    assert_eq!(seen, [vec![BACKEND.to_string()]]);
}

#[tokio::test]
async fn merge_csp_headers_enforces_both_policies() {
    let seen = policies(Some("true"), &["/csp", "/plain"]).await;
    assert_eq!(
        seen,
        [vec![format!("{BACKEND}, {CONFIGURED}")], vec![CONFIGURED.to_string()]]
    );
}

#[tokio::test]
async fn merge_csp_headers_must_be_a_boolean() {
    let (_dir, config) = gateway(json!({"routes": []})).env("MERGE_CSP_HEADERS", "yes").config();
    let errors = config.expect_err("not a boolean").to_string();
    assert!(errors.contains("MERGE_CSP_HEADERS"), "{errors}");
}
