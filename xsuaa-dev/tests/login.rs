//! Authorization code flow: authorize, redeem over mTLS, verify the JWT
//! against /token_keys, and the refusals that guard the code.

mod support;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;
use support::{cert_of, client, login, mtls_client, param, pkce, post_token, REDIRECT};
use xsuaa_dev::{DevXsuaa, User};

const VERIFIER: &str = "a-sufficiently-long-code-verifier-0123456789-abcdefghijk";

#[tokio::test]
async fn code_redeemed_over_mtls_yields_jwt_verifiable_with_token_keys() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let (verifier, challenge) = pkce(VERIFIER);
    let location = support::authorize_location(&xsuaa, Some(&challenge)).await;
    assert_eq!(param(&location, "from").as_deref(), Some("test"));
    assert_eq!(param(&location, "state").as_deref(), Some("st&te=1"));
    let code = param(&location, "code").unwrap();
    assert_eq!(code.len(), 32);

    let credentials = xsuaa.credentials();
    let cert = cert_of(&credentials);
    let mtls = mtls_client(&xsuaa, &cert);
    let resp = mtls
        .post(format!("{}/oauth/token", credentials["certurl"].as_str().unwrap()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", &xsuaa.client_id()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid approuter-dev!t1.Display");
    assert!(body["refresh_token"].as_str().unwrap().ends_with("-r"));
    let access_token = body["access_token"].as_str().unwrap();

    // Verify like xssec: keys from https://<uaadomain>/token_keys?zid=<zid>, picked by kid.
    let header = jsonwebtoken::decode_header(access_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.jku, Some(format!("{}/token_keys", xsuaa.url())));
    let jwks_url = format!("https://{}/token_keys?zid={}", xsuaa.uaa_domain(), xsuaa.zone_id());
    let jwks: Value = client(&xsuaa).get(jwks_url).send().await.unwrap().json().await.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header.kid.clone().unwrap().as_str())
        .expect("kid listed in token_keys");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[xsuaa.client_id()]);
    let by_components =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(access_token, &by_components, &validation)
        .unwrap()
        .claims;
    let by_pem = DecodingKey::from_rsa_pem(jwk["value"].as_str().unwrap().as_bytes()).unwrap();
    jsonwebtoken::decode::<Value>(access_token, &by_pem, &validation).unwrap();
    let by_binding_key =
        DecodingKey::from_rsa_pem(credentials["verificationkey"].as_str().unwrap().as_bytes()).unwrap();
    jsonwebtoken::decode::<Value>(access_token, &by_binding_key, &validation).unwrap();

    assert_eq!(claims["user_name"], "jane.doe");
    assert_eq!(claims["email"], "jane.doe@example.com");
    assert_eq!(claims["given_name"], "Jane");
    assert_eq!(claims["grant_type"], "authorization_code");
    assert_eq!(claims["zid"], "dev-zone");
    assert_eq!(claims["cid"], "sb-approuter-dev!t1");
    assert_eq!(claims["iss"], format!("{}/oauth/token", xsuaa.url()));
    assert_eq!(claims["ext_attr"]["enhancer"], "XSUAA");
    assert_eq!(
        claims["aud"],
        serde_json::json!(["sb-approuter-dev!t1", "approuter-dev!t1"])
    );
    assert_eq!(claims["sub"], claims["user_id"]);

    // The same token opens /userinfo on the url listener.
    let info: Value = client(&xsuaa)
        .get(format!("{}/userinfo", xsuaa.url()))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["user_name"], "jane.doe");
    assert_eq!(info["name"], "Jane Doe");
    assert_eq!(info["email_verified"], true);

    let stats = xsuaa.stats();
    assert_eq!(stats.authorize_requests, 1);
    assert_eq!(stats.token_requests_by_grant["authorization_code"], 1);
    assert_eq!(stats.token_requests_refused, 0);
    assert_eq!(stats.certurl_tls_handshakes, 1);
    assert_eq!(stats.jwks_requests, 1);
    assert_eq!(stats.userinfo_requests, 1);
    let record = xsuaa.last_token_request().unwrap();
    assert_eq!(record.listener, "certurl");
    assert!(!record.form.contains_key("client_secret"));
    assert_eq!(record.basic_auth_client, None);
    assert_eq!(record.client_cert_fingerprint, Some(cert.sha256_fingerprint));
}

async fn redeem(xsuaa: &DevXsuaa, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let cert = cert_of(&xsuaa.credentials());
    let mut full = form.to_vec();
    let client_id = xsuaa.client_id();
    full.extend([("grant_type", "authorization_code"), ("client_id", client_id.as_str())]);
    post_token(&mtls_client(xsuaa, &cert), &xsuaa.cert_url(), &full).await
}

#[tokio::test]
async fn code_is_single_use() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let code = login(&xsuaa, None).await;
    let form = [("code", code.as_str()), ("redirect_uri", REDIRECT)];
    assert_eq!(redeem(&xsuaa, &form).await.0, StatusCode::OK);
    let (status, body) = redeem(&xsuaa, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(xsuaa.stats().token_requests_refused, 1);
}

#[tokio::test]
async fn wrong_or_missing_code_verifier_is_refused_and_burns_the_code() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let (verifier, challenge) = pkce(VERIFIER);
    let code = login(&xsuaa, Some(&challenge)).await;
    let wrong = format!("{verifier}x");
    let (status, body) = redeem(
        &xsuaa,
        &[("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", &wrong)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = redeem(
        &xsuaa,
        &[
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a failed redemption consumes the code");

    let code = login(&xsuaa, Some(&challenge)).await;
    let (status, body) = redeem(&xsuaa, &[("code", &code), ("redirect_uri", REDIRECT)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn redirect_uri_must_match_byte_for_byte() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    for other in [
        "http://localhost:5000/login/callback",
        "http://localhost:5000/login/callback?from=test&x",
    ] {
        let code = login(&xsuaa, None).await;
        let (status, body) = redeem(&xsuaa, &[("code", &code), ("redirect_uri", other)]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
}

fn authorize_url(xsuaa: &DevXsuaa, client_id: &str, redirect_uri: &str) -> url::Url {
    let mut url = url::Url::parse(&format!("{}/oauth/authorize", xsuaa.url())).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri);
    url
}

#[tokio::test]
async fn authorize_never_redirects_to_unvalidated_targets() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let cases = [
        ("sb-other!t1", "http://localhost:5000/cb"),
        ("sb-approuter-dev!t1", "https://evil.example.com/cb"),
        ("sb-approuter-dev!t1", "http://127.0.0.2/cb"),
        ("sb-approuter-dev!t1", "/relative/cb"),
        ("sb-approuter-dev!t1", "ftp://localhost/cb"),
    ];
    for (client_id, redirect_uri) in cases {
        let resp = client(&xsuaa)
            .get(authorize_url(&xsuaa, client_id, redirect_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{client_id} {redirect_uri}");
        assert!(resp.headers().get("location").is_none());
    }
    // IPv6 loopback and 127.0.0.1 are fine.
    for redirect_uri in ["http://[::1]:8080/cb", "https://127.0.0.1/cb"] {
        let url = authorize_url(&xsuaa, "sb-approuter-dev!t1", redirect_uri);
        let resp = client(&xsuaa).get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{redirect_uri}");
    }
}

#[tokio::test]
async fn deny_login_redirects_with_access_denied() {
    let xsuaa = DevXsuaa::builder()
        .deny_login(true)
        .user(User::new("max.mustermann"))
        .start()
        .await
        .unwrap();
    let location = support::authorize_location(&xsuaa, None).await;
    assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
    assert!(param(&location, "error_description").is_some());
    assert_eq!(param(&location, "state").as_deref(), Some("st&te=1"));
    assert_eq!(param(&location, "code"), None);
}
