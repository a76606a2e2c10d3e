//! The destination and connectivity bindings and their OAuth clients at the
//! token endpoints: client credentials and jwt-bearer user token exchange.

mod support;

use std::fs;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{cert_of, client, mtls_client, post_token};
use xsuaa_dev::{ClientCertOpts, DevXsuaa, ServiceKind};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn claims(token: &Value) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token.as_str().expect("access_token"))
        .expect("jwt")
        .claims
}

/// A login access token of the XSUAA client (password grant at certurl).
async fn login_token(xsuaa: &DevXsuaa) -> String {
    let cert = cert_of(&xsuaa.credentials());
    let client_id = xsuaa.client_id();
    let (status, body) = post_token(
        &mtls_client(xsuaa, &cert),
        &xsuaa.cert_url(),
        &[
            ("grant_type", "password"),
            ("client_id", &client_id),
            ("username", "jane.doe"),
            ("password", "secret"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("access_token").to_string()
}

/// A token request at certurl with the service's own certificate.
async fn service_grant(xsuaa: &DevXsuaa, kind: ServiceKind, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let cert = cert_of(&xsuaa.service_credentials(kind).unwrap());
    let client_id = xsuaa.service_client_id(kind);
    let mut form = form.to_vec();
    form.push(("client_id", &client_id));
    post_token(&mtls_client(xsuaa, &cert), &xsuaa.cert_url(), &form).await
}

#[tokio::test]
async fn service_bindings_have_the_btp_shapes() {
    let xsuaa = DevXsuaa::builder()
        .connectivity_proxy("10.0.4.5", 20003)
        .start()
        .await
        .unwrap();
    let destination = xsuaa.service_credentials(ServiceKind::Destination).unwrap();
    let connectivity = xsuaa.service_credentials(ServiceKind::Connectivity).unwrap();
    for (credentials, kind) in [
        (&destination, ServiceKind::Destination),
        (&connectivity, ServiceKind::Connectivity),
    ] {
        assert_eq!(credentials["clientid"], xsuaa.service_client_id(kind).as_str());
        assert_eq!(credentials["xsappname"], xsuaa.service_xsappname(kind).as_str());
        assert_eq!(credentials["url"], xsuaa.url().as_str());
        assert_eq!(credentials["certurl"], xsuaa.cert_url().as_str());
        assert_eq!(credentials["uaadomain"], xsuaa.uaa_domain().as_str());
        assert_eq!(credentials["identityzone"], "dev");
        assert_eq!(credentials["tenantid"], xsuaa.zone_id().as_str());
        assert_eq!(credentials["credential-type"], "x509");
        assert!(credentials["certificate"].as_str().unwrap().ends_with(&xsuaa.ca_pem()));
        assert!(credentials.get("clientsecret").is_none());
    }
    // Each service is its own client, distinct from the XSUAA client.
    assert_ne!(destination["clientid"], connectivity["clientid"]);
    assert_ne!(destination["clientid"], xsuaa.client_id().as_str());
    assert_ne!(destination["certificate"], xsuaa.credentials()["certificate"]);
    assert_eq!(destination["uri"], xsuaa.destination_url().as_str());
    assert!(connectivity.get("uri").is_none());
    for (field, expected) in [
        ("onpremise_proxy_host", "10.0.4.5"),
        ("onpremise_proxy_http_port", "20003"),
        ("onpremise_proxy_port", "20003"),
        ("token_service_url", &xsuaa.cert_url()),
    ] {
        assert_eq!(connectivity[field], expected, "{field}");
    }
    assert!(xsuaa.service_secret_credentials(ServiceKind::Destination).is_err());

    let xsuaa_credentials = xsuaa.credentials();
    let vcap: Value =
        serde_json::from_str(&xsuaa.vcap_services_all(&xsuaa_credentials, &destination, &connectivity)).unwrap();
    assert_eq!(vcap["xsuaa"][0]["credentials"], xsuaa_credentials);
    assert_eq!(vcap["destination"][0]["label"], "destination");
    assert_eq!(
        vcap["destination"][0]["tags"],
        json!(["destination", "conn", "connsvc"])
    );
    assert_eq!(vcap["destination"][0]["credentials"], destination);
    assert_eq!(vcap["connectivity"][0]["label"], "connectivity");
    assert_eq!(
        vcap["connectivity"][0]["tags"],
        json!(["connectivity", "conn", "connsvc"])
    );

    let root = tempfile::tempdir().unwrap();
    let dir = xsuaa
        .write_service_binding_dir(root.path(), ServiceKind::Destination, &destination)
        .unwrap();
    assert_eq!(dir, root.path().join("destination"));
    assert_eq!(fs::read_to_string(dir.join("type")).unwrap(), "destination");
    assert_eq!(fs::read_to_string(dir.join("uri")).unwrap(), xsuaa.destination_url());
}

#[tokio::test]
async fn secret_mode_gives_each_service_client_its_own_secret() {
    let xsuaa = DevXsuaa::builder().client_secret("s3cret").start().await.unwrap();
    let destination = xsuaa.service_secret_credentials(ServiceKind::Destination).unwrap();
    let connectivity = xsuaa.service_secret_credentials(ServiceKind::Connectivity).unwrap();
    assert_eq!(destination["credential-type"], "binding-secret");
    assert_eq!(connectivity["token_service_url"], xsuaa.url().as_str());
    assert!(destination.get("certificate").is_none());
    let secret = destination["clientsecret"].as_str().unwrap();
    assert_ne!(secret, "s3cret");
    assert_ne!(Some(secret), connectivity["clientsecret"].as_str());

    let client_id = xsuaa.service_client_id(ServiceKind::Destination);
    let http = client(&xsuaa);
    let (status, body) = post_token(
        &http,
        &xsuaa.url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims(&body["access_token"])["cid"], client_id.as_str());

    // The XSUAA client's secret and the connectivity client's secret are not
    // the destination client's.
    for wrong in ["s3cret", connectivity["clientsecret"].as_str().unwrap()] {
        let (status, body) = post_token(
            &http,
            &xsuaa.url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", wrong),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid_client");
    }
}

#[tokio::test]
async fn service_client_credentials_over_mtls() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    for (kind, scope) in [
        (ServiceKind::Destination, "Destination.read"),
        (ServiceKind::Connectivity, "Connectivity.read"),
    ] {
        let (status, body) = service_grant(&xsuaa, kind, &[("grant_type", "client_credentials")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let claims = claims(&body["access_token"]);
        let client_id = xsuaa.service_client_id(kind);
        let service_scope = format!("{}.{scope}", xsuaa.service_xsappname(kind));
        assert_eq!(claims["cid"], client_id.as_str());
        assert_eq!(claims["sub"], client_id.as_str());
        assert_eq!(claims["aud"][0], client_id.as_str());
        assert_eq!(claims["scope"], json!(["uaa.resource", service_scope]));
        assert_eq!(claims["zid"], xsuaa.zone_id().as_str());
        assert!(claims.get("user_name").is_none());
    }
}

#[tokio::test]
async fn another_clients_certificate_is_refused() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let xsuaa_cert = cert_of(&xsuaa.credentials());
    let destination_cert = cert_of(&xsuaa.service_credentials(ServiceKind::Destination).unwrap());
    let connectivity_cert = cert_of(&xsuaa.service_credentials(ServiceKind::Connectivity).unwrap());
    let destination_id = xsuaa.service_client_id(ServiceKind::Destination);
    let xsuaa_id = xsuaa.client_id();
    for (cert, client_id) in [
        (&xsuaa_cert, &destination_id),
        (&connectivity_cert, &destination_id),
        (&destination_cert, &xsuaa_id),
    ] {
        let (status, body) = post_token(
            &mtls_client(&xsuaa, cert),
            &xsuaa.cert_url(),
            &[("grant_type", "client_credentials"), ("client_id", client_id)],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{client_id}");
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(
            body["error_description"],
            "client certificate is not accepted for this client"
        );
    }
    // A further certificate issued for the destination client works for it only.
    let issued = xsuaa
        .issue_service_client_cert(ServiceKind::Destination, ClientCertOpts::default())
        .unwrap();
    let form = |id| [("grant_type", "client_credentials"), ("client_id", id)];
    let (status, _) = post_token(&mtls_client(&xsuaa, &issued), &xsuaa.cert_url(), &form(&destination_id)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post_token(&mtls_client(&xsuaa, &issued), &xsuaa.cert_url(), &form(&xsuaa_id)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwt_bearer_exchanges_a_login_token_for_a_service_user_token() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let login = login_token(&xsuaa).await;
    let (status, body) = service_grant(
        &xsuaa,
        ServiceKind::Destination,
        &[("grant_type", JWT_BEARER), ("assertion", &login)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none());
    let claims = claims(&body["access_token"]);
    let client_id = xsuaa.service_client_id(ServiceKind::Destination);
    let xsappname = xsuaa.service_xsappname(ServiceKind::Destination);
    assert_eq!(claims["user_name"], "jane.doe");
    assert_eq!(claims["email"], "jane.doe@example.com");
    assert_eq!(claims["ext_attr"]["zdn"], "dev");
    assert_eq!(claims["cid"], client_id.as_str());
    assert_eq!(claims["aud"][0], client_id.as_str());
    assert_eq!(claims["grant_type"], JWT_BEARER);
    assert_eq!(
        claims["scope"],
        json!(["openid", "uaa.user", format!("{xsappname}.Destination.read")])
    );
    assert_eq!(body["scope"], format!("openid uaa.user {xsappname}.Destination.read"));
}

#[tokio::test]
async fn jwt_bearer_refuses_assertions_that_are_not_valid_user_tokens_of_this_zone() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let login = login_token(&xsuaa).await;
    let mut expired = claims(&Value::String(login.clone()));
    expired["iat"] = json!(1_000);
    expired["exp"] = json!(2_000);
    let mut foreign_zone = claims(&Value::String(login.clone()));
    foreign_zone["zid"] = json!("other-zone");
    let (_, client_token) = service_grant(
        &xsuaa,
        ServiceKind::Destination,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let other = DevXsuaa::builder().start().await.unwrap();
    let other_login = login_token(&other).await;
    for (case, assertion) in [
        ("expired", xsuaa.mint_token(expired)),
        ("foreign zone", xsuaa.mint_token(foreign_zone)),
        ("another issuer's key", other_login),
        (
            "client token",
            client_token["access_token"].as_str().unwrap().to_string(),
        ),
        ("not a jwt", "abc".to_string()),
    ] {
        let (status, body) = service_grant(
            &xsuaa,
            ServiceKind::Destination,
            &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}");
        assert_eq!(body["error"], "invalid_grant", "{case}");
    }
    let (status, body) = service_grant(&xsuaa, ServiceKind::Destination, &[("grant_type", JWT_BEARER)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn service_clients_cannot_use_the_login_grants() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let (status, body) = service_grant(
        &xsuaa,
        ServiceKind::Destination,
        &[
            ("grant_type", "password"),
            ("username", "jane.doe"),
            ("password", "secret"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
}
