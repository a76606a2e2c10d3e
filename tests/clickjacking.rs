//! Clickjacking protection: the `whitelistService` endpoint answering from `CJ_PROTECT_WHITELIST`
//! with the reference's JSON, and the `X-Frame-Options` header on every response.

mod support;

use serde_json::json;
use support::{backend, gateway, Backend, Gateway};

const ALLOWLIST: &str =
    r#"[{"protocol": "https", "host": "*.example.com"}, {"host": "partner.example", "port": "8443"}]"#;

async fn router(backend: &Backend, env: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(json!({
        "whitelistService": {"endpoint": "/whitelist/service"},
        "routes": [
            {"source": "^/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ]
    }))
    .destinations(&[("backend", &backend.url())]);
    for (name, value) in env {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

#[tokio::test]
async fn allowlist_service_answers_as_the_reference() {
    // (allowlist, query, exact body)
    let cases: &[(Option<&str>, &str, &str)] = &[
        (
            None,
            "?parentOrigin=https://a.example.com",
            r#"{"version":"1.0","active":false,"framing":true}"#,
        ),
        (None, "", r#"{"version":"1.0","active":false,"framing":true}"#),
        (
            Some(ALLOWLIST),
            "?parentOrigin=https://a.example.com",
            r#"{"version":"1.0","active":true,"origin":"https://a.example.com","framing":true}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=https%3A%2F%2FDeep.Sub.Example.com",
            r#"{"version":"1.0","active":true,"origin":"https://Deep.Sub.Example.com","framing":true}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=http://a.example.com",
            r#"{"version":"1.0","active":true,"origin":"http://a.example.com","framing":false}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=https://example.com",
            r#"{"version":"1.0","active":true,"origin":"https://example.com","framing":false}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=https://a.example.com.evil.example",
            r#"{"version":"1.0","active":true,"origin":"https://a.example.com.evil.example","framing":false}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=https%3A%2F%2Fevil.example%2F%3Fhttps%3A%2F%2Fa.example.com",
            r#"{"version":"1.0","active":true,"origin":"https://evil.example/?https://a.example.com","framing":false}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=http://partner.example:8443",
            r#"{"version":"1.0","active":true,"origin":"http://partner.example:8443","framing":true}"#,
        ),
        (
            Some(ALLOWLIST),
            "?parentOrigin=https://partner.example",
            r#"{"version":"1.0","active":true,"origin":"https://partner.example","framing":false}"#,
        ),
        (
            Some(ALLOWLIST),
            "",
            r#"{"version":"1.0","active":true,"framing":false}"#,
        ),
        (
            Some("[]"),
            "?parentOrigin=https://a.example.com",
            r#"{"version":"1.0","active":true,"origin":"https://a.example.com","framing":false}"#,
        ),
    ];
    let backend = backend().await;
    let client = support::client();
    for (allowlist, query, body) in cases {
        let env: Vec<(&str, &str)> = allowlist.iter().map(|list| ("CJ_PROTECT_WHITELIST", *list)).collect();
        let router = router(&backend, &env).await;
        let response = client
            .get(router.url(&format!("/whitelist/service{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{allowlist:?} {query}");
        assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(response.text().await.unwrap(), *body, "{allowlist:?} {query}");
    }
    assert!(backend.seen().is_empty(), "the service answers by itself");
}

#[tokio::test]
async fn other_methods_and_paths_fall_through_to_the_routes() {
    let backend = backend().await;
    let router = router(&backend, &[("CJ_PROTECT_WHITELIST", ALLOWLIST)]).await;
    let client = support::client();
    for (method, path) in [
        ("POST", "/whitelist/service"),
        ("HEAD", "/whitelist/service"),
        ("GET", "/whitelist/service/x"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client.request(method.clone(), router.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
        let seen = backend.next().await;
        assert_eq!((seen.method.as_str(), seen.uri.as_str()), (method.as_str(), path));
    }
}

#[tokio::test]
async fn x_frame_options_policy() {
    // (environment, expected X-Frame-Options; empty: absent)
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "SAMEORIGIN"),
        (&[("SEND_XFRAMEOPTIONS", "false")], ""),
        (&[("httpHeaders", r#"[{"X-Frame-Options": "DENY"}]"#)], "DENY"),
    ];
    let backend = backend().await;
    let client = support::client();
    for (env, expected) in cases {
        let router = router(&backend, env).await;
        for path in ["/whitelist/service", "/page"] {
            let response = client.get(router.url(path)).send().await.unwrap();
            let actual = response
                .headers()
                .get("x-frame-options")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            assert_eq!(actual, *expected, "{env:?} {path}");
        }
    }
}

#[tokio::test]
async fn allowlist_configuration_errors_stop_the_start() {
    let cases = [
        (r#"[{"host": "a", "port": "http"}]"#, "CJ_PROTECT_WHITELIST[0].port"),
        (r#"[{"host": "a.*.example"}]"#, "CJ_PROTECT_WHITELIST[0]"),
        (r#"[{"hots": "a"}]"#, "CJ_PROTECT_WHITELIST[0].hots"),
        (r#"{"host": "a"}"#, "CJ_PROTECT_WHITELIST"),
    ];
    for (value, path) in cases {
        let (_dir, config) = gateway(json!({"routes": []}))
            .env("CJ_PROTECT_WHITELIST", value)
            .config();
        let errors = config.expect_err("invalid allowlist rejected");
        assert!(
            errors.problems.iter().any(|p| p.path == path),
            "{value}: expected {path}, got {errors}"
        );
    }
}
