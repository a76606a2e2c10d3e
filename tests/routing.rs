//! Table-driven routing: each row is a client request, what the backend must see, and what the
//! client must get, run against a real backend through the router.

mod support;

use serde_json::json;
use support::{backend, client, gateway};

struct Row {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// The URI the backend must see; `None` when the request must not reach it.
    upstream: Option<&'static str>,
    /// Headers the backend must see (name, value); a value of "" means "must be absent", and
    /// "!value" means "present, and not this value".
    upstream_headers: &'static [(&'static str, &'static str)],
    status: u16,
    response_headers: &'static [(&'static str, &'static str)],
}

const ROWS: &[Row] = &[
    Row {
        name: "rewrite with capture group keeps query",
        method: "GET",
        path: "/api/orders?top=5",
        headers: &[],
        upstream: Some("/svc/orders?top=5"),
        upstream_headers: &[("x-forwarded-path", "/api/orders"), ("x-forwarded-proto", "http")],
        status: 200,
        response_headers: &[("x-frame-options", "SAMEORIGIN")],
    },
    Row {
        name: "no target keeps the path, destination prefix kept",
        method: "GET",
        path: "/plain/a/b",
        headers: &[],
        upstream: Some("/base/plain/a/b"),
        upstream_headers: &[],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "method not allowed lists the union of methods",
        method: "DELETE",
        path: "/api/orders",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 405,
        response_headers: &[("allow", "GET, POST")],
    },
    Row {
        name: "later route allows the method",
        method: "PUT",
        path: "/multi/x",
        headers: &[],
        upstream: Some("/put/x"),
        upstream_headers: &[],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "case-insensitive source",
        method: "GET",
        path: "/CASE/x",
        headers: &[],
        upstream: Some("/case/x"),
        upstream_headers: &[],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "case-sensitive by default",
        method: "GET",
        path: "/API/orders",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 404,
        response_headers: &[],
    },
    Row {
        name: "dynamic destination from a capture group",
        method: "GET",
        path: "/dyn/backend2/hello",
        headers: &[],
        upstream: Some("/hello"),
        upstream_headers: &[],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "dynamic destination that does not exist",
        method: "GET",
        path: "/dyn/nothere/hello",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 404,
        response_headers: &[],
    },
    Row {
        name: "hop-by-hop and Connection-named headers are dropped, XFF appended",
        method: "GET",
        path: "/api/h",
        headers: &[
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-forwarded-for", "10.9.9.9"),
            ("proxy-authorization", "Basic abc"),
            ("x-approuter-authorization", "Bearer forged"),
            ("x-correlation-id", "corr-123"),
        ],
        upstream: Some("/svc/h"),
        upstream_headers: &[
            ("x-hop", ""),
            ("proxy-authorization", ""),
            ("x-approuter-authorization", ""),
            ("x-forwarded-for", "10.9.9.9, 127.0.0.1"),
            ("x-correlationid", "corr-123"),
        ],
        status: 200,
        response_headers: &[("x-request-id", "corr-123")],
    },
    Row {
        name: "an X-Forwarded-For that Connection names is dropped before the router's own address starts the list",
        method: "GET",
        path: "/api/xff",
        headers: &[
            ("connection", "keep-alive, X-Forwarded-For"),
            ("x-forwarded-for", "10.9.9.9"),
        ],
        upstream: Some("/svc/xff"),
        upstream_headers: &[("x-forwarded-for", "127.0.0.1")],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "a trace context that Connection names is dropped, and a new trace starts",
        method: "GET",
        path: "/api/trace",
        headers: &[
            ("connection", "traceparent, tracestate"),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("tracestate", "vendor=1"),
        ],
        upstream: Some("/svc/trace"),
        upstream_headers: &[
            (
                "traceparent",
                "!00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", ""),
        ],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "host is rewritten to the destination",
        method: "GET",
        path: "/api/host",
        headers: &[],
        upstream: Some("/svc/host"),
        upstream_headers: &[("host", "{backend}")],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "public route passes the client's Authorization",
        method: "GET",
        path: "/api/auth",
        headers: &[("authorization", "Bearer client-token")],
        upstream: Some("/svc/auth"),
        upstream_headers: &[("authorization", "Bearer client-token")],
        status: 200,
        response_headers: &[],
    },
    Row {
        name: "encoded traversal is refused before routing",
        method: "GET",
        path: "/public%2F..%2Fapi/orders",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 400,
        response_headers: &[],
    },
    Row {
        name: "traversal in fullwidth full stops is refused after NFKC",
        method: "GET",
        path: "/public/%EF%BC%8E%EF%BC%8E/api/orders",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 400,
        response_headers: &[],
    },
    Row {
        name: "no route",
        method: "GET",
        path: "/nothing",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 404,
        response_headers: &[("x-frame-options", "SAMEORIGIN")],
    },
    Row {
        name: "welcome file redirect",
        method: "GET",
        path: "/",
        headers: &[],
        upstream: None,
        upstream_headers: &[],
        status: 302,
        response_headers: &[("location", "/index.html")],
    },
    Row {
        name: "backend status passes through",
        method: "GET",
        path: "/plain/status/418",
        headers: &[],
        upstream: Some("/base/plain/status/418"),
        upstream_headers: &[],
        status: 418,
        response_headers: &[],
    },
];

#[tokio::test]
async fn routing_table() {
    let backend = backend().await;
    let router = gateway(json!({
        "welcomeFile": "index.html",
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/api/(.*)$", "target": "/svc/$1", "destination": "backend", "httpMethods": ["GET", "POST"]},
            {"source": "^/multi/(.*)$", "target": "/get/$1", "destination": "backend", "httpMethods": ["GET"]},
            {"source": "^/multi/(.*)$", "target": "/put/$1", "destination": "backend", "httpMethods": ["PUT"]},
            {"source": {"path": "^/case/(.*)$", "matchCase": false}, "target": "/case/$1", "destination": "backend"},
            {"source": "^/dyn/([a-z0-9]+)/(.*)$", "target": "/$2", "destination": "$1"},
            {"source": "^/plain/", "destination": "prefixed"}
        ]
    }))
    .destinations(&[
        ("backend", &backend.url()),
        ("backend2", &backend.url()),
        ("prefixed", &format!("{}/base/", backend.url())),
    ])
    .start()
    .await;
    let client = client();
    let backend_host = backend.addr.to_string();
    let mut failures = Vec::new();
    for row in ROWS {
        let before = backend.seen().len();
        let method = http::Method::from_bytes(row.method.as_bytes()).unwrap();
        let mut request = client.request(method, router.url(row.path));
        for (name, value) in row.headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect(row.name);
        if response.status().as_u16() != row.status {
            failures.push(format!("{}: status {} != {}", row.name, response.status(), row.status));
        }
        for (name, value) in row.response_headers {
            let got = response.headers().get(*name).map(|v| v.to_str().unwrap().to_string());
            if got.as_deref() != Some(*value) {
                failures.push(format!(
                    "{}: response header {name} = {got:?}, want {value:?}",
                    row.name
                ));
            }
        }
        let seen = backend.seen();
        match (row.upstream, seen.get(before)) {
            (None, None) => {}
            (None, Some(got)) => failures.push(format!("{}: backend unexpectedly got {}", row.name, got.uri)),
            (Some(want), None) => failures.push(format!("{}: backend got nothing, want {want}", row.name)),
            (Some(want), Some(got)) => {
                if got.uri != want {
                    failures.push(format!("{}: upstream uri {} != {want}", row.name, got.uri));
                }
                for (name, value) in row.upstream_headers {
                    let value = value.replace("{backend}", &backend_host);
                    let got = got.headers.get(*name).map(|v| v.to_str().unwrap().to_string());
                    let ok = match value.strip_prefix('!') {
                        _ if value.is_empty() => got.is_none(),
                        Some(not) => got.as_deref().is_some_and(|got| got != not),
                        None => got.as_deref() == Some(value.as_str()),
                    };
                    if !ok {
                        failures.push(format!(
                            "{}: upstream header {name} = {got:?}, want {value:?}",
                            row.name
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "routing rows failed:\n{}", failures.join("\n"));
}
