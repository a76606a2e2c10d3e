//! `localDir` routes, table-driven over raw HTTP/1.1 (so traversal attempts reach the router byte for
//! byte): validators and conditional requests, methods, folders, `cacheControl`, `errorPage` in both
//! forms, configured response headers, and traversal in every encoding. Range requests are in
//! [`ranges`].

#[path = "static_files/ranges.rs"]
mod ranges;
mod support;

use std::collections::HashMap;

use serde_json::json;
use support::gateway;
use support::raw::{exchange, request};

const INDEX: &str = "<h1>home</h1>";
const SUB_INDEX: &str = "<h1>sub</h1>";
const NOT_FOUND_PAGE: &str = "<h1>custom not found</h1>";
const SECRET: &str = "TOP-SECRET outside the folder";

/// Which router a row runs against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Router {
    /// errorPage file form, cacheControl route, `httpHeaders` env and `responseHeaders`.
    Main,
    /// errorPage path form, `SEND_XFRAMEOPTIONS=false`.
    Redirect,
    /// `DISABLE_PATHNAME_VALIDATION=true`: the static layer alone must refuse traversal.
    Unvalidated,
}

struct Row {
    name: &'static str,
    router: Router,
    method: &'static str,
    target: &'static str,
    /// Request headers; `{etag}` and `{last-modified}` are replaced by the index file's validators.
    headers: &'static [(&'static str, &'static str)],
    /// The status.
    status: u16,
    /// Response headers: a value of "" means absent, "*" means present with any value.
    response_headers: &'static [(&'static str, &'static str)],
    /// The body must equal this (`None`: not checked).
    body: Option<&'static str>,
}

const ROWS: &[Row] = &[
    Row {
        name: "file with validators, type and configured headers",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[],
        status: 200,
        response_headers: &[
            ("content-type", "text/html; charset=UTF-8"),
            ("etag", "*"),
            ("last-modified", "*"),
            ("x-env-only", "from-env"),
            // responseHeaders of xs-app.json win over httpHeaders of the environment.
            ("x-both", "from-xs-app"),
            // httpHeaders replaces the default SAMEORIGIN.
            ("x-frame-options", "DENY"),
        ],
        body: Some(INDEX),
    },
    Row {
        name: "If-None-Match with the current ETag",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-none-match", "{etag}")],
        status: 304,
        response_headers: &[("etag", "*")],
        body: Some(""),
    },
    Row {
        name: "If-None-Match with another ETag",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-none-match", "W/\"0-0\"")],
        status: 200,
        response_headers: &[],
        body: Some(INDEX),
    },
    Row {
        name: "If-Modified-Since the Last-Modified",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-modified-since", "{last-modified}")],
        status: 304,
        response_headers: &[],
        body: Some(""),
    },
    Row {
        name: "If-Match with the current ETag among others",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-match", "\"other\", {etag}")],
        status: 200,
        response_headers: &[],
        body: Some(INDEX),
    },
    Row {
        name: "If-Match: *",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-match", "*")],
        status: 200,
        response_headers: &[],
        body: Some(INDEX),
    },
    Row {
        name: "If-Match with another ETag",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-match", "W/\"0-0\"")],
        status: 412,
        response_headers: &[("etag", "")],
        body: None,
    },
    Row {
        name: "a failed If-Match wins over a matching If-None-Match",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-match", "\"other\""), ("if-none-match", "{etag}")],
        status: 412,
        response_headers: &[],
        body: None,
    },
    Row {
        name: "If-Unmodified-Since the Last-Modified",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-unmodified-since", "{last-modified}")],
        status: 200,
        response_headers: &[],
        body: Some(INDEX),
    },
    Row {
        name: "If-Unmodified-Since a date before the file changed",
        router: Router::Main,
        method: "HEAD",
        target: "/ui/index.html",
        headers: &[("if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        status: 412,
        response_headers: &[],
        body: Some(""),
    },
    Row {
        name: "If-Unmodified-Since that is not a date is ignored",
        router: Router::Main,
        method: "GET",
        target: "/ui/index.html",
        headers: &[("if-unmodified-since", "yesterday")],
        status: 200,
        response_headers: &[],
        body: Some(INDEX),
    },
    Row {
        name: "HEAD has the length but no body",
        router: Router::Main,
        method: "HEAD",
        target: "/ui/index.html",
        headers: &[],
        status: 200,
        response_headers: &[("content-length", "13"), ("etag", "*")],
        body: Some(""),
    },
    Row {
        name: "POST on a file",
        router: Router::Main,
        method: "POST",
        target: "/ui/index.html",
        headers: &[],
        status: 405,
        response_headers: &[("allow", "GET, HEAD")],
        body: None,
    },
    Row {
        name: "DELETE on a folder",
        router: Router::Main,
        method: "DELETE",
        target: "/ui/sub/",
        headers: &[],
        status: 405,
        response_headers: &[("allow", "GET, HEAD")],
        body: None,
    },
    Row {
        name: "folder without slash redirects to the slash",
        router: Router::Main,
        method: "GET",
        target: "/ui/sub",
        headers: &[],
        status: 301,
        response_headers: &[("location", "/ui/sub/")],
        body: None,
    },
    Row {
        name: "folder redirect never becomes a protocol-relative URL (open redirect)",
        router: Router::Main,
        method: "GET",
        target: "//sub",
        headers: &[],
        status: 301,
        response_headers: &[("location", "/sub/")],
        body: None,
    },
    Row {
        name: "folder with slash serves index.html",
        router: Router::Main,
        method: "GET",
        target: "/ui/sub/",
        headers: &[],
        status: 200,
        response_headers: &[("content-type", "text/html; charset=UTF-8")],
        body: Some(SUB_INDEX),
    },
    Row {
        name: "no cacheControl on the route",
        router: Router::Main,
        method: "GET",
        target: "/ui/app.js",
        headers: &[],
        status: 200,
        response_headers: &[("cache-control", "public, max-age=0")],
        body: Some("console.log(1);"),
    },
    Row {
        name: "cacheControl of the route",
        router: Router::Main,
        method: "GET",
        target: "/cached/app.js",
        headers: &[],
        status: 200,
        response_headers: &[("cache-control", "public, max-age=60")],
        body: Some("console.log(1);"),
    },
    Row {
        name: "errorPage file form keeps the status",
        router: Router::Main,
        method: "GET",
        target: "/ui/missing.html",
        headers: &[],
        status: 404,
        response_headers: &[("content-type", "text/html"), ("x-frame-options", "DENY")],
        body: Some(NOT_FOUND_PAGE),
    },
    Row {
        name: "errorPage file form for a route that does not exist",
        router: Router::Main,
        method: "GET",
        target: "/nowhere",
        headers: &[],
        status: 404,
        response_headers: &[],
        body: Some(NOT_FOUND_PAGE),
    },
    Row {
        name: "errorPage path form redirects",
        router: Router::Redirect,
        method: "GET",
        target: "/ui/missing.html",
        headers: &[],
        status: 302,
        response_headers: &[("location", "/ui/notfound.html")],
        body: None,
    },
    Row {
        name: "errorPage path form does not redirect to itself",
        router: Router::Redirect,
        method: "GET",
        target: "/ui/notfound.html",
        headers: &[],
        status: 404,
        response_headers: &[("location", "")],
        body: Some("Not Found"),
    },
    Row {
        name: "SEND_XFRAMEOPTIONS=false removes X-Frame-Options",
        router: Router::Redirect,
        method: "GET",
        target: "/ui/index.html",
        headers: &[],
        status: 200,
        response_headers: &[("x-frame-options", "")],
        body: Some(INDEX),
    },
    Row {
        name: "default X-Frame-Options",
        router: Router::Unvalidated,
        method: "GET",
        target: "/ui/index.html",
        headers: &[],
        status: 200,
        response_headers: &[("x-frame-options", "SAMEORIGIN"), ("x-both", "")],
        body: Some(INDEX),
    },
];

/// Traversal attempts: each runs against the router with path validation and without it, and must be
/// refused without revealing anything outside the folder.
const TRAVERSALS: &[&str] = &[
    "/ui/../xs-app.json",
    "/ui/../secret.txt",
    "/ui/sub/../../secret.txt",
    "/ui/%2e%2e/secret.txt",
    "/ui/%2E%2E/secret.txt",
    "/ui/.%2e/secret.txt",
    "/ui/..%2fsecret.txt",
    "/ui/..%2Fxs-app.json",
    "/ui/..%5csecret.txt",
    "/ui/..%5Cxs-app.json",
    "/ui/%2e%2e%5csecret.txt",
    "/ui/%252e%252e/secret.txt",
    "/ui/sub%2f..%2f..%2fsecret.txt",
    "/ui/index.html%00.js",
    "/ui//etc/passwd",
    "/ui/%2fetc%2fpasswd",
];

/// Text that must never appear in the answer to a traversal attempt.
const LEAKS: &[&str] = &["TOP-SECRET", "\"routes\"", "root:"];

async fn start(router: Router) -> support::Gateway {
    let mut xs_app = json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/ui/(.*)$", "target": "/$1", "localDir": "webapp"},
            {"source": "^/cached/(.*)$", "target": "/$1", "localDir": "webapp", "cacheControl": "public, max-age=60"},
            {"source": "^/(.*)$", "target": "/$1", "localDir": "webapp"}
        ]
    });
    let mut env: Vec<(&str, &str)> = Vec::new();
    match router {
        Router::Main => {
            xs_app["errorPage"] = json!([{"status": [403, 404], "file": "errors/404.html"}]);
            xs_app["responseHeaders"] = json!([{"name": "X-Both", "value": "from-xs-app"}]);
            env.push((
                "httpHeaders",
                r#"[{"X-Env-Only": "from-env"}, {"X-Both": "from-env"}, {"X-Frame-Options": "DENY"}]"#,
            ));
        }
        Router::Redirect => {
            xs_app["errorPage"] = json!([{"status": 404, "path": "/ui/notfound.html"}]);
            env.push(("SEND_XFRAMEOPTIONS", "false"));
        }
        Router::Unvalidated => env.push(("DISABLE_PATHNAME_VALIDATION", "true")),
    }
    let mut builder = gateway(xs_app)
        .file("webapp/index.html", INDEX)
        .file("webapp/app.js", "console.log(1);")
        .file("webapp/sub/index.html", SUB_INDEX)
        .file("errors/404.html", NOT_FOUND_PAGE)
        .file("secret.txt", SECRET);
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    builder.start().await
}

#[tokio::test]
async fn static_files_table() {
    let mut routers = HashMap::new();
    for router in [Router::Main, Router::Redirect, Router::Unvalidated] {
        routers.insert(router, start(router).await);
    }
    // The validators of index.html, for the conditional rows.
    let first = exchange(routers[&Router::Main].addr, &request("GET", "/ui/index.html", &[])).await;
    let etag = first.header("etag").expect("ETag on a file").to_string();
    let last_modified = first
        .header("last-modified")
        .expect("Last-Modified on a file")
        .to_string();

    let mut failures = Vec::new();
    for row in ROWS {
        let headers: Vec<(&str, String)> = row
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    *name,
                    value
                        .replace("{etag}", &etag)
                        .replace("{last-modified}", &last_modified),
                )
            })
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let response = exchange(routers[&row.router].addr, &request(row.method, row.target, &headers)).await;
        if response.status != row.status {
            failures.push(format!("{}: status {} != {}", row.name, response.status, row.status));
        }
        for (name, want) in row.response_headers {
            let got = response.header(name);
            let ok = match *want {
                "" => got.is_none(),
                "*" => got.is_some(),
                want => got == Some(want),
            };
            if !ok {
                failures.push(format!("{}: header {name} = {got:?}, want {want:?}", row.name));
            }
        }
        if let Some(body) = row.body {
            if response.text() != body {
                failures.push(format!("{}: body {:?}, want {body:?}", row.name, response.text()));
            }
        }
    }
    assert!(failures.is_empty(), "static rows failed:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn traversal_never_leaves_the_folder() {
    let validated = start(Router::Main).await;
    let unvalidated = start(Router::Unvalidated).await;
    let mut failures = Vec::new();
    for (label, router) in [("validated", &validated), ("unvalidated", &unvalidated)] {
        for target in TRAVERSALS {
            let response = exchange(router.addr, &request("GET", target, &[])).await;
            if ![400, 403, 404].contains(&response.status) {
                failures.push(format!("{label} {target}: status {}", response.status));
            }
            let text = response.text();
            if let Some(leak) = LEAKS.iter().find(|leak| text.contains(**leak)) {
                failures.push(format!("{label} {target}: body reveals {leak:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "traversal attempts not refused:\n{}",
        failures.join("\n")
    );
}
