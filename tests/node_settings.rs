//! Settings of the Node.js router honoured as it honours them: the implicit route to `resources/`,
//! `target` without a leading `/`, `SECURE_SESSION_COOKIE=true` refusing plain HTTP, `SAP-PASSPORT`,
//! `RETURN_ERROR_SOURCE` and `REMOVE_CLASHING_BACKEND_SESSION_COOKIE`.

mod support;

use serde_json::json;
use support::{backend, client, gateway};

#[tokio::test]
async fn resources_are_served_after_the_routes_when_no_route_has_a_local_dir() {
    let backend = backend().await;
    let router = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destinations(&[("backend", &backend.url())])
    .file("resources/index.html", "<h1>ui</h1>")
    .file("resources/app/main.js", "console.log(1)")
    .start()
    .await;
    let get = |path: &str| client().get(router.url(path)).send();
    let page = get("/").await.expect("request");
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.expect("body"), "<h1>ui</h1>");
    let script = get("/app/main.js").await.expect("request");
    assert_eq!(script.status(), 200);
    assert_eq!(script.text().await.expect("body"), "console.log(1)");
    // The declared routes come first.
    assert_eq!(get("/api/x").await.expect("request").status(), 200);
    assert_eq!(backend.seen().len(), 1);
    assert_eq!(get("/missing.js").await.expect("request").status(), 404);
}

#[tokio::test]
async fn a_local_dir_route_or_no_folder_means_no_implicit_route() {
    let with_local_dir = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/web/(.*)$", "target": "$1", "localDir": "web"}]
    }))
    .file("web/index.html", "web")
    .file("resources/index.html", "resources")
    .start()
    .await;
    let response = client()
        .get(with_local_dir.url("/index.html"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        404,
        "resources/ is not served beside a localDir route"
    );

    let (_dir, config) = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/api/(.*)$", "destination": "backend"}]
    }))
    .destinations(&[("backend", "http://127.0.0.1:9")])
    .config();
    assert_eq!(config.expect("valid").routes.len(), 1, "no resources/ folder, no route");
}

#[tokio::test]
async fn the_implicit_route_needs_a_login_by_default() {
    // Without authenticationMethod none the implicit route is protected, as in the Node.js
    // router; without an XSUAA binding that is a start-up error naming the implicit route.
    let (_dir, config) = gateway(json!({"routes": []}))
        .file("resources/index.html", "<h1>ui</h1>")
        .config();
    let errors = config.expect_err("protected without XSUAA").to_string();
    assert!(errors.contains("the implicit route serving resources/"), "{errors}");
}

#[tokio::test]
async fn a_target_without_a_leading_slash_is_taken_as_the_node_router_takes_it() {
    let router = gateway(json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/$", "target": "index.html", "localDir": "web"},
            {"source": "^/page/(.*)$", "target": "pages/$1", "localDir": "web"}
        ]
    }))
    .file("web/index.html", "home")
    .file("web/pages/a.html", "page a")
    .start()
    .await;
    let get = |path: &str| client().get(router.url(path)).send();
    assert_eq!(get("/").await.expect("request").text().await.expect("body"), "home");
    assert_eq!(
        get("/page/a.html").await.expect("request").text().await.expect("body"),
        "page a"
    );

    for target in ["//evil.example/x", "https://evil.example/x"] {
        let (_dir, config) = gateway(json!({
            "authenticationMethod": "none",
            "routes": [{"source": "^/(.*)$", "target": target, "localDir": "web"}]
        }))
        .file("web/index.html", "home")
        .config();
        let errors = config.expect_err("a target naming a host").to_string();
        assert!(errors.contains("routes[0].target"), "{target}: {errors}");
    }
}

#[tokio::test]
async fn secure_session_cookie_true_refuses_plain_http() {
    let backend = backend().await;
    let start = |hops: &str| {
        gateway(json!({
            "authenticationMethod": "none",
            "routes": [{"source": "^/(.*)$", "destination": "backend"}]
        }))
        .destinations(&[("backend", &backend.url())])
        .env("SECURE_SESSION_COOKIE", "true")
        .env("CLIENT_IP_FORWARDED_HOPS", hops)
        .start()
    };
    let direct = start("0").await;
    let plain = client().get(direct.url("/x")).send().await.expect("request");
    assert_eq!(plain.status(), 403);
    // A client's own X-Forwarded-Proto does not make plain HTTP secure.
    let claimed = client()
        .get(direct.url("/x"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request");
    assert_eq!(claimed.status(), 403);
    // Behind a trusted proxy that terminated TLS, the request goes on.
    let proxied = start("1").await;
    let forwarded = client()
        .get(proxied.url("/x"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request");
    assert_eq!(forwarded.status(), 200);
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn return_error_source_marks_the_routers_own_errors() {
    let backend = backend().await;
    let start = |flag: &str| {
        gateway(json!({
            "authenticationMethod": "none",
            "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
        }))
        .destinations(&[("backend", &backend.url())])
        .env("RETURN_ERROR_SOURCE", flag)
        .start()
    };
    let marked = start("true").await;
    let source = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-error-source")
            .map(|value| value.to_str().expect("text").to_string())
    };
    // No route: the router's own 404.
    let own = client().get(marked.url("/nowhere")).send().await.expect("request");
    assert_eq!(own.status(), 404);
    assert_eq!(source(&own).as_deref(), Some("gateway"));
    // The backend's 404 is the backend's.
    let theirs = client()
        .get(marked.url("/api/status/404"))
        .send()
        .await
        .expect("request");
    assert_eq!(theirs.status(), 404);
    assert_eq!(source(&theirs), None);
    // Off by default.
    let unmarked = start("false").await;
    let own = client().get(unmarked.url("/nowhere")).send().await.expect("request");
    assert_eq!(source(&own), None);
}

#[tokio::test]
async fn remove_clashing_backend_session_cookie_drops_a_backends_cookie_of_that_name() {
    let backend = backend().await;
    let dev = support::idp::dev_xsuaa().await;
    let start = |flag: &str| {
        gateway(json!({
            "routes": [{"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}]
        }))
        .destinations(&[("backend", &backend.url())])
        .xsuaa(&dev, &dev.credentials())
        // The backend sets BSESSION: named like the router's session cookie here.
        .env("SESSION_COOKIE_NAME", "BSESSION")
        .env("REMOVE_CLASHING_BACKEND_SESSION_COOKIE", flag)
        .start()
    };
    let cookies = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .expect("text")
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let removing = start("true").await;
    let response = client()
        .get(removing.url("/open/cookie"))
        .send()
        .await
        .expect("request");
    assert_eq!(cookies(&response), ["BPERSIST"], "the clashing BSESSION is dropped");
    let keeping = start("false").await;
    let response = client().get(keeping.url("/open/cookie")).send().await.expect("request");
    assert_eq!(cookies(&response), ["BSESSION", "BPERSIST"]);
}

/// The Node.js router passes `SAP-PASSPORT` unchanged with `SERVICE_2_APPROUTER=true`; here it
/// always does (the router adds no passport of its own), and an `x-approuter-instance` response
/// header names the instance that answered.
#[tokio::test]
async fn sap_passport_reaches_the_backend_unchanged_and_the_instance_is_named() {
    let backend = backend().await;
    let router = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "destination": "backend"}]
    }))
    .destinations(&[("backend", &backend.url())])
    .env("httpHeaders", r#"[{"x-approuter-instance": "unknown"}]"#)
    .env("CF_INSTANCE_INDEX", "7")
    .start()
    .await;
    let passport = "2a54482a0300e60000756e64657465726d696e6564202020202020202020202020202020202020202020";
    let response = client()
        .get(router.url("/x"))
        .header("SAP-PASSPORT", passport)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-approuter-instance"], "7");
    let seen = backend.seen();
    assert_eq!(seen[0].headers["sap-passport"], passport);
}
