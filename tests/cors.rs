//! CORS through the router, one table: preflights answered by the router, actual requests with
//! the allow headers, 403 for disallowed origins and methods, the router's own origin exempt, and
//! xs-app.json rules tried before those of the `CORS` variable.

mod support;

use serde_json::json;
use support::{backend, gateway};

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    /// `{own}` is replaced by the router's own origin.
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    /// Headers the response must carry; an empty value means "must be absent".
    expect: &'static [(&'static str, &'static str)],
    /// Whether the request reached the backend.
    forwarded: bool,
}

const PREFLIGHT_PUT: &[(&str, &str)] = &[
    ("origin", "https://app.example"),
    ("access-control-request-method", "PUT"),
    ("access-control-request-headers", "content-type"),
];

#[tokio::test]
async fn cors_rules_table() {
    let backend = backend().await;
    let router = gateway(json!({
        "routes": [
            {"source": "^/api/v1/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/public/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/env-only/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/other/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ],
        "cors": [
            {
                "uriPattern": "^/api/",
                "allowedOrigin": [{"host": "app.example", "protocol": "https"}, {"host": "*.partner.example"}],
                "allowedMethods": ["GET", "POST", "PUT", "OPTIONS"],
                "allowedHeaders": ["Content-Type", "X-CSRF-Token"],
                "exposeHeaders": ["x-total", "etag"],
                "maxAge": 600
            },
            {"uriPattern": "^/public/", "allowedOrigin": [{"host": "*"}], "allowedCredentials": false, "maxAge": -1}
        ]
    }))
    .destinations(&[("backend", &backend.url())])
    .env(
        "CORS",
        json!([
            {"uriPattern": "^/api/", "allowedOrigin": [{"host": "env.example"}]},
            {"uriPattern": "^/env-only/", "allowedOrigin": [{"host": "env.example"}]}
        ])
        .to_string(),
    )
    // Behind a trusted proxy: its X-Forwarded-Proto is read (and must be valid).
    .env("CLIENT_IP_FORWARDED_HOPS", "1")
    .start()
    .await;

    let cases = [
        Case {
            name: "preflight allowed",
            method: "OPTIONS",
            path: "/api/v1/items",
            headers: PREFLIGHT_PUT,
            status: 200,
            expect: &[
                ("access-control-allow-origin", "https://app.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "PUT"),
                ("access-control-allow-headers", "Content-Type,X-CSRF-Token"),
                ("access-control-max-age", "600"),
                ("access-control-expose-headers", ""),
            ],
            forwarded: false,
        },
        Case {
            name: "preflight from a wildcard subdomain on another port",
            method: "OPTIONS",
            path: "/api/v1/items",
            headers: &[
                ("origin", "http://a.b.partner.example:8080"),
                ("access-control-request-method", "POST"),
            ],
            status: 200,
            expect: &[
                ("access-control-allow-origin", "http://a.b.partner.example:8080"),
                ("access-control-allow-methods", "POST"),
            ],
            forwarded: false,
        },
        Case {
            name: "preflight for a method not allowed",
            method: "OPTIONS",
            path: "/api/v1/items",
            headers: &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "DELETE"),
            ],
            status: 403,
            expect: &[("access-control-allow-origin", "")],
            forwarded: false,
        },
        Case {
            name: "preflight from an origin not allowed",
            method: "OPTIONS",
            path: "/api/v1/items",
            headers: &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            status: 403,
            expect: &[("access-control-allow-origin", "")],
            forwarded: false,
        },
        Case {
            name: "protocol is part of the origin",
            method: "GET",
            path: "/api/v1/items",
            headers: &[("origin", "http://app.example")],
            status: 403,
            expect: &[],
            forwarded: false,
        },
        Case {
            name: "actual request allowed",
            method: "GET",
            path: "/api/v1/items",
            headers: &[("origin", "https://app.example")],
            status: 200,
            expect: &[
                ("access-control-allow-origin", "https://app.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-total,etag"),
                ("vary", "Origin"),
                ("access-control-allow-methods", ""),
            ],
            forwarded: true,
        },
        Case {
            name: "actual request with a method not allowed",
            method: "DELETE",
            path: "/api/v1/items",
            headers: &[("origin", "https://app.example")],
            status: 403,
            expect: &[],
            forwarded: false,
        },
        Case {
            name: "origin null",
            method: "GET",
            path: "/api/v1/items",
            headers: &[("origin", "null")],
            status: 403,
            expect: &[],
            forwarded: false,
        },
        Case {
            name: "origin with a path",
            method: "GET",
            path: "/api/v1/items",
            headers: &[("origin", "https://app.example/evil")],
            status: 403,
            expect: &[],
            forwarded: false,
        },
        Case {
            name: "own origin skips CORS",
            method: "DELETE",
            path: "/api/v1/items",
            headers: &[("origin", "{own}")],
            status: 200,
            expect: &[("access-control-allow-origin", "")],
            forwarded: true,
        },
        Case {
            name: "no origin, no CORS",
            method: "GET",
            path: "/api/v1/items",
            headers: &[],
            status: 200,
            expect: &[("access-control-allow-origin", "")],
            forwarded: true,
        },
        Case {
            name: "errors of the router carry the headers too",
            method: "GET",
            path: "/api/none",
            headers: &[("origin", "https://app.example")],
            status: 404,
            expect: &[("access-control-allow-origin", "https://app.example")],
            forwarded: false,
        },
        Case {
            name: "wildcard without credentials answers *",
            method: "GET",
            path: "/public/x",
            headers: &[("origin", "https://anyone.example")],
            status: 200,
            expect: &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", ""),
            ],
            forwarded: true,
        },
        Case {
            name: "negative maxAge sends no max-age",
            method: "OPTIONS",
            path: "/public/x",
            headers: &[
                ("origin", "https://anyone.example"),
                ("access-control-request-method", "GET"),
            ],
            status: 200,
            expect: &[("access-control-allow-origin", "*"), ("access-control-max-age", "")],
            forwarded: false,
        },
        Case {
            name: "xs-app.json rules come before the CORS variable",
            method: "GET",
            path: "/api/v1/items",
            headers: &[("origin", "https://env.example")],
            status: 403,
            expect: &[],
            forwarded: false,
        },
        Case {
            name: "the CORS variable applies where xs-app.json has no rule",
            method: "GET",
            path: "/env-only/x",
            headers: &[("origin", "https://env.example")],
            status: 200,
            expect: &[
                ("access-control-allow-origin", "https://env.example"),
                ("access-control-max-age", ""),
            ],
            forwarded: true,
        },
        Case {
            name: "no rule for the URL: CORS does not apply",
            method: "GET",
            path: "/other/x",
            headers: &[("origin", "https://evil.example")],
            status: 200,
            expect: &[("access-control-allow-origin", "")],
            forwarded: true,
        },
        Case {
            name: "invalid x-forwarded-proto",
            method: "GET",
            path: "/api/v1/items",
            headers: &[("origin", "https://app.example"), ("x-forwarded-proto", "gopher")],
            status: 400,
            expect: &[],
            forwarded: false,
        },
    ];

    let client = support::client();
    let own = format!("http://{}", router.addr);
    for case in cases {
        let before = backend.seen().len();
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = client.request(method, router.url(case.path));
        for (name, value) in case.headers {
            request = request.header(*name, value.replace("{own}", &own));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        for (name, value) in case.expect {
            let actual: Vec<&str> = response
                .headers()
                .get_all(*name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            if value.is_empty() {
                assert!(
                    actual.is_empty(),
                    "{}: {name} must be absent, got {actual:?}",
                    case.name
                );
            } else {
                assert!(
                    actual.contains(value),
                    "{}: {name} should be {value:?}, got {actual:?}",
                    case.name
                );
            }
        }
        let forwarded = backend.seen().len() > before;
        assert_eq!(forwarded, case.forwarded, "{}: reached the backend", case.name);
    }
}

#[tokio::test]
async fn cors_configuration_errors_stop_the_start() {
    let cases = [
        (
            json!([{"uriPattern": "(", "allowedOrigin": [{"host": "a"}]}]),
            "xs-app.json: cors[0].uriPattern",
        ),
        (
            json!([{"uriPattern": "^/", "allowedOrigin": [{"host": "a*"}]}]),
            "xs-app.json: cors[0].allowedOrigin[0]",
        ),
        (
            json!([{"uriPattern": "^/", "allowedOrigin": []}]),
            "xs-app.json: cors[0].allowedOrigin",
        ),
    ];
    for (cors, path) in cases {
        let (_dir, config) = gateway(json!({"routes": [], "cors": cors})).config();
        let errors = config.expect_err("invalid CORS rejected");
        assert!(
            errors.problems.iter().any(|p| p.path == path),
            "expected {path}, got {errors}"
        );
    }
}
