//! Service-to-approuter: `x-approuter-authorization: Bearer <jwt>` serves a request as the token's
//! user without a session, through the router, with tokens of the development XSUAA and a real
//! backend; single-tenant and under multitenancy.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::idp::Browser;
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::{DevXsuaa, User};

const HEADER: &str = "x-approuter-authorization";

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/display/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Display"},
            {"source": "^/admin/(.*)$", "target": "/$1", "destination": "backend", "scope": "$XSAPPNAME.Admin"},
            {"source": "^/erp/(.*)$", "target": "/$1", "destination": "erp"},
            {"source": "^/user-api(.*)$", "target": "$1", "service": "sap-approuter-userapi"}
        ]
    })
}

async fn setup() -> (DevXsuaa, Backend, Gateway) {
    let dev = support::idp::dev_xsuaa().await;
    let backend = backend().await;
    let router = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .services(&dev, &dev.credentials())
        .start()
        .await;
    (dev, backend, router)
}

fn user_claims(dev: &DevXsuaa) -> Value {
    dev.user_token_claims(&User::new("jane.doe"))
}

/// `claims` with `changes` laid over them.
fn with(mut claims: Value, changes: Value) -> Value {
    if let (Some(claims), Value::Object(changes)) = (claims.as_object_mut(), changes) {
        claims.extend(changes);
    }
    claims
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn call(router: &Gateway, method: &str, path: &str, value: &str) -> reqwest::Response {
    support::client()
        .request(method.parse().expect("method"), router.url(path))
        .header(HEADER, value)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_token_serves_its_user_without_a_session() {
    let (dev, backend, router) = setup().await;
    let token = dev.mint_token(user_claims(&dev));
    let bearer = format!("Bearer {token}");

    let response = call(&router, "GET", "/display/orders", &bearer).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none(), "no session cookie");
    let seen = backend.seen().pop().expect("the backend was reached");
    assert_eq!(seen.uri, "/orders");
    assert_eq!(seen.headers["authorization"], bearer.as_str(), "forwardAuthToken");
    assert!(seen.headers.get(HEADER).is_none());

    // State-changing requests need no CSRF token, and no same-origin proof either.
    let response = support::client()
        .post(router.url("/display/orders"))
        .header(HEADER, &bearer)
        .header("origin", "https://elsewhere.example")
        .header("sec-fetch-site", "cross-site")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(backend.seen().pop().expect("the POST").method, "POST");

    // The route's scopes apply with the token's.
    let response = call(&router, "GET", "/admin/x", &bearer).await;
    assert_eq!(response.status(), 403);

    // The user API describes the token's user.
    let response = call(&router, "GET", "/user-api/currentUser", &bearer).await;
    assert_eq!(response.status(), 200);
    let current: Value = response.json().await.expect("JSON");
    assert_eq!(current["name"], "jane.doe");
    assert_eq!(current["displayName"], "Jane Doe (jane.doe)");

    // Nothing was stored: without the header the same call is unauthenticated.
    let response = support::client()
        .get(router.url("/display/orders"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn refused_tokens_get_401_and_garbage_400() {
    let (dev, backend, router) = setup().await;
    let claims = user_claims(&dev);
    let valid = dev.mint_token(claims.clone());
    let tampered = {
        let mut parts: Vec<String> = valid.split('.').map(String::from).collect();
        let forged = with(claims.clone(), json!({"user_name": "admin"}));
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
        parts.join(".")
    };
    let expired = dev.mint_token(with(claims.clone(), json!({"iat": now() - 7200, "exp": now() - 3600})));
    let audience = dev.mint_token(with(
        claims.clone(),
        json!({"aud": ["other-app"], "cid": "sb-other!t9", "client_id": "sb-other!t9", "azp": "sb-other!t9"}),
    ));
    let other_zone = dev.mint_token(with(claims.clone(), json!({"zid": "other-zone"})));
    let rows: &[(&str, String, u16)] = &[
        ("bad signature", format!("Bearer {tampered}"), 401),
        ("expired", format!("Bearer {expired}"), 401),
        ("wrong audience", format!("Bearer {audience}"), 401),
        ("other zone", format!("Bearer {other_zone}"), 401),
        (
            "wrong password",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("jane.doe:wrong")
            ),
            401,
        ),
        ("other scheme", format!("Digest {valid}"), 401),
        ("no scheme", valid.clone(), 401),
        ("garbage", "Bearer garbage".to_string(), 400),
        ("garbage payload", "Bearer eyJhbGciOiJSUzI1NiJ9.!!!.x".to_string(), 400),
    ];
    for (case, value, status) in rows {
        let response = call(&router, "GET", "/display/x", value).await;
        assert_eq!(response.status().as_u16(), *status, "{case}");
        if *status == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
        }
        assert!(response.headers().get("set-cookie").is_none(), "{case}");
    }
    assert!(backend.seen().is_empty(), "no refused token reached the backend");
    let stats = dev.stats();
    assert!(
        !stats.jwks_requests_by_zid.contains_key("other-zone"),
        "no keys fetched for a zone the binding does not have: {:?}",
        stats.jwks_requests_by_zid
    );
}

const PATTERN: &str = r"^(.*)\.app\.localhost$";

fn url(router: &Gateway, tenant: &str, path: &str) -> String {
    format!("http://{tenant}.app.localhost:{}{path}", router.addr.port())
}

#[tokio::test]
async fn under_multitenancy_a_token_serves_only_its_tenants_host() {
    let backend = backend().await;
    let dev = support::idp::two_tenants(&backend).await;
    let router = gateway(app())
        .services(&dev, &dev.credentials())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .env("TENANT_HOST_PATTERN", PATTERN)
        .start()
        .await;
    let client = Browser::resolving(&dev, &["acme.app.localhost", "beta.app.localhost"]).client;
    let acme = dev
        .mint_token_in(
            "acme",
            dev.user_token_claims_in("acme", &User::new("mallory")).expect("claims"),
        )
        .expect("token");
    let bearer = format!("Bearer {acme}");

    // On beta's host, acme's token is refused before any key of acme's zone is fetched.
    let response = client
        .get(url(&router, "beta", "/display/x"))
        .header(HEADER, &bearer)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert!(!dev.stats().jwks_requests_by_zid.contains_key("zone-acme"));
    assert!(backend.seen().is_empty());

    // On acme's host it serves acme's user, with acme's destinations.
    let response = client
        .get(url(&router, "acme", "/display/x"))
        .header(HEADER, &bearer)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let seen = backend.seen().pop().expect("the backend was reached");
    assert_eq!(seen.headers["authorization"], bearer.as_str());
    assert_eq!(seen.headers["tenantid"], "zone-acme");
    let exchanges = |dev: &DevXsuaa| {
        dev.stats()
            .token_requests_by_grant
            .get("urn:ietf:params:oauth:grant-type:jwt-bearer")
            .copied()
            .unwrap_or(0)
    };
    let before = exchanges(&dev);
    let response = client
        .get(url(&router, "acme", "/erp/orders"))
        .header(HEADER, &bearer)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let seen = backend.seen().pop().expect("the destination was reached");
    assert_eq!(seen.headers["x-tenant-destination"], "acme");
    assert!(exchanges(&dev) > before, "the token was exchanged for the lookup");
}

#[tokio::test]
async fn tokens_naming_new_zones_cause_a_bounded_number_of_key_fetches() {
    let backend = backend().await;
    let dev = DevXsuaa::builder()
        .tenant("acme", "zone-acme")
        .start()
        .await
        .expect("development XSUAA with a tenant");
    let router = gateway(app())
        .services(&dev, &dev.credentials())
        .destination_entries(json!([{"name": "backend", "url": backend.url()}]))
        .env("TENANT_HOST_PATTERN", PATTERN)
        .start()
        .await;
    let client = Browser::resolving(&dev, &["acme.app.localhost"]).client;
    let claims = dev.user_token_claims_in("acme", &User::new("mallory")).expect("claims");
    // Tokens the validator refuses before any fetch (no key id) do not spend the budget.
    for zone in 0..30 {
        let payload = with(claims.clone(), json!({"zid": format!("no-kid-{zone}")}));
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let token = format!(
            "{}.{}.c2ln",
            encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            encode(payload.to_string().as_bytes())
        );
        let response = client
            .get(url(&router, "acme", "/display/x"))
            .header(HEADER, format!("Bearer {token}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401);
    }
    let started = tokio::time::Instant::now();
    let mut statuses = Vec::new();
    for zone in 0..25 {
        // The host's tenant, but a zone the identity provider does not know.
        let token = dev
            .mint_token_in("acme", with(claims.clone(), json!({"zid": format!("made-up-{zone}")})))
            .expect("token");
        let response = client
            .get(url(&router, "acme", "/display/x"))
            .header(HEADER, format!("Bearer {token}"))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
    }
    let fetched = dev
        .stats()
        .jwks_requests_by_zid
        .keys()
        .filter(|zid| zid.starts_with("made-up-"))
        .count();
    // The bucket refills one fetch every 3 s; a slow machine may have earned some back.
    let refills = (started.elapsed().as_secs() / 3) as usize;
    assert!(
        (20..=20 + refills).contains(&fetched),
        "{fetched} fetches: {statuses:?}"
    );
    assert!(statuses[..20].iter().all(|status| *status == 401), "{statuses:?}");
    let refused = statuses[20..].iter().filter(|status| **status == 503).count();
    assert!(refused + refills >= 5, "{statuses:?}");
    assert!(
        statuses[20..].iter().all(|status| [401, 503].contains(status)),
        "{statuses:?}"
    );
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn basic_credentials_become_a_password_grant_token_kept_until_it_expires() {
    let (dev, backend, router) = setup().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("jane.doe:secret")
    );
    let grants = |dev: &DevXsuaa| {
        dev.stats()
            .token_requests_by_grant
            .get("password")
            .copied()
            .unwrap_or(0)
    };
    for _ in 0..2 {
        let response = call(&router, "GET", "/display/orders", &basic).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("set-cookie").is_none());
        let seen = backend.seen().pop().expect("the backend was reached");
        let claims = support::bearer_claims(seen.headers["authorization"].to_str().expect("text"));
        assert_eq!(claims["user_name"], "jane.doe");
        assert_eq!(claims["grant_type"], "password");
        assert!(seen.headers.get(HEADER).is_none());
    }
    assert_eq!(grants(&dev), 1, "the token is kept for the next request");
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("jane.doe:wrong")
    );
    let response = call(&router, "GET", "/display/orders", &wrong).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(grants(&dev), 2, "another password is another grant");
}
