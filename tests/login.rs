//! Login with the development XSUAA: the authorization-code flow with state and PKCE, the code
//! exchange over mutual TLS, sessions, and bearer forwarding — against real servers on loopback.

mod support;

use serde_json::json;
use support::idp::{dev_xsuaa, param, Browser};
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

fn app() -> serde_json::Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

async fn router(dev: &DevXsuaa, credentials: &serde_json::Value, backend: &Backend, extra: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(dev, credentials);
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

#[tokio::test]
async fn full_login_over_mtls_forwards_a_valid_bearer_token() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &dev.credentials(), &backend, &[]).await;
    let browser = Browser::new(&dev);

    let (response, visited) = browser.navigate(&router.url("/api/orders?top=5")).await;
    assert_eq!(response.status(), 200, "visited {visited:?}");
    // router page -> authorize -> callback -> original URL
    assert!(
        visited[1].starts_with(&format!("{}/oauth/authorize?", dev.url())),
        "{visited:?}"
    );
    assert_eq!(param(&visited[1], "code_challenge_method").as_deref(), Some("S256"));
    assert!(param(&visited[1], "state").is_some_and(|s| s.len() >= 43));
    assert_eq!(
        param(&visited[1], "redirect_uri").as_deref(),
        Some(router.url("/login/callback").as_str())
    );
    assert!(visited[2].starts_with(&router.url("/login/callback?")));
    assert_eq!(visited.last().unwrap(), &router.url("/api/orders?top=5"));

    let seen = backend.seen();
    let last = seen.last().expect("backend reached");
    assert_eq!(last.uri, "/orders?top=5");
    let bearer = last.headers["authorization"].to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").expect("bearer token");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    assert!(last
        .headers
        .get("cookie")
        .is_none_or(|c| !c.to_str().unwrap().contains("JSESSIONID")));

    // The code was exchanged at certurl with the client certificate, and without a secret.
    let record = dev.last_token_request().expect("token request");
    assert_eq!(record.listener, "certurl");
    assert!(record.client_cert_fingerprint.is_some());
    assert!(!record.form.contains_key("client_secret"));
    assert_eq!(
        record.form.get("grant_type").map(String::as_str),
        Some("authorization_code")
    );

    // The session is used for later requests without another login.
    let authorizes = dev.stats().authorize_requests;
    let again = browser.client.get(router.url("/api/again")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(dev.stats().authorize_requests, authorizes);
}

#[tokio::test]
async fn api_calls_without_session_get_401_and_navigation_gets_the_login() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &dev.credentials(), &backend, &[("PRESERVE_FRAGMENT", "false")]).await;
    let client = support::client();

    let xhr = client
        .get(router.url("/api/x"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(xhr.status(), 401);
    let post = client.post(router.url("/api/x")).body("data").send().await.unwrap();
    assert_eq!(post.status(), 401, "a POST is never turned into a redirect");
    let fetch = client
        .get(router.url("/api/x"))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(fetch.status(), 401);

    let navigation = client.get(router.url("/api/x")).send().await.unwrap();
    assert_eq!(navigation.status(), 302);
    let location = navigation.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&format!("{}/oauth/authorize?", dev.url())));
    let cookie = navigation.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("JSESSIONID_STATE="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(backend.seen().is_empty(), "nothing reached the backend");

    let public = client.get(router.url("/open/x")).send().await.unwrap();
    assert_eq!(public.status(), 200);
}

#[tokio::test]
async fn secret_binding_logs_in_at_url_with_the_secret() {
    let dev = DevXsuaa::builder().client_secret("s3cret").start().await.unwrap();
    let backend = backend().await;
    let router = router(&dev, &dev.secret_credentials().unwrap(), &backend, &[]).await;
    let browser = Browser::new(&dev);
    let (response, _) = browser.navigate(&router.url("/api/me")).await;
    assert_eq!(response.status(), 200);
    let record = dev.last_token_request().expect("token request");
    assert_eq!(record.listener, "url");
    assert_eq!(record.form.get("client_secret").map(String::as_str), Some("s3cret"));
    assert!(backend.seen().last().unwrap().headers.contains_key("authorization"));
}

#[tokio::test]
async fn kubernetes_binding_files_work() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let root = tempfile::tempdir().unwrap();
    dev.write_binding_dir(root.path(), "my-xsuaa", &dev.credentials())
        .unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    std::fs::write(ca_dir.path().join("ca.pem"), dev.ca_pem()).unwrap();
    let router = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .env("SERVICE_BINDING_ROOT", root.path().display().to_string())
        .env("XS_CACERT_PATH", ca_dir.path().join("ca.pem").display().to_string())
        .keep(root)
        .keep(ca_dir)
        .start()
        .await;
    let browser = Browser::new(&dev);
    let (response, _) = browser.navigate(&router.url("/api/k8s")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(dev.last_token_request().unwrap().listener, "certurl");
}

#[tokio::test]
async fn the_mtls_path_is_proven_a_foreign_or_revoked_certificate_fails_cleanly() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    for (case, credentials) in [
        ("foreign CA", dev.credentials_with(&dev.foreign_client_cert())),
        ("expired", {
            let now = std::time::SystemTime::now();
            dev.credentials_with(&dev.issue_client_cert(xsuaa_dev::ClientCertOpts {
                not_before: now - std::time::Duration::from_secs(7200),
                not_after: now - std::time::Duration::from_secs(3600),
                ..Default::default()
            }))
        }),
        ("revoked", {
            let cert = dev.issue_client_cert(Default::default());
            dev.revoke_client_cert(&cert.sha256_fingerprint);
            dev.credentials_with(&cert)
        }),
    ] {
        let router = router(&dev, &credentials, &backend, &[]).await;
        let browser = Browser::new(&dev);
        let (response, visited) = browser.navigate(&router.url("/api/x")).await;
        assert_eq!(response.status(), 502, "{case}: {visited:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("could not be completed"), "{case}: {text}");
        assert!(
            !text.contains("certificate"),
            "{case}: no internals in the page: {text}"
        );
    }
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn the_session_is_found_and_kept_from_the_backend_beside_cookies_that_are_not_ascii() {
    // Browsers send every cookie of the site in one header: another application's cookie with a
    // UTF-8 value must neither hide the session from the router nor carry it to the backend.
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &dev.credentials(), &backend, &[]).await;
    let browser = Browser::new(&dev);
    let (response, visited) = browser.navigate(&router.url("/api/first")).await;
    assert_eq!(response.status(), 200, "visited {visited:?}");
    let session = browser.cookie(&router.url("/"), "JSESSIONID").expect("session cookie");
    let mut header = b"lang=caf\xc3\xa9; JSESSIONID=".to_vec();
    header.extend_from_slice(session.as_bytes());
    header.extend_from_slice(b"; theme=dark");
    let cookie = reqwest::header::HeaderValue::from_bytes(&header).unwrap();
    let plain = support::client();
    for path in ["/api/orders", "/open/orders"] {
        let response = plain
            .get(router.url(path))
            .header("accept", "application/json")
            .header("cookie", cookie.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let seen = backend.seen();
        let last = seen.last().expect("backend reached");
        assert_eq!(last.uri, "/orders", "{path}");
        assert_eq!(
            last.headers.get("cookie").map(|value| value.as_bytes()),
            Some(&b"lang=caf\xc3\xa9; theme=dark"[..]),
            "{path}"
        );
    }
    // The protected route forwarded the session's token: the session was recognised.
    let seen = backend.seen();
    let protected = &seen[seen.len() - 2];
    assert!(protected
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer ")));
}
