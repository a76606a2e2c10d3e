//! Multi-zone mode: zones chosen by host name under `auth.localhost`, each
//! with its own keys, users, codes and destinations, and the bindings and
//! tokens a multitenant router needs.

mod support;

use std::net::SocketAddr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use support::{cert_of, param, pkce, post_token, REDIRECT};
use url::Url;
use xsuaa_dev::{ClientCert, DevXsuaa, ServiceKind, User, SAAS_REGISTRY_CLIENT_ID};

const VERIFIER: &str = "a-sufficiently-long-code-verifier-0123456789-abcdefghijk";

async fn two_tenants() -> DevXsuaa {
    DevXsuaa::builder()
        .tenant("acme", "acme-zone-id")
        .tenant_user("acme", User::new("road.runner"))
        .tenant("globex", "globex-zone-id")
        .tenant_destination("acme", "acme-only", [("URL", "https://acme.example.org")])
        .start()
        .await
        .unwrap()
}

/// A client trusting the dev CA that resolves every zone host (and
/// `extra` names) to 127.0.0.1, optionally presenting `cert`.
fn zone_client(xsuaa: &DevXsuaa, cert: Option<&ClientCert>, extra: &[&str]) -> Client {
    let ca = reqwest::Certificate::from_pem(xsuaa.ca_pem().as_bytes()).unwrap();
    let mut builder = Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none());
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    for name in xsuaa
        .zone_host_names()
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        builder = builder.resolve(name, loopback);
    }
    if let Some(cert) = cert {
        let pem = format!("{}{}", cert.cert_pem, cert.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn port_of(url: &str) -> u16 {
    Url::parse(url).unwrap().port().unwrap()
}

/// The claims of a JWT, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap())
        .unwrap()
}

/// Authorize at the zone's `url` and return the code.
async fn authorize_in(xsuaa: &DevXsuaa, client: &Client, subdomain: &str, challenge: &str) -> String {
    let mut url = Url::parse(&format!("{}/oauth/authorize", xsuaa.tenant_url(subdomain))).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &xsuaa.client_id())
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    param(&location, "code").unwrap()
}

fn code_form<'a>(xsuaa_client: &'a str, code: &'a str, verifier: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
        ("client_id", xsuaa_client),
    ]
}

/// A client-credentials token of `kind`'s client (or the XSUAA client) in a zone.
async fn client_token_in(xsuaa: &DevXsuaa, subdomain: &str, kind: Option<ServiceKind>) -> String {
    let credentials = match kind {
        Some(kind) => xsuaa.service_credentials(kind).unwrap(),
        None => xsuaa.credentials(),
    };
    let mtls = zone_client(xsuaa, Some(&cert_of(&credentials)), &[]);
    let client_id = credentials["clientid"].as_str().unwrap();
    let (status, body) = post_token(
        &mtls,
        &xsuaa.tenant_cert_url(subdomain),
        &[("grant_type", "client_credentials"), ("client_id", client_id)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Whether `token` verifies with any key of this JWKS, matched by PEM and
/// not by kid, so a kid collision cannot hide a wrong key.
fn verifies_with(token: &str, jwks: &Value) -> bool {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    jwks["keys"].as_array().unwrap().iter().any(|jwk| {
        let key = DecodingKey::from_rsa_pem(jwk["value"].as_str().unwrap().as_bytes()).unwrap();
        jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
    })
}

async fn get_json(client: &Client, url: &str) -> (StatusCode, Value) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn each_zone_logs_in_at_its_own_hosts_with_the_client_certificate() {
    let xsuaa = two_tenants().await;
    let credentials = xsuaa.credentials();
    let cert = cert_of(&credentials);
    let browser = zone_client(&xsuaa, None, &[]);
    let mtls = zone_client(&xsuaa, Some(&cert), &[]);
    let client_id = xsuaa.client_id();
    let cert_port = port_of(&xsuaa.cert_url());
    let url_port = port_of(&xsuaa.url());

    for (subdomain, zone_id, user_name) in [
        ("acme", "acme-zone-id", "road.runner"),
        ("globex", "globex-zone-id", "user@globex"),
    ] {
        assert_eq!(
            xsuaa.tenant_url(subdomain),
            format!("https://{subdomain}.auth.localhost:{url_port}")
        );
        assert_eq!(
            xsuaa.tenant_cert_url(subdomain),
            format!("https://{subdomain}.auth.cert.localhost:{cert_port}")
        );
        assert_eq!(xsuaa.tenant_zone_id(subdomain).as_deref(), Some(zone_id));
        let (verifier, challenge) = pkce(VERIFIER);
        let code = authorize_in(&xsuaa, &browser, subdomain, &challenge).await;
        let (status, body) = post_token(
            &mtls,
            &xsuaa.tenant_cert_url(subdomain),
            &code_form(&client_id, &code, &verifier),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let record = xsuaa.last_token_request().unwrap();
        assert_eq!(record.listener, "certurl");
        assert_eq!(record.host, format!("{subdomain}.auth.cert.localhost:{cert_port}"));
        assert_eq!(
            record.client_cert_fingerprint.as_deref(),
            Some(cert.sha256_fingerprint.as_str())
        );

        let access = body["access_token"].as_str().unwrap();
        let claims = claims_of(access);
        assert_eq!(
            claims["iss"],
            format!("https://{subdomain}.auth.localhost:{url_port}/oauth/token")
        );
        assert_eq!(claims["zid"], zone_id);
        assert_eq!(claims["ext_attr"]["zdn"], subdomain);
        assert_eq!(claims["ext_attr"]["subaccountid"], zone_id);
        assert_eq!(claims["user_name"], user_name);
        assert_eq!(claims["cid"], client_id.as_str());
        assert_eq!(claims["aud"], serde_json::json!([client_id, "approuter-dev!t1"]));
        assert_eq!(claims_of(body["id_token"].as_str().unwrap())["zid"], zone_id);

        // userinfo and refresh work on the zone's own hosts.
        let resp = browser
            .get(format!("{}/userinfo", xsuaa.tenant_url(subdomain)))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let info: Value = resp.json().await.unwrap();
        assert_eq!(info["zid"], zone_id);
        let refresh = body["refresh_token"].as_str().unwrap();
        let (status, refreshed) = post_token(
            &mtls,
            &xsuaa.tenant_cert_url(subdomain),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", &client_id),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        assert_eq!(claims_of(refreshed["access_token"].as_str().unwrap())["zid"], zone_id);

        let resp = browser
            .get(format!(
                "{}/logout.do?redirect=http://{subdomain}.localhost:5000/",
                xsuaa.tenant_url(subdomain)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
    }
}

#[tokio::test]
async fn codes_and_refresh_tokens_of_one_zone_are_refused_in_another() {
    let xsuaa = two_tenants().await;
    let cert = cert_of(&xsuaa.credentials());
    let browser = zone_client(&xsuaa, None, &[]);
    let mtls = zone_client(&xsuaa, Some(&cert), &[]);
    let client_id = xsuaa.client_id();
    let (verifier, challenge) = pkce(VERIFIER);

    for other in ["globex", "dev"] {
        let code = authorize_in(&xsuaa, &browser, "acme", &challenge).await;
        let (status, body) = post_token(
            &mtls,
            &xsuaa.tenant_cert_url(other),
            &code_form(&client_id, &code, &verifier),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant");
        // The refused attempt used the code up, as any failed redemption does.
        let (status, _) = post_token(
            &mtls,
            &xsuaa.tenant_cert_url("acme"),
            &code_form(&client_id, &code, &verifier),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    let code = authorize_in(&xsuaa, &browser, "acme", &challenge).await;
    let (status, body) = post_token(
        &mtls,
        &xsuaa.tenant_cert_url("acme"),
        &code_form(&client_id, &code, &verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let refresh = body["refresh_token"].as_str().unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", &client_id),
    ];
    let (status, body) = post_token(&mtls, &xsuaa.tenant_cert_url("globex"), &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, _) = post_token(&mtls, &xsuaa.tenant_cert_url("acme"), &form).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn each_zone_publishes_its_own_keys() {
    let xsuaa = two_tenants().await;
    let client = zone_client(&xsuaa, None, &[]);
    let acme_token = client_token_in(&xsuaa, "acme", None).await;
    let url_port = port_of(&xsuaa.url());
    let bare = format!("https://auth.localhost:{url_port}");

    let (status, acme_keys) = get_json(&client, &format!("{}/token_keys", xsuaa.tenant_url("acme"))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, globex_keys) = get_json(&client, &format!("{}/token_keys", xsuaa.tenant_url("globex"))).await;
    let (_, provider_keys) = get_json(&client, &format!("{}/token_keys", xsuaa.url())).await;
    assert!(verifies_with(&acme_token, &acme_keys));
    assert!(!verifies_with(&acme_token, &globex_keys));
    assert!(!verifies_with(&acme_token, &provider_keys));
    let header = jsonwebtoken::decode_header(&acme_token).unwrap();
    assert_eq!(header.jku, Some(format!("{}/token_keys", xsuaa.tenant_url("acme"))));
    for keys in [&globex_keys, &provider_keys] {
        assert!(keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != header.kid.clone().unwrap().as_str()));
    }

    // ?zid= selects the zone on the bare uaadomain and on any zone host.
    for base in [bare.as_str(), &xsuaa.tenant_url("globex"), &xsuaa.url()] {
        let (status, by_zid) = get_json(&client, &format!("{base}/token_keys?zid=acme-zone-id")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_zid, acme_keys);
        let (status, body) = get_json(&client, &format!("{base}/token_keys?zid=no-such-zone")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_request");
    }
    let (_, by_zid) = get_json(&client, &format!("{bare}/token_keys?zid=globex-zone-id")).await;
    assert_eq!(by_zid, globex_keys);
    let (status, body) = get_json(&client, &format!("{bare}/token_keys")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    let resp = client.get(format!("{bare}/oauth/authorize")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let by_zid = xsuaa.stats().jwks_requests_by_zid;
    assert_eq!(by_zid.get("acme-zone-id"), Some(&4));
    assert_eq!(by_zid.get("globex-zone-id"), Some(&2));
    assert_eq!(by_zid.get("dev-zone"), Some(&1));
    assert_eq!(by_zid.get("no-such-zone"), Some(&3));

    // Helpers sign in a zone with that zone's keys.
    let claims = xsuaa.user_token_claims_in("globex", &User::new("wile.e")).unwrap();
    assert_eq!(claims["zid"], "globex-zone-id");
    assert_eq!(claims["ext_attr"]["zdn"], "globex");
    let minted = xsuaa.mint_token_in("globex", claims).unwrap();
    assert!(verifies_with(&minted, &globex_keys));
    assert!(!verifies_with(&minted, &acme_keys));
    assert!(xsuaa.mint_token_in("nope", serde_json::json!({})).is_err());
    assert_eq!(xsuaa.tenant_zone_id("nope"), None);
}

#[tokio::test]
async fn a_subdomain_that_is_no_zone_gets_404() {
    let xsuaa = two_tenants().await;
    let client = zone_client(&xsuaa, None, &["nope.auth.localhost", "nope.auth.cert.localhost"]);
    for url in [
        format!("{}/oauth/authorize?client_id=x", xsuaa.tenant_url("nope")),
        format!("{}/token_keys", xsuaa.tenant_url("nope")),
        format!("{}/token_keys", xsuaa.tenant_cert_url("nope")),
    ] {
        let (status, body) = get_json(&client, &url).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{url}");
        assert_eq!(body["error"], "not_found");
    }
    // A zone's mTLS host on the url listener is no host of that listener.
    let port = port_of(&xsuaa.url());
    let (status, _) = get_json(&client, &format!("https://acme.auth.cert.localhost:{port}/token_keys")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shared_binding_names_the_zone_hosts() {
    let xsuaa = two_tenants().await;
    let credentials = xsuaa.credentials();
    let url_port = port_of(&xsuaa.url());
    let cert_port = port_of(&xsuaa.cert_url());
    assert!(xsuaa.is_multi_zone());
    assert_eq!(credentials["tenantmode"], "shared");
    assert_eq!(credentials["uaadomain"], "auth.localhost");
    assert_eq!(xsuaa.uaa_domain(), "auth.localhost");
    assert_eq!(credentials["url"], format!("https://dev.auth.localhost:{url_port}"));
    assert_eq!(
        credentials["certurl"],
        format!("https://dev.auth.cert.localhost:{cert_port}")
    );
    assert_eq!(credentials["identityzone"], "dev");
    assert_eq!(credentials["identityzoneid"], "dev-zone");

    // The provider zone keeps its users and zone id.
    let token = client_token_in(&xsuaa, "dev", None).await;
    let claims = claims_of(&token);
    assert_eq!(claims["zid"], "dev-zone");
    assert_eq!(
        claims["iss"],
        format!("https://dev.auth.localhost:{url_port}/oauth/token")
    );

    let other = DevXsuaa::builder()
        .multi_zone()
        .provider_subdomain("provider")
        .start()
        .await
        .unwrap();
    let credentials = other.credentials();
    assert_eq!(credentials["identityzone"], "provider");
    assert_eq!(credentials["tenantmode"], "shared");
    let port = port_of(&other.url());
    assert_eq!(credentials["url"], format!("https://provider.auth.localhost:{port}"));
}

#[tokio::test]
async fn inconsistent_zones_are_refused_at_start() {
    let unnamed = DevXsuaa::builder().tenant_user("acme", User::new("x")).start().await;
    assert!(unnamed.is_err());
    let twice = DevXsuaa::builder()
        .tenant("acme", "same")
        .tenant("globex", "same")
        .start()
        .await;
    assert!(twice.is_err());
    let provider_id = DevXsuaa::builder().tenant("acme", "dev-zone").start().await;
    assert!(provider_id.is_err());
    let not_a_label = DevXsuaa::builder().tenant("a.b", "ab").start().await;
    assert!(not_a_label.is_err());
}

#[tokio::test]
async fn default_mode_ignores_the_host_header() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    assert!(!xsuaa.is_multi_zone());
    assert!(xsuaa.zone_host_names().is_empty());
    assert_eq!(xsuaa.credentials()["tenantmode"], "dedicated");
    assert!(xsuaa.url().starts_with("https://127.0.0.1:"));
    let resp = support::client(&xsuaa)
        .get(format!("{}/token_keys", xsuaa.url()))
        .header("host", "acme.auth.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_destination_service_answers_with_the_bearer_zone_destinations() {
    let xsuaa = two_tenants().await;
    let client = zone_client(&xsuaa, None, &[]);
    let find = |token: String, name: &'static str| {
        let client = client.clone();
        let url = format!(
            "{}/destination-configuration/v1/destinations/{name}",
            xsuaa.destination_url()
        );
        async move {
            let resp = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let acme = client_token_in(&xsuaa, "acme", Some(ServiceKind::Destination)).await;
    let globex = client_token_in(&xsuaa, "globex", Some(ServiceKind::Destination)).await;
    let provider = client_token_in(&xsuaa, "dev", Some(ServiceKind::Destination)).await;

    let (status, body) = find(acme.clone(), "acme-only").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["owner"]["SubaccountId"], "acme-zone-id");
    assert_eq!(body["destinationConfiguration"]["URL"], "https://acme.example.org");
    for token in [globex.clone(), provider.clone()] {
        let (status, _) = find(token, "acme-only").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    xsuaa
        .set_tenant_destination("globex", "late", [("URL", "https://globex.example.org")])
        .unwrap();
    let (status, body) = find(globex, "late").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["owner"]["SubaccountId"], "globex-zone-id");
    let (status, _) = find(provider.clone(), "late").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(xsuaa.set_tenant_destination("nope", "x", [("URL", "u")]).is_err());
    let (status, _) = find(acme, "no-auth").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = find(provider, "no-auth").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["owner"]["SubaccountId"], "dev-zone");
}

#[tokio::test]
async fn user_token_exchange_accepts_assertions_of_the_same_zone_only() {
    let xsuaa = two_tenants().await;
    let user_token = client_password_token(&xsuaa, "acme").await;
    let credentials = xsuaa.service_credentials(ServiceKind::Destination).unwrap();
    let mtls = zone_client(&xsuaa, Some(&cert_of(&credentials)), &[]);
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", user_token.as_str()),
        ("client_id", credentials["clientid"].as_str().unwrap()),
    ];
    let (status, body) = post_token(&mtls, &xsuaa.tenant_cert_url("acme"), &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["zid"], "acme-zone-id");
    assert_eq!(claims["user_name"], "road.runner");
    for other in ["globex", "dev"] {
        let (status, body) = post_token(&mtls, &xsuaa.tenant_cert_url(other), &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant");
    }
}

/// A user token of the zone's first user from the password grant.
async fn client_password_token(xsuaa: &DevXsuaa, subdomain: &str) -> String {
    let mtls = zone_client(xsuaa, Some(&cert_of(&xsuaa.credentials())), &[]);
    let (status, body) = post_token(
        &mtls,
        &xsuaa.tenant_cert_url(subdomain),
        &[
            ("grant_type", "password"),
            ("username", "road.runner"),
            ("password", "secret"),
            ("client_id", &xsuaa.client_id()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_connectivity_proxy_admits_tokens_of_any_zone() {
    let xsuaa = two_tenants().await;
    let proxy = xsuaa.connectivity_proxy_addr();
    for subdomain in ["acme", "dev"] {
        let token = client_token_in(&xsuaa, subdomain, Some(ServiceKind::Connectivity)).await;
        let client = Client::builder()
            .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
            .build()
            .unwrap();
        let resp = client
            .get("http://unmapped.internal:44300/")
            .header("proxy-authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        // Admitted (not 407); no system is mapped for the virtual host.
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[tokio::test]
async fn the_callback_token_and_saas_registry_binding() {
    let xsuaa = two_tenants().await;
    let token = xsuaa.callback_token().unwrap();
    let claims = claims_of(&token);
    let callback = "approuter-dev!t1.Callback";
    assert_eq!(claims["cid"], SAAS_REGISTRY_CLIENT_ID);
    assert_eq!(claims["client_id"], SAAS_REGISTRY_CLIENT_ID);
    assert_eq!(claims["grant_type"], "client_credentials");
    assert_eq!(claims["zid"], "dev-zone");
    assert_eq!(claims["iss"], format!("{}/oauth/token", xsuaa.url()));
    for field in ["scope", "authorities"] {
        assert!(
            claims[field].as_array().unwrap().iter().any(|s| s == callback),
            "{field}"
        );
    }
    assert!(claims["aud"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "approuter-dev!t1"));
    let client = zone_client(&xsuaa, None, &[]);
    let (_, provider_keys) = get_json(&client, &format!("{}/token_keys", xsuaa.url())).await;
    assert!(verifies_with(&token, &provider_keys));

    let saas = xsuaa.saas_registry_credentials("https://dev-approuter.localhost:5000/");
    assert_eq!(saas["appName"], "approuter-dev");
    assert_eq!(saas["xsappname"], "approuter-dev!t1");
    assert_eq!(saas["clientid"], SAAS_REGISTRY_CLIENT_ID);
    assert_eq!(saas["url"], xsuaa.url());
    let app_urls: Value = serde_json::from_str(saas["appUrls"].as_str().unwrap()).unwrap();
    assert_eq!(
        app_urls["getDependencies"],
        "https://dev-approuter.localhost:5000/callback/v1.0/dependencies"
    );
    assert_eq!(
        app_urls["onSubscription"],
        "https://dev-approuter.localhost:5000/callback/v1.0/tenants/{tenantId}"
    );

    let destination = xsuaa.service_credentials(ServiceKind::Destination).unwrap();
    let connectivity = xsuaa.service_credentials(ServiceKind::Connectivity).unwrap();
    let vcap: Value = serde_json::from_str(&xsuaa.vcap_services_with_saas_registry(
        &xsuaa.credentials(),
        &destination,
        &connectivity,
        &saas,
    ))
    .unwrap();
    assert_eq!(vcap["saas-registry"][0]["label"], "saas-registry");
    assert_eq!(vcap["saas-registry"][0]["tags"][0], "saas-registry");
    assert_eq!(vcap["saas-registry"][0]["credentials"], saas);
    assert_eq!(vcap["xsuaa"][0]["credentials"]["tenantmode"], "shared");

    let root = tempfile::tempdir().unwrap();
    let dir = xsuaa.write_saas_registry_binding_dir(root.path(), &saas).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("type")).unwrap(), "saas-registry");
    assert_eq!(
        std::fs::read_to_string(dir.join("appUrls")).unwrap(),
        saas["appUrls"].as_str().unwrap()
    );
}
