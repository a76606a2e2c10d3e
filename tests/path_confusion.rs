//! The route table, the scope check and the backend see one path: a request that a protected route
//! would take never reaches the backend through a public route by another spelling of its path
//! (repeated slashes, encoded unreserved characters, absolute-form, HTTP/2, a query string).

mod support;

use serde_json::json;
use support::idp::dev_xsuaa;
use support::raw;
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

/// A protected area and a public catch-all after it: the table shape the bypass needs.
fn app() -> serde_json::Value {
    json!({
        "routes": [
            {"source": "^/admin/(.*)$", "destination": "backend"},
            {"source": "^/secret$", "destination": "backend"},
            {"source": "^/report\\?public=1$", "destination": "backend", "authenticationType": "none"},
            {"source": "^/report$", "destination": "backend"},
            {"source": "^/up/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/(.*)$", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

async fn setup(env: &[(&str, &str)]) -> (DevXsuaa, Backend, Gateway) {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut builder = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url()}]))
        .xsuaa(&dev, &dev.credentials());
    for (name, value) in env {
        builder = builder.env(name, *value);
    }
    (dev, backend, builder.start().await)
}

/// Sends one raw request (the target exactly as written) and returns its status. An API call, so
/// that a request that needs a login gets 401 (a navigation gets the login page).
async fn status(router: &Gateway, target: &str) -> u16 {
    let request = raw::request("GET", target, &[("x-requested-with", "XMLHttpRequest")]);
    raw::exchange(router.addr, &request).await.status
}

/// What the backend received, in order, up to a marker request sent last: every request sent
/// before the marker has been answered, so nothing is still on its way.
async fn received(router: &Gateway, backend: &Backend) -> Vec<String> {
    assert_eq!(status(router, "/marker").await, 200);
    backend.next_matching(|seen| seen.uri == "/marker").await;
    backend
        .seen()
        .into_iter()
        .map(|seen| seen.uri)
        .filter(|uri| uri != "/marker")
        .collect()
}

#[tokio::test]
async fn other_spellings_of_a_protected_path_need_a_login() {
    let (_dev, backend, router) = setup(&[]).await;
    for target in [
        "/admin/x",
        "//admin/x",
        "///admin/x",
        "/admin//x",
        "/%61dmin/x",
        "/%61%64%6D%69%6E/x",
        "//%61dmin/x",
        "http://localhost//admin/x",
        "http://localhost/%61dmin/x",
        "/secret?x=1",
        "/secret?",
        "//secret?x=1",
        "/report?public=0",
    ] {
        assert_eq!(
            status(&router, target).await,
            401,
            "{target}: not refused for want of a login"
        );
    }
    // HTTP/2 carries the path in `:path`; the same rule holds.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    for path in ["//admin/x", "/%61dmin/x", "/secret?x=1"] {
        let response = h2
            .get(router.url(path))
            .header("x-requested-with", "XMLHttpRequest")
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 401, "h2 {path}");
    }
    assert_eq!(
        received(&router, &backend).await,
        Vec::<String>::new(),
        "nothing reached the backend"
    );
}

#[tokio::test]
async fn encodings_that_hide_a_path_are_refused() {
    let (_dev, backend, router) = setup(&[]).await;
    for target in [
        "/%2561dmin/x",
        "/%252561dmin/x",
        "/%%36%31dmin/x",
        "/admin%2Fx",
        "/public/a%2fb",
        "/%2F%2Fadmin/x",
    ] {
        assert_eq!(status(&router, target).await, 400, "{target}");
    }
    assert_eq!(
        received(&router, &backend).await,
        Vec::<String>::new(),
        "nothing reached the backend"
    );
}

#[tokio::test]
async fn the_backend_gets_the_path_the_routes_matched() {
    let (_dev, backend, router) = setup(&[]).await;
    for target in [
        "//pub///a//b",
        "/%70ub/%7Ex",
        "/up//x?q=1",
        "/up/%2Fx",
        "/report?public=1",
        "/caf%C3%A9/a%20b;p=1",
    ] {
        let status = status(&router, target).await;
        assert!(status == 200 || status == 400, "{target}: {status}");
    }
    assert_eq!(
        received(&router, &backend).await,
        // `/up/%2Fx` is refused (an encoded slash); the rest arrive in their one form, the
        // public route that matches on its query included.
        [
            "/pub/a/b",
            "/pub/~x",
            "/x?q=1",
            "/report?public=1",
            "/caf%C3%A9/a%20b;p=1"
        ]
    );
}

#[tokio::test]
async fn encoded_slashes_pass_encoded_when_allowed() {
    let (_dev, backend, router) = setup(&[("ALLOW_ENCODED_SLASH", "true")]).await;
    assert_eq!(status(&router, "/files/a%2Fb//c").await, 200);
    // Nested encodings stay refused.
    assert_eq!(status(&router, "/files/a%252Fb").await, 400);
    assert_eq!(received(&router, &backend).await, ["/files/a%2Fb/c"]);
}
