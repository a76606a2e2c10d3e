//! Routes to destinations of the Destination service, end to end: the router finds them at the
//! development Destination service with tokens from the development XSUAA over mutual TLS, and a
//! real backend on loopback shows what each authentication type sends.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::idp::Browser;
use support::{backend, client, gateway, Backend, Gateway};
use xsuaa_dev::{DevXsuaa, ServiceKind};

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/svc/no-auth/(.*)$", "target": "/$1", "destination": "no-auth", "authenticationType": "none"},
            {"source": "^/svc/basic/(.*)$", "target": "/$1", "destination": "basic", "authenticationType": "none"},
            {"source": "^/svc/oauth-cc/(.*)$", "target": "/$1", "destination": "oauth-cc", "authenticationType": "none"},
            {"source": "^/svc/token-error/(.*)$", "target": "/$1", "destination": "token-error", "authenticationType": "none"},
            {"source": "^/svc/missing/(.*)$", "target": "/$1", "destination": "missing", "authenticationType": "none"},
            {"source": "^/svc/unsupported/(.*)$", "target": "/$1", "destination": "unsupported", "authenticationType": "none"},
            {"source": "^/dyn/([^/]+)/(.*)$", "target": "/$2", "destination": "$1", "authenticationType": "none"},
            {"source": "^/host/(.*)$", "target": "/$1", "destination": "*", "authenticationType": "none"},
            {"source": "^/env/(.*)$", "target": "/$1", "destination": "env-backend", "authenticationType": "none"},
            {"source": "^/user/exchange/(.*)$", "target": "/$1", "destination": "user-exchange"},
            {"source": "^/user/no-auth/(.*)$", "target": "/$1", "destination": "no-auth-forward"},
            {"source": "^/local/(.*)$", "target": "/$1", "destination": "user-exchange", "preferLocal": true}
        ]
    })
}

/// The development XSUAA serving destinations to `backend`, one per authentication type.
async fn services_to(backend: &Backend) -> DevXsuaa {
    let url = backend.url();
    let oauth = [("clientId", "sb-backend!t1"), ("clientSecret", "backend-secret")];
    let with = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut all = vec![
            ("URL".to_string(), url.clone()),
            ("ProxyType".into(), "Internet".into()),
        ];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    };
    DevXsuaa::builder()
        .destination(
            "no-auth",
            with(&[
                ("Authentication", "NoAuthentication"),
                ("HTML5.DynamicDestination", "true"),
                ("URL.headers.x-api-key", "k-123"),
                ("sap-client", "100"),
            ]),
        )
        .destination(
            "no-auth-forward",
            with(&[
                ("Authentication", "NoAuthentication"),
                ("HTML5.ForwardAuthToken", "true"),
            ]),
        )
        .destination(
            "basic",
            with(&[
                ("Authentication", "BasicAuthentication"),
                ("User", "alice"),
                ("Password", "wonderland"),
            ]),
        )
        .destination(
            "oauth-cc",
            with(&[("Authentication", "OAuth2ClientCredentials"), oauth[0], oauth[1]]),
        )
        .destination(
            "user-exchange",
            with(&[("Authentication", "OAuth2UserTokenExchange"), oauth[0], oauth[1]]),
        )
        .destination(
            "token-error",
            with(&[
                ("Authentication", "OAuth2ClientCredentials"),
                oauth[0],
                oauth[1],
                ("tokenServiceURL", "https://token.invalid/oauth/token"),
            ]),
        )
        .destination("unsupported", with(&[("Authentication", "KerberosMagic")]))
        .start()
        .await
        .expect("development XSUAA")
}

async fn router(dev: &DevXsuaa, backend: &Backend, extra: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(app())
        .services(dev, &dev.credentials())
        .destinations(&[("env-backend", &backend.url())])
        .env("DESTINATION_HOST_PATTERN", r"^([a-z-]+)\.dest\.example(:\d+)?$");
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

/// A lookup of `user-exchange` for the user with the login token `token`.
fn exchange(token: &str) -> approuter::destination::Find<'_> {
    approuter::destination::Find {
        name: "user-exchange",
        dynamic: false,
        user: Some(token),
        tenant: None,
        prefer_local: false,
        correlation_id: "test",
    }
}

async fn get(router: &Gateway, path: &str) -> reqwest::Response {
    client().get(router.url(path)).send().await.expect("request")
}

#[tokio::test]
async fn each_authentication_type_sends_the_backend_what_the_service_says() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;

    // (path, expected Authorization: None = absent, Some(prefix))
    let table: [(&str, Option<&str>); 3] = [
        ("/svc/no-auth/a?x=1", None),
        ("/svc/basic/a", Some("Basic YWxpY2U6d29uZGVybGFuZA==")),
        ("/svc/oauth-cc/a", Some("Bearer ")),
    ];
    for (path, authorization) in table {
        let response = client()
            .get(router.url(path))
            .header("authorization", "Basic c3Bvb2Y6c3Bvb2Y=")
            .header("proxy-authorization", "Bearer from-the-client")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let seen = backend.seen().pop().expect("backend reached");
        assert!(seen.uri.starts_with("/a"), "{path}: {}", seen.uri);
        assert!(seen.headers.get("proxy-authorization").is_none(), "{path}");
        match authorization {
            None => assert_eq!(
                seen.headers.get("authorization").map(|v| v.to_str().unwrap()),
                Some("Basic c3Bvb2Y6c3Bvb2Y="),
                "{path}: a public route's client Authorization passes when the destination sets none"
            ),
            Some(prefix) => {
                let sent = seen.headers["authorization"].to_str().unwrap();
                assert!(sent.starts_with(prefix), "{path}: {sent}");
            }
        }
    }
    // URL.headers.* and sap-client of `no-auth`.
    let seen = &backend.seen()[0];
    assert_eq!(seen.headers["x-api-key"], "k-123");
    assert_eq!(seen.headers["sap-client"], "100");
    // The client-credentials token is the destination's client's.
    let last = backend.seen().pop().expect("oauth-cc");
    let token = support::bearer_claims(last.headers["authorization"].to_str().unwrap());
    assert_eq!(token["cid"], "sb-backend!t1");
    assert_eq!(token["grant_type"], "client_credentials");
}

#[tokio::test]
async fn a_client_value_of_a_url_header_wins() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let response = client()
        .get(router.url("/svc/no-auth/a"))
        .header("x-api-key", "mine")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(backend.seen()[0].headers["x-api-key"], "mine");
}

#[tokio::test]
async fn failures_of_the_destination_are_clean_gateway_errors() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    for (path, status) in [
        ("/svc/token-error/a", 502),
        ("/svc/missing/a", 502),
        ("/svc/unsupported/a", 502),
    ] {
        let response = get(&router, path).await;
        assert_eq!(response.status(), status, "{path}");
        let body = response.text().await.expect("body");
        assert!(
            !body.contains("token.invalid") && !body.contains("Kerberos"),
            "{path}: {body}"
        );
    }
    assert!(backend.seen().is_empty(), "nothing reached the backend");
    // Nothing is cached from a failure: each request asks again.
    get(&router, "/svc/missing/a").await;
    assert_eq!(dev.destination_lookups("missing"), 2);
    // Environment destinations are untouched.
    assert_eq!(get(&router, "/env/a").await.status(), 200);
    let metrics = router.state.metrics.encode();
    assert!(
        metrics.contains(r#"approuter_destination_lookups_total{outcome="not_found"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_wrong_client_certificate_for_the_destination_binding_fails_cleanly() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    // A certificate of the CA, but accepted for no client.
    let foreign = dev.foreign_client_cert();
    let destination = dev
        .service_credentials_with(ServiceKind::Destination, &foreign)
        .expect("credentials");
    let connectivity = dev.service_credentials(ServiceKind::Connectivity).expect("credentials");
    let router = gateway(app())
        .services_with(&dev, &dev.credentials(), &destination, &connectivity)
        .destinations(&[("env-backend", &backend.url())])
        .env("DESTINATION_HOST_PATTERN", r"^([a-z-]+)\.dest\.example$")
        .start()
        .await;
    assert_eq!(get(&router, "/svc/no-auth/a").await.status(), 502);
    assert_eq!(dev.destination_lookups("no-auth"), 0, "no token, no lookup");
    assert_eq!(get(&router, "/env/a").await.status(), 200);
    let readiness = approuter::server::admin::readiness(&router.state).await;
    assert!(!readiness.ready, "{readiness:?}");
    let check = readiness
        .checks
        .iter()
        .find(|(name, _, _)| *name == "destination_service")
        .expect("a destination_service check");
    assert!(!check.1 && check.2.contains("token"), "{check:?}");
}

#[tokio::test]
async fn readiness_reports_the_destination_service() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let readiness = approuter::server::admin::readiness(&router.state).await;
    assert!(readiness.ready, "{readiness:?}");
    assert!(
        readiness
            .checks
            .iter()
            .any(|(name, ok, _)| *name == "destination_service" && *ok),
        "{readiness:?}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_first_requests_make_one_lookup() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let client = client();
    let mut requests = Vec::new();
    for _ in 0..100 {
        let request = client.get(router.url("/svc/basic/a")).send();
        requests.push(tokio::spawn(request));
    }
    for request in requests {
        assert_eq!(request.await.expect("joined").expect("response").status(), 200);
    }
    assert_eq!(dev.destination_lookups("basic"), 1);
    for _ in 0..20 {
        assert_eq!(get(&router, "/svc/basic/a").await.status(), 200);
    }
    assert_eq!(dev.destination_lookups("basic"), 1, "served from the cache");
}

#[tokio::test]
async fn dynamic_names_need_html5_dynamic_destination_on_every_path() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    // `no-auth` allows it; `basic` does not, even once a static route has cached it.
    assert_eq!(get(&router, "/dyn/no-auth/a").await.status(), 200);
    assert_eq!(get(&router, "/dyn/basic/a").await.status(), 404);
    assert_eq!(get(&router, "/svc/basic/a").await.status(), 200);
    assert_eq!(get(&router, "/dyn/basic/a").await.status(), 404);
    // An unknown name is no route; an environment destination needs no property.
    assert_eq!(get(&router, "/dyn/nowhere/a").await.status(), 404);
    assert_eq!(get(&router, "/dyn/env-backend/a").await.status(), 200);
    let uris: Vec<String> = backend.seen().into_iter().map(|seen| seen.uri).collect();
    assert_eq!(uris, ["/a", "/a", "/a"]);
}

#[tokio::test]
async fn the_host_names_the_destination_of_a_star_route() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let on_host = |host: &'static str| client().get(router.url("/host/a")).header("host", host).send();
    assert_eq!(on_host("no-auth.dest.example").await.expect("sent").status(), 200);
    assert_eq!(on_host("basic.dest.example").await.expect("sent").status(), 404);
    assert_eq!(on_host("env-backend.dest.example").await.expect("sent").status(), 200);
    assert_eq!(on_host("elsewhere.example").await.expect("sent").status(), 404);
    assert_eq!(backend.seen().len(), 2);
}

#[tokio::test]
async fn a_logged_in_user_gets_the_exchanged_token_and_forwarded_login_token() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);

    let (response, visited) = browser.navigate(&router.url("/user/exchange/orders")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let seen = backend.seen().pop().expect("backend reached");
    assert_eq!(seen.uri, "/orders");
    let exchanged = support::bearer_claims(seen.headers["authorization"].to_str().unwrap());
    assert_eq!(exchanged["cid"], "sb-backend!t1", "issued to the destination's client");
    assert!(exchanged["user_name"].is_string(), "{exchanged}");
    assert_eq!(dev.destination_lookups("user-exchange"), 1);

    // HTML5.ForwardAuthToken sends the login token itself.
    let response = browser
        .client
        .get(router.url("/user/no-auth/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let seen = backend.seen().pop().expect("backend reached");
    let login = support::bearer_claims(seen.headers["authorization"].to_str().unwrap());
    assert_eq!(login["cid"], dev.client_id());

    // A second request of the same user finds nothing again.
    let response = browser
        .client
        .get(router.url("/user/exchange/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(dev.destination_lookups("user-exchange"), 1);
}

#[tokio::test]
async fn a_changed_destination_is_seen_after_the_ttl() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[("DESTINATION_CACHE_TTL", "1")]).await;
    assert_eq!(get(&router, "/svc/basic/a").await.status(), 200);
    assert_eq!(get(&router, "/svc/basic/a").await.status(), 200);
    assert_eq!(dev.destination_lookups("basic"), 1);
    // The entry expires within the TTL: wait for the next lookup, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dev.destination_lookups("basic") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the cache never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(get(&router, "/svc/basic/a").await.status(), 200);
    }
}

#[tokio::test]
async fn start_up_names_a_service_destination_without_a_binding() {
    let (_dir, config) = gateway(json!({"routes": [
        {"source": "^/(.*)$", "destination": "erp", "authenticationType": "none"}
    ]}))
    .config();
    let errors = config.expect_err("no destination service").to_string();
    assert!(errors.contains("routes[0].destination"), "{errors}");
    assert!(
        errors.contains("\"erp\"") && errors.contains("no destination service is bound"),
        "{errors}"
    );

    let (_dir, config) = gateway(json!({"routes": [
        {"source": "^/(.*)$", "destination": "*", "authenticationType": "none"}
    ]}))
    .config();
    let errors = config.expect_err("no host pattern").to_string();
    assert!(errors.contains("DESTINATION_HOST_PATTERN"), "{errors}");
}

#[tokio::test]
async fn a_thousand_lookups_of_different_users_reuse_the_token_connections() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let services = router.state.destinations.clone().expect("destination services");
    let handshakes_before = dev.stats().certurl_tls_handshakes;
    const CONCURRENCY: usize = 8;
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let services = services.clone();
        let tokens: Vec<String> = (0..1000 / CONCURRENCY)
            .map(|i| dev.mint_token(dev.user_token_claims(&xsuaa_dev::User::new(&format!("user-{worker}-{i}")))))
            .collect();
        workers.push(tokio::spawn(async move {
            for token in tokens {
                services
                    .resolve(exchange(&token))
                    .await
                    .expect("found with the exchanged token");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("joined");
    }
    assert_eq!(dev.destination_lookups("user-exchange"), 1000);
    let handshakes = dev.stats().certurl_tls_handshakes - handshakes_before;
    // One exchange per user over pooled connections: at most one handshake per concurrent caller.
    assert!(
        handshakes <= CONCURRENCY as u64,
        "{handshakes} handshakes for 1000 exchanges"
    );
    let metrics = router.state.metrics.encode();
    assert!(
        metrics.contains(r#"approuter_token_requests_total{grant="service_jwt_bearer",outcome="ok"} 1000"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_destination_binding_certificate_rotates_under_load() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let root = tempfile::tempdir().expect("temp dir");
    dev.write_binding_dir(root.path(), "xsuaa", &dev.credentials())
        .expect("xsuaa binding");
    let first = dev.service_credentials(ServiceKind::Destination).expect("credentials");
    dev.write_service_binding_dir(root.path(), ServiceKind::Destination, &first)
        .expect("destination binding");
    let ca = root.path().join("ca.pem");
    std::fs::write(&ca, dev.ca_pem()).expect("ca");
    let router = gateway(app())
        .env("SERVICE_BINDING_ROOT", root.path().join("").display().to_string())
        .env("XS_CACERT_PATH", ca.display().to_string())
        .env("BINDING_POLL_INTERVAL_MS", "50")
        .env("DESTINATION_HOST_PATTERN", r"^([a-z-]+)\.dest\.example$")
        .destinations(&[("env-backend", &backend.url())])
        .start()
        .await;
    let services = router.state.destinations.clone().expect("destination services");
    let presented = || {
        dev.last_token_request()
            .and_then(|record| record.client_cert_fingerprint)
            .unwrap_or_default()
    };
    let user_token = |name: String| dev.mint_token(dev.user_token_claims(&xsuaa_dev::User::new(&name)));
    services
        .resolve(exchange(&user_token("first".into())))
        .await
        .expect("found before the rotation");
    let old = presented();
    assert!(!old.is_empty(), "the token request presented the binding's certificate");

    // Load: four callers, each user new, so every call asks the token endpoint.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (services, stop) = (services.clone(), stop.clone());
        let tokens: Vec<String> = (0..400).map(|i| user_token(format!("load-{worker}-{i}"))).collect();
        load.push(tokio::spawn(async move {
            let mut done = 0;
            for token in tokens {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                services
                    .resolve(exchange(&token))
                    .await
                    .expect("no request fails during the rotation");
                done += 1;
            }
            done
        }));
    }
    let rotated = dev
        .issue_service_client_cert(ServiceKind::Destination, xsuaa_dev::ClientCertOpts::default())
        .expect("new certificate");
    let second = dev
        .service_credentials_with(ServiceKind::Destination, &rotated)
        .expect("credentials");
    dev.write_service_binding_dir(root.path(), ServiceKind::Destination, &second)
        .expect("rewrite the binding");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while presented() != rotated.sha256_fingerprint {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never presented"
        );
        services
            .resolve(exchange(&user_token(format!("probe-{}", presented()))))
            .await
            .expect("found during the rotation");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut done = 0;
    for worker in load {
        done += worker.await.expect("no load caller failed");
    }
    assert!(done > 0, "the load ran");
    assert_ne!(old, rotated.sha256_fingerprint);
}

#[tokio::test]
async fn prefer_local_finds_with_the_provider_token_and_the_user_as_x_user_token() {
    let backend = backend().await;
    let dev = services_to(&backend).await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);
    // The find carries the binding's client-credentials token; the stand-in can exchange the
    // user's token for the destination only because it also gets `X-user-token`.
    let (response, visited) = browser.navigate(&router.url("/local/orders")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let seen = backend.seen().pop().expect("backend reached");
    let exchanged = support::bearer_claims(seen.headers["authorization"].to_str().unwrap());
    assert_eq!(exchanged["cid"], "sb-backend!t1");
    assert!(exchanged["user_name"].is_string(), "{exchanged}");
    assert_eq!(dev.destination_lookups("user-exchange"), 1);
}
