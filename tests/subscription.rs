//! The SaaS registry's subscription callbacks through a real router: tokens of the development
//! XSUAA (provider zone, `<xsappname>.Callback`), the dependencies, a tenant's URL, and the
//! start-up errors of a `saas-registry` binding.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::idp::dev_xsuaa;
use support::{gateway, Gateway, GatewayBuilder};
use xsuaa_dev::{DevXsuaa, ServiceKind};

const PATTERN: &str = r"^(.*)\.app\.localhost$";
const DEPENDENCIES: &str = "/callback/v1.0/dependencies";
const TENANTS: &str = "/callback/v1.0/tenants";

fn xs_app() -> Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/app/(.*)$", "target": "$1", "localDir": "web", "authenticationType": "none"}]
    })
}

/// `VCAP_SERVICES` with XSUAA (`tenantmode` as given), the destination and connectivity
/// bindings, and `registries` saas-registry bindings (name, credentials).
fn vcap(dev: &DevXsuaa, tenantmode: &str, registries: &[(&str, Value)]) -> String {
    let mut xsuaa = dev.credentials();
    xsuaa["tenantmode"] = json!(tenantmode);
    let destination = dev.service_credentials(ServiceKind::Destination).expect("destination");
    let connectivity = dev
        .service_credentials(ServiceKind::Connectivity)
        .expect("connectivity");
    let mut vcap: Value =
        serde_json::from_str(&dev.vcap_services_all(&xsuaa, &destination, &connectivity)).expect("vcap json");
    if !registries.is_empty() {
        vcap["saas-registry"] = registries
            .iter()
            .map(|(name, credentials)| {
                json!({"label": "saas-registry", "tags": ["saas-registry"], "name": name, "credentials": credentials})
            })
            .collect();
    }
    vcap.to_string()
}

fn registry_credentials(dev: &DevXsuaa) -> Value {
    json!({
        "appName": "approuter-dev",
        "xsappname": dev.xsappname(),
        "clientid": "sb-saas-registry!b1",
        "url": dev.url(),
    })
}

/// A router bound to `dev` with `vcap`, trusting its CA.
fn router(dev: &DevXsuaa, vcap: String) -> GatewayBuilder {
    let folder = tempfile::tempdir().expect("temp dir");
    let ca = folder.path().join("ca.pem");
    std::fs::write(&ca, dev.ca_pem()).expect("write ca");
    gateway(xs_app())
        .file("web/index.html", "<p>app</p>")
        .env("VCAP_SERVICES", vcap)
        .env("XS_CACERT_PATH", ca.display().to_string())
        .keep(folder)
}

async fn saas_router(dev: &DevXsuaa) -> Gateway {
    let vcap = vcap(dev, "shared", &[("saas", registry_credentials(dev))]);
    router(dev, vcap).env("TENANT_HOST_PATTERN", PATTERN).start().await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// A client-credentials token of the SaaS registry's client, as XSUAA issues it to
/// `sap-provisioning` with the granted authority.
fn callback_claims(dev: &DevXsuaa, scopes: &[String]) -> Value {
    let client = "sb-saas-registry!b1";
    json!({
        "jti": "callback-token",
        "sub": client,
        "cid": client,
        "client_id": client,
        "azp": client,
        "grant_type": "client_credentials",
        "zid": dev.zone_id(),
        "ext_attr": {"enhancer": "XSUAA", "zdn": "dev"},
        "aud": [dev.xsappname(), client],
        "scope": scopes,
        "authorities": scopes,
        "iat": now(),
        "exp": now() + 600,
    })
}

fn callback_scope(dev: &DevXsuaa) -> String {
    format!("{}.Callback", dev.xsappname())
}

fn good_token(dev: &DevXsuaa) -> String {
    dev.mint_token(callback_claims(dev, &[callback_scope(dev)]))
}

fn host(router: &Gateway, subdomain: &str) -> String {
    format!("{subdomain}.app.localhost:{}", router.addr.port())
}

async fn call(
    router: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> reqwest::Response {
    let mut request = support::client()
        .request(method, router.url(path))
        .header("host", host(router, "dev"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    request.send().await.expect("request")
}

fn assert_bearer_challenge(response: &reqwest::Response) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
}

#[tokio::test]
async fn dependencies_list_the_bound_services_by_xsappname() {
    let dev = dev_xsuaa().await;
    let router = saas_router(&dev).await;
    let response = call(
        &router,
        reqwest::Method::GET,
        DEPENDENCIES,
        Some(&good_token(&dev)),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let body: Value = response.json().await.expect("json");
    let destination = dev.service_xsappname(ServiceKind::Destination);
    let connectivity = dev.service_xsappname(ServiceKind::Connectivity);
    assert_eq!(
        body,
        json!([
            {"xsappname": destination, "appId": destination, "appName": "destination"},
            {"xsappname": connectivity, "appId": connectivity, "appName": "connectivity"},
        ])
    );
}

#[tokio::test]
async fn a_subscription_answers_the_tenant_url() {
    let dev = dev_xsuaa().await;
    let router = saas_router(&dev).await;
    let token = good_token(&dev);
    let body = json!({
        "subscribedSubdomain": "acme",
        "subscribedTenantId": "acme-zone",
        "subscribedSubaccountId": "acme-subaccount",
        "eventType": "CREATE"
    });
    let path = format!("{TENANTS}/acme-zone");
    let response = call(
        &router,
        reqwest::Method::PUT,
        &path,
        Some(&token),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.expect("body"),
        format!("http://acme.app.localhost:{}", router.addr.port())
    );

    let response = call(&router, reqwest::Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "");
}

#[tokio::test]
async fn the_forwarded_scheme_counts_only_behind_a_trusted_proxy() {
    let dev = dev_xsuaa().await;
    let body = json!({"subscribedSubdomain": "acme"}).to_string();
    let path = format!("{TENANTS}/acme-zone");
    for (hops, scheme) in [("0", "http"), ("1", "https")] {
        let vcap = vcap(&dev, "shared", &[("saas", registry_credentials(&dev))]);
        let router = router(&dev, vcap)
            .env("TENANT_HOST_PATTERN", PATTERN)
            .env("CLIENT_IP_FORWARDED_HOPS", hops)
            .start()
            .await;
        let response = support::client()
            .put(router.url(&path))
            .header("host", host(&router, "dev"))
            .header("x-forwarded-proto", "https")
            .header("authorization", format!("Bearer {}", good_token(&dev)))
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "hops {hops}");
        assert_eq!(
            response.text().await.expect("body"),
            format!("{scheme}://acme.app.localhost:{}", router.addr.port()),
            "hops {hops}"
        );
    }
}

#[tokio::test]
async fn subscription_bodies_are_checked() {
    let dev = dev_xsuaa().await;
    let router = saas_router(&dev).await;
    let token = good_token(&dev);
    let path = format!("{TENANTS}/acme-zone");
    let rows = [
        (
            json!({"subscribedTenantId": "acme-zone"}).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"subscribedSubdomain": "acme.evil.example"}).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"subscribedSubdomain": "-acme"}).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"subscribedSubdomain": ""}).to_string(), StatusCode::BAD_REQUEST),
        ("not json".to_string(), StatusCode::BAD_REQUEST),
        (
            json!({"subscribedSubdomain": "acme", "pad": "x".repeat(70 * 1024)}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, status) in rows {
        let response = call(&router, reqwest::Method::PUT, &path, Some(&token), Some(body.clone())).await;
        assert_eq!(response.status(), status, "{}", &body[..body.len().min(80)]);
    }
}

#[tokio::test]
async fn tokens_are_refused_unless_of_the_provider_zone_with_the_callback_scope() {
    let dev = dev_xsuaa().await;
    let router = saas_router(&dev).await;
    let get = |token: Option<String>| {
        let router = &router;
        async move { call(router, reqwest::Method::GET, DEPENDENCIES, token.as_deref(), None).await }
    };

    assert_bearer_challenge(&get(None).await);
    let basic = support::client()
        .get(router.url(DEPENDENCIES))
        .header("host", host(&router, "dev"))
        .header("authorization", "Basic c2I6c2VjcmV0")
        .send()
        .await
        .expect("request");
    assert_bearer_challenge(&basic);
    assert_bearer_challenge(&get(Some("not.a.jwt".into())).await);

    let mut expired = callback_claims(&dev, &[callback_scope(&dev)]);
    expired["exp"] = json!(now() - 3600);
    assert_bearer_challenge(&get(Some(dev.mint_token(expired))).await);

    let good = good_token(&dev);
    let (head, _) = good.rsplit_once('.').expect("jwt");
    let forged = format!("{head}.{}", "A".repeat(342));
    assert_bearer_challenge(&get(Some(forged)).await);

    let user = xsuaa_dev::User::new("alice");
    let user_token = dev.mint_token(dev.user_token_claims(&user));
    assert_eq!(get(Some(user_token)).await.status(), StatusCode::FORBIDDEN);
    let no_scope = dev.mint_token(callback_claims(&dev, &[format!("{}.Display", dev.xsappname())]));
    assert_eq!(get(Some(no_scope)).await.status(), StatusCode::FORBIDDEN);

    // Another zone is refused from the token alone: no key fetch for a zone the router never serves.
    let mut other_zone = callback_claims(&dev, &[callback_scope(&dev)]);
    other_zone["zid"] = json!("subscriber-zone");
    let fetched = dev.stats().jwks_requests;
    assert_bearer_challenge(&get(Some(dev.mint_token(other_zone))).await);
    assert_eq!(dev.stats().jwks_requests, fetched);

    assert_eq!(get(Some(good)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn other_paths_and_methods_under_the_callbacks() {
    let dev = dev_xsuaa().await;
    let router = saas_router(&dev).await;
    let token = good_token(&dev);
    let rows = [
        (
            reqwest::Method::POST,
            format!("{TENANTS}/acme-zone"),
            StatusCode::METHOD_NOT_ALLOWED,
            Some("PUT, DELETE"),
        ),
        (
            reqwest::Method::PUT,
            DEPENDENCIES.to_string(),
            StatusCode::METHOD_NOT_ALLOWED,
            Some("GET"),
        ),
        (
            reqwest::Method::GET,
            format!("{TENANTS}/a/b"),
            StatusCode::NOT_FOUND,
            None,
        ),
        (reqwest::Method::PUT, format!("{TENANTS}/"), StatusCode::NOT_FOUND, None),
        (
            reqwest::Method::GET,
            format!("{DEPENDENCIES}/x"),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (method, path, status, allow) in rows {
        let response = call(&router, method.clone(), &path, Some(&token), None).await;
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(
            response.headers().get("allow").and_then(|v| v.to_str().ok()),
            allow,
            "{method} {path}"
        );
    }
    // Paths beside the callbacks are the application's.
    let response = call(&router, reqwest::Method::GET, "/app/index.html", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_saas_registry_binding_the_paths_are_ordinary_routes() {
    let dev = dev_xsuaa().await;
    let router = router(&dev, vcap(&dev, "shared", &[]))
        .env("TENANT_HOST_PATTERN", PATTERN)
        .start()
        .await;
    let response = call(
        &router,
        reqwest::Method::GET,
        DEPENDENCIES,
        Some(&good_token(&dev)),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn saas_registry_bindings_are_checked_at_start() {
    let dev = dev_xsuaa().await;
    let problems = |builder: GatewayBuilder| -> Vec<(String, String)> {
        let (_dir, config) = builder.config();
        match config {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .problems
                .into_iter()
                .map(|problem| (problem.path, problem.message))
                .collect(),
        }
    };

    // Subscriptions need tenant hosts.
    let found = problems(router(
        &dev,
        vcap(&dev, "dedicated", &[("saas", registry_credentials(&dev))]),
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "TENANT_HOST_PATTERN");
    assert!(found[0].1.contains("\"saas\""), "{found:?}");

    // Two registries: one error naming both.
    let two = vcap(
        &dev,
        "shared",
        &[("one", registry_credentials(&dev)), ("two", registry_credentials(&dev))],
    );
    let found = problems(router(&dev, two).env("TENANT_HOST_PATTERN", PATTERN));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].1.contains("\"one\"") && found[0].1.contains("\"two\""),
        "{found:?}"
    );

    // The provider's zone must be known: callbacks accept its tokens only.
    let mut xsuaa = dev.credentials();
    xsuaa["tenantmode"] = json!("shared");
    xsuaa.as_object_mut().expect("object").remove("identityzoneid");
    let mut services: Value =
        serde_json::from_str(&vcap(&dev, "shared", &[("saas", registry_credentials(&dev))])).expect("vcap json");
    services["xsuaa"][0]["credentials"] = xsuaa;
    let found = problems(router(&dev, services.to_string()).env("TENANT_HOST_PATTERN", PATTERN));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.ends_with(".identityzoneid"), "{found:?}");

    // A valid binding with its own paths.
    let mut credentials = registry_credentials(&dev);
    credentials["appUrls"] = json!(json!({
        "getDependencies": "https://dev.app.localhost/saas/dependencies",
        "onSubscription": "https://dev.app.localhost/saas/tenants/{tenantId}",
    })
    .to_string());
    let (_dir, config) = router(&dev, vcap(&dev, "shared", &[("saas", credentials)]))
        .env("TENANT_HOST_PATTERN", PATTERN)
        .config();
    let config = config.expect("valid configuration");
    let registry = config.saas_registry.expect("saas-registry binding");
    assert_eq!(registry.dependencies_path, "/saas/dependencies");
    assert_eq!(registry.tenants_path, "/saas/tenants");
}

#[tokio::test]
async fn check_reports_the_callbacks_and_the_missing_pattern() {
    use approuter::cli::check::{self, CheckOptions, Severity};
    let dev = dev_xsuaa().await;
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_app(
        dir.path(),
        &xs_app(),
        &[("web/index.html".to_string(), b"<p>app</p>".to_vec())],
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, dev.ca_pem()).expect("write ca");
    let options = |tenantmode: &str, pattern: Option<&str>| {
        let mut env = vec![
            (
                "VCAP_SERVICES".to_string(),
                vcap(&dev, tenantmode, &[("saas", registry_credentials(&dev))]),
            ),
            ("XS_CACERT_PATH".to_string(), ca.display().to_string()),
        ];
        if let Some(pattern) = pattern {
            env.push(("TENANT_HOST_PATTERN".to_string(), pattern.to_string()));
        }
        CheckOptions {
            sources: approuter::app::Sources {
                dir: dir.path().to_path_buf(),
                xs_app: None,
            },
            env: approuter::config::Env::from_pairs(env),
            mta: None,
            xs_security: None,
            host: None,
        }
    };

    let report = check::run(&options("shared", Some(PATTERN)));
    let finding = report
        .findings
        .iter()
        .find(|finding| finding.topic == "saas-registry binding")
        .unwrap_or_else(|| panic!("no saas-registry finding:\n{report}"));
    assert_eq!(finding.severity, Severity::Ok);
    assert!(
        finding.message.contains(DEPENDENCIES) && finding.message.contains(&callback_scope(&dev)),
        "{report}"
    );

    let report = check::run(&options("dedicated", None));
    assert!(
        report
            .findings
            .iter()
            .any(|finding| finding.severity == Severity::ConfigError && finding.topic == "TENANT_HOST_PATTERN"),
        "{report}"
    );
    assert_eq!(report.exit_code(), 64);
}
