//! The secret client on `url`, the refresh and password grants, key
//! rotation and the smaller endpoints.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{client, login, post_token, REDIRECT};
use xsuaa_dev::{DevXsuaa, User};

const SECRET: &str = "s3cr3t+/=";

async fn secret_server() -> DevXsuaa {
    DevXsuaa::builder()
        .client_secret(SECRET)
        .user(User::new("jane.doe"))
        .user(User {
            scopes: vec!["Display".into(), "Edit".into()],
            ..User::new("max.admin")
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn secret_client_authenticates_in_body_and_with_basic() {
    let xsuaa = secret_server().await;
    let client_id = xsuaa.client_id();
    let credentials = xsuaa.secret_credentials().unwrap();
    assert_eq!(credentials["credential-type"], "binding-secret");
    assert_eq!(credentials["clientsecret"], SECRET);
    assert!(credentials.get("certificate").is_none());

    let code = login(&xsuaa, None).await;
    let (status, body) = post_token(
        &client(&xsuaa),
        &xsuaa.url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let record = xsuaa.last_token_request().unwrap();
    assert_eq!((record.listener.as_str(), record.basic_auth_client), ("url", None));

    let resp = client(&xsuaa)
        .post(format!("{}/oauth/token", xsuaa.url()))
        .basic_auth(&client_id, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        xsuaa.last_token_request().unwrap().basic_auth_client,
        Some(client_id.clone())
    );

    for wrong in [
        vec![("client_id", client_id.as_str()), ("client_secret", "nope")],
        vec![],
    ] {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(wrong);
        let (status, body) = post_token(&client(&xsuaa), &xsuaa.url(), &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client"))
        );
    }
    let stats = xsuaa.stats();
    assert_eq!(stats.token_requests_by_grant["client_credentials"], 3);
    assert_eq!(stats.token_requests_refused, 2);
}

#[tokio::test]
async fn refresh_returns_new_tokens_and_keeps_the_old_refresh_token() {
    let xsuaa = secret_server().await;
    let http = client(&xsuaa);
    let resp = http
        .post(format!("{}/oauth/token", xsuaa.url()))
        .basic_auth(xsuaa.client_id(), Some(SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "max.admin"),
            ("password", "secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first: Value = resp.json().await.unwrap();
    assert_eq!(first["scope"], "openid approuter-dev!t1.Display approuter-dev!t1.Edit");
    let old_refresh = first["refresh_token"].as_str().unwrap().to_string();

    xsuaa.set_access_token_lifetime(Duration::from_secs(60));
    let refresh = |token: String| {
        let http = http.clone();
        let url = xsuaa.url();
        let client_id = xsuaa.client_id();
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("client_id", client_id.as_str()),
                ("client_secret", SECRET),
            ];
            post_token(&http, &url, &form).await
        }
    };
    let (status, second) = refresh(old_refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["expires_in"], 60);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(second["access_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims["user_name"], "max.admin");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 60);

    assert_eq!(
        refresh(old_refresh).await.0,
        StatusCode::OK,
        "old refresh token stays valid"
    );
    assert_eq!(
        refresh(second["refresh_token"].as_str().unwrap().into()).await.0,
        StatusCode::OK
    );
    let (status, body) = refresh("not-a-token-r".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn password_grant_checks_the_password() {
    let xsuaa = secret_server().await;
    let client_id = xsuaa.client_id();
    let (status, body) = post_token(
        &client(&xsuaa),
        &xsuaa.url(),
        &[
            ("grant_type", "password"),
            ("username", "jane.doe"),
            ("password", "wrong"),
            ("client_id", &client_id),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn rotation_publishes_both_keys_and_signs_with_the_new_one() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let jwks = || async {
        let url = format!("{}/token_keys?zid={}", xsuaa.url(), xsuaa.zone_id());
        let keys: Value = client(&xsuaa).get(url).send().await.unwrap().json().await.unwrap();
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let before = xsuaa.mint_token(serde_json::json!({"sub": "x"}));
    let old_public = xsuaa.public_key_pem();
    assert_eq!(jwks().await, vec![kid_of(&before)]);

    xsuaa.rotate_signing_key();
    let after = xsuaa.mint_token(xsuaa.user_token_claims(&User::new("jane.doe")));
    assert_ne!(kid_of(&after), kid_of(&before));
    assert_ne!(xsuaa.public_key_pem(), old_public);
    assert!(xsuaa.signing_key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(jwks().await, vec![kid_of(&before), kid_of(&after)]);

    // Minted tokens are accepted by /userinfo like issued ones.
    let resp = client(&xsuaa)
        .get(format!("{}/userinfo", xsuaa.url()))
        .bearer_auth(&after)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    xsuaa.drop_old_signing_keys();
    assert_eq!(jwks().await, vec![kid_of(&after)]);
}

#[tokio::test]
async fn small_endpoints_answer_like_xsuaa() {
    let xsuaa = DevXsuaa::builder().zone_id("zone-42").start().await.unwrap();
    let http = client(&xsuaa);
    let get = |path: String| http.get(format!("{}{path}", xsuaa.url())).send();

    let resp = get("/token_keys?zid=other".into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_request");
    assert_eq!(
        get("/token_keys?zid=zone-42".into()).await.unwrap().status(),
        StatusCode::OK
    );

    assert_eq!(
        get("/userinfo".into()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let forged = http
        .get(format!("{}/userinfo", xsuaa.url()))
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let resp = get("/logout.do?redirect=http%3A%2F%2Flocalhost%3A5000%2Fbye&client_id=x".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["location"], "http://localhost:5000/bye");
    assert_eq!(get("/logout.do".into()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("/logout.do?redirect=https%3A%2F%2Fevil.example.com%2F".into())
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );

    let discovery: Value = get("/.well-known/openid-configuration".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["token_endpoint"], format!("{}/oauth/token", xsuaa.url()));
    assert_eq!(
        discovery["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{}/oauth/token", xsuaa.cert_url())
    );
    let stats = xsuaa.stats();
    assert_eq!(
        (stats.jwks_requests, stats.userinfo_requests, stats.logout_requests),
        (2, 2, 3)
    );
}
