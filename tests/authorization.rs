//! The browser contract after login: scopes, CSRF, logout, user API, basic routes, identity
//! provider hints and backend session cookies — through the router with the development XSUAA.

mod support;

use serde_json::json;
use support::idp::{dev_xsuaa, param, Browser};
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

fn app() -> serde_json::Value {
    json!({
        "logout": {"logoutEndpoint": "/logout", "logoutPage": "/bye.html"},
        "destinations": {"backend": {"logoutPath": "/backend-logout"}},
        "routes": [
            {"source": "^/display/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Display"},
            {"source": "^/admin/(.*)$", "target": "/$1", "destination": "backend", "scope": ["$XSAPPNAME.Admin", "$XSAPPNAME.Super"]},
            {"source": "^/case/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.display"},
            {"source": "^/mixed/(.*)$", "target": "/$1", "destination": "backend",
             "scope": {"GET": "$XSAPPNAME.Display", "POST": "$XSAPPNAME.Admin", "default": "$XSAPPNAME.Display"}},
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/nocsrf/(.*)$", "target": "/$1", "destination": "backend", "csrfProtection": false},
            {"source": "^/user-api(.*)$", "target": "$1", "service": "sap-approuter-userapi"},
            {"source": "^/basic/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "basic"},
            {"source": "^/idp/(.*)$", "target": "/$1", "destination": "backend", "identityProvider": "corp-ids"},
            {"source": "^/dynidp/(.*)$", "target": "/$1", "destination": "backend", "dynamicIdentityProvider": true},
            {"source": "^/public/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/bye.html$", "target": "/bye", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

async fn setup() -> (DevXsuaa, Backend, Gateway, Browser) {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(&dev, &dev.credentials())
        .start()
        .await;
    let browser = Browser::new(&dev);
    let (response, _) = browser.navigate(&router.url("/api/login")).await;
    assert_eq!(response.status(), 200);
    (dev, backend, router, browser)
}

async fn fetch_token(browser: &Browser, router: &Gateway) -> String {
    let response = browser
        .client
        .get(router.url("/api/x"))
        .header("x-csrf-token", "Fetch")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["x-csrf-token"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn scopes_are_checked_per_route_and_method() {
    let (_dev, backend, router, browser) = setup().await;
    let token = fetch_token(&browser, &router).await;
    let rows: &[(&str, &str, u16)] = &[
        ("GET", "/display/a", 200),
        ("GET", "/admin/a", 403),
        ("GET", "/case/a", 403),
        ("GET", "/mixed/a", 200),
        ("POST", "/mixed/a", 403),
        ("DELETE", "/mixed/a", 200),
    ];
    for (method, path, status) in rows {
        let before = backend.seen().len();
        let response = browser
            .client
            .request(method.parse().unwrap(), router.url(path))
            .header("x-csrf-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), *status, "{method} {path}");
        let reached = backend.seen().len() > before;
        assert_eq!(reached, *status == 200, "{method} {path}: backend reached = {reached}");
        if *status == 403 {
            assert!(response.text().await.unwrap().contains("required scopes"));
        }
    }
}

#[tokio::test]
async fn csrf_token_is_required_for_state_changing_requests() {
    let (dev, backend, router, browser) = setup().await;
    let token = fetch_token(&browser, &router).await;
    assert_eq!(
        fetch_token(&browser, &router).await,
        token,
        "repeated fetches give the same token"
    );

    let post = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let mut request = browser.client.post(router.url(path)).body("x");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let ok = post(vec![("x-csrf-token", token.clone())], "/api/ok").await.unwrap();
    assert_eq!(ok.status(), 200);
    let seen = backend.seen();
    assert!(
        seen.last().unwrap().headers.get("x-csrf-token").is_none(),
        "token removed before the backend"
    );

    // Name, request headers, path.
    type Row<'a> = (&'a str, Vec<(&'static str, String)>, &'static str);
    let rows: Vec<Row<'_>> = vec![
        ("missing", vec![], "/api/a"),
        ("wrong", vec![("x-csrf-token", "nope".into())], "/api/a"),
        ("query string only", vec![], "/api/a?x-csrf-token=TOKEN"),
        (
            "Origin null",
            vec![("x-csrf-token", token.clone()), ("origin", "null".into())],
            "/api/a",
        ),
        (
            "foreign Origin",
            vec![
                ("x-csrf-token", token.clone()),
                ("origin", "https://evil.example".into()),
            ],
            "/api/a",
        ),
        (
            "cross-site fetch",
            vec![("x-csrf-token", token.clone()), ("sec-fetch-site", "cross-site".into())],
            "/api/a",
        ),
    ];
    for (case, headers, path) in rows {
        let path: &'static str = if path.contains("TOKEN") {
            Box::leak(path.replace("TOKEN", &token).into_boxed_str())
        } else {
            path
        };
        let before = backend.seen().len();
        let response = post(headers, path).await.unwrap();
        assert_eq!(response.status(), 403, "{case}");
        assert_eq!(response.headers()["x-csrf-token"], "Required", "{case}");
        assert_eq!(backend.seen().len(), before, "{case}: backend not reached");
    }

    // A GET with a method override header counts as state-changing.
    let overridden = browser
        .client
        .get(router.url("/api/o"))
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), 403);

    // The token of another session is worthless here.
    let other = Browser::new(&dev);
    let (response, _) = other.navigate(&router.url("/api/login")).await;
    assert_eq!(response.status(), 200);
    let other_token = fetch_token(&other, &router).await;
    assert_ne!(other_token, token);
    let cross = post(vec![("x-csrf-token", other_token)], "/api/a").await.unwrap();
    assert_eq!(cross.status(), 403);

    // Routes with csrfProtection false pass.
    let free = post(vec![], "/nocsrf/a").await.unwrap();
    assert_eq!(free.status(), 200);
}

#[tokio::test]
async fn logout_ends_the_session_calls_the_backend_and_redirects_to_the_idp() {
    let (dev, backend, router, browser) = setup().await;
    let response = browser.client.get(router.url("/logout?siteId=3")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/logout.do?", dev.url())), "{location}");
    assert_eq!(param(&location, "client_id"), Some(dev.client_id()));
    assert_eq!(param(&location, "redirect"), Some(router.url("/bye.html?siteId=3")));
    let deletion = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        deletion.starts_with("JSESSIONID=;") && deletion.contains("Max-Age=0"),
        "{deletion}"
    );

    let call = backend.next_matching(|seen| seen.uri == "/backend-logout").await;
    assert_eq!(call.method, "POST");
    assert!(call.headers["authorization"].to_str().unwrap().starts_with("Bearer "));
    assert!(call
        .headers
        .get("cookie")
        .is_none_or(|c| !c.to_str().unwrap().contains("JSESSIONID")));

    // The old session no longer works.
    let after = browser
        .client
        .get(router.url("/api/after"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn user_api_answers_from_the_session() {
    let (_dev, _backend, router, browser) = setup().await;
    let current: serde_json::Value = browser
        .client
        .get(router.url("/user-api/currentUser"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["name"], "jane.doe");
    assert!(current["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "approuter-dev!t1.Display"));
    assert!(current["displayName"].as_str().unwrap().contains('('));
    let response = browser
        .client
        .get(router.url("/user-api/attributes"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-cache, no-store");
    let attributes: serde_json::Value = response.json().await.unwrap();
    assert_eq!(attributes["name"], "jane.doe");
    assert!(attributes.get("user_attributes").is_none());
    let unknown = browser.client.get(router.url("/user-api/other")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn basic_routes_use_the_password_grant() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(&dev, &dev.credentials())
        .start()
        .await;
    let client = support::client();
    let challenge = client.get(router.url("/basic/x")).send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    assert!(challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));
    let wrong = client
        .get(router.url("/basic/x"))
        .basic_auth("jane.doe", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(backend.seen().is_empty());
    let ok = client
        .get(router.url("/basic/x"))
        .basic_auth("jane.doe", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["set-cookie"].to_str().unwrap().starts_with("JSESSIONID="));
    let seen = backend.seen();
    let auth = seen.last().unwrap().headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("Bearer "),
        "the Basic credentials never reach the backend: {auth}"
    );
    assert_eq!(dev.last_token_request().unwrap().form["grant_type"], "password");
}

#[tokio::test]
async fn identity_provider_hints_reach_the_authorize_url() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url()}]))
        .xsuaa(&dev, &dev.credentials())
        .env("PRESERVE_FRAGMENT", "false")
        .start()
        .await;
    let client = support::client();
    let location = |response: reqwest::Response| response.headers()["location"].to_str().unwrap().to_string();
    let fixed = location(client.get(router.url("/idp/x")).send().await.unwrap());
    assert_eq!(param(&fixed, "idp").as_deref(), Some("corp-ids"));
    let dynamic = location(
        client
            .get(router.url("/dynidp/x?sap_idp=other-ids"))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(param(&dynamic, "idp").as_deref(), Some("other-ids"));
    let ignored = location(client.get(router.url("/api/x?sap_idp=other-ids")).send().await.unwrap());
    assert_eq!(
        param(&ignored, "idp"),
        None,
        "sap_idp only counts on dynamicIdentityProvider routes"
    );
}

#[tokio::test]
async fn backend_session_cookies_stay_on_the_server() {
    let (_dev, backend, router, browser) = setup().await;
    let response = browser.client.get(router.url("/api/cookie")).send().await.unwrap();
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(cookies.iter().any(|c| c.starts_with("BPERSIST=")), "{cookies:?}");
    assert!(!cookies.iter().any(|c| c.starts_with("BSESSION=")), "{cookies:?}");
    browser.client.get(router.url("/api/next")).send().await.unwrap();
    let seen = backend.seen();
    let cookie = seen.last().unwrap().headers["cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("BSESSION=backend-session-1"), "{cookie}");
    assert!(!cookie.contains("JSESSIONID"), "{cookie}");
}

#[tokio::test]
async fn decoded_paths_cannot_reach_protected_routes_through_public_ones() {
    let (_dev, backend, router, _browser) = setup().await;
    let client = support::client();
    // (`/public/%2e%2e/…` is normalised by the client library itself, so it is covered by unit tests.)
    for path in ["/public%2F..%2Fapi/x", "/public/..%2Fapi/x", "/public/%252e%252e/api/x"] {
        let before = backend.seen().len();
        let response = client.get(router.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(backend.seen().len(), before, "{path}");
    }
}
