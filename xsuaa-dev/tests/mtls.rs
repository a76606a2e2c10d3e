//! The certurl token endpoint: which client certificates get a token and
//! which are refused in HTTP or already in the TLS handshake.

mod support;

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde_json::Value;
use support::{client, mtls_client, post_token};
use xsuaa_dev::{ClientCert, ClientCertOpts, DevXsuaa, KeyKind};

async fn client_credentials(xsuaa: &DevXsuaa, cert: &ClientCert) -> reqwest::Result<(StatusCode, Value)> {
    let resp = mtls_client(xsuaa, cert)
        .post(format!("{}/oauth/token", xsuaa.cert_url()))
        .form(&[("grant_type", "client_credentials"), ("client_id", &xsuaa.client_id())])
        .send()
        .await?;
    let status = resp.status();
    Ok((status, resp.json().await?))
}

/// The request must fail with the server's TLS alert, not an HTTP answer.
fn assert_tls_alert(result: reqwest::Result<(StatusCode, Value)>, alert: &str) {
    let err = result.expect_err("expected a TLS failure, got an HTTP answer");
    let debug = format!("{err:?}");
    // rustls reports the alert as `AlertReceived(X)` or, wrapped in an IO error, as
    // "received fatal alert: X", depending on the layer that surfaces it.
    assert!(
        debug.contains(&format!("AlertReceived({alert})")) || debug.contains(&format!("received fatal alert: {alert}")),
        "{debug}"
    );
}

#[tokio::test]
async fn request_without_client_certificate_gets_401() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let client_id = xsuaa.client_id();
    let (status, body) = post_token(
        &client(&xsuaa),
        &xsuaa.cert_url(),
        &[("grant_type", "client_credentials"), ("client_id", &client_id)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "client certificate required");
    // The handshake itself succeeded: the refusal is an HTTP answer.
    assert_eq!(xsuaa.stats().certurl_tls_handshakes, 1);
    assert_eq!(xsuaa.stats().token_requests_refused, 1);
}

#[tokio::test]
async fn foreign_ca_certificate_fails_the_handshake() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let result = client_credentials(&xsuaa, &xsuaa.foreign_client_cert()).await;
    assert_tls_alert(result, "UnknownCA");
    assert_eq!(xsuaa.stats().certurl_tls_handshakes, 0);
    assert!(xsuaa.last_token_request().is_none());
}

#[tokio::test]
async fn expired_certificate_fails_the_handshake() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let now = SystemTime::now();
    let expired = xsuaa.issue_client_cert(ClientCertOpts {
        not_before: now - Duration::from_secs(2 * 86400),
        not_after: now - Duration::from_secs(86400),
        ..ClientCertOpts::default()
    });
    let result = client_credentials(&xsuaa, &expired).await;
    assert_tls_alert(result, "CertificateExpired");
    assert_eq!(xsuaa.stats().certurl_tls_handshakes, 0);
}

#[tokio::test]
async fn revoked_certificate_gets_401() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let cert = xsuaa.issue_client_cert(ClientCertOpts::default());
    let (status, _) = client_credentials(&xsuaa, &cert).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    // Upper case with colons, as openssl prints it, names the same certificate.
    let openssl_style = cert
        .sha256_fingerprint
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    xsuaa.revoke_client_cert(&openssl_style);
    let (status, body) = client_credentials(&xsuaa, &cert).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    // Other certificates are unaffected.
    let (status, _) = client_credentials(&xsuaa, &xsuaa.issue_client_cert(ClientCertOpts::default()))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_key_kind_authenticates_and_yields_a_client_token() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    for (kind, pem_label) in [
        (KeyKind::EcdsaP256, "-----BEGIN PRIVATE KEY-----"),
        (KeyKind::Rsa2048Pkcs8, "-----BEGIN PRIVATE KEY-----"),
        (KeyKind::Rsa2048Pkcs1, "-----BEGIN RSA PRIVATE KEY-----"),
    ] {
        let cert = xsuaa.issue_client_cert(ClientCertOpts {
            common_name: Some(format!("{kind:?}")),
            key: kind,
            ..ClientCertOpts::default()
        });
        assert!(cert.key_pem.starts_with(pem_label), "{kind:?}");
        assert_eq!(cert.cert_pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf + CA");
        let (status, body) = client_credentials(&xsuaa, &cert).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{kind:?}: {body}");
        assert_eq!(body["scope"], "uaa.resource");
        assert!(body.get("refresh_token").is_none());
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(body["access_token"].as_str().unwrap())
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], xsuaa.client_id());
        assert_eq!(claims["authorities"], serde_json::json!(["uaa.resource"]));
        assert!(claims.get("user_name").is_none());
    }
}

#[tokio::test]
async fn client_id_must_match_the_client() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let cert = xsuaa.issue_client_cert(ClientCertOpts::default());
    for form in [
        vec![("grant_type", "client_credentials"), ("client_id", "sb-other!t9")],
        vec![("grant_type", "client_credentials")],
    ] {
        let (status, body) = post_token(&mtls_client(&xsuaa, &cert), &xsuaa.cert_url(), &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid_client");
    }
}

#[tokio::test]
async fn x509_client_cannot_use_the_secret_endpoint() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let client_id = xsuaa.client_id();
    let (status, body) = post_token(
        &client(&xsuaa),
        &xsuaa.url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", "guess"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(xsuaa.secret_credentials().is_err());
}

#[tokio::test]
async fn shutdown_stops_the_listeners() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let http = client(&xsuaa);
    let url = format!("{}/token_keys", xsuaa.url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    xsuaa.shutdown().await;
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
}
