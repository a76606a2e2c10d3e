//! Shared helpers for the integration tests: HTTPS clients that trust the
//! dev CA and never follow redirects, PKCE, and a scripted login.

#![allow(
    dead_code,
    reason = "every test crate compiles this module and uses a different part of it"
)]

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{redirect, Certificate, Client, Identity, StatusCode};
use serde_json::Value;
use url::Url;
use xsuaa_dev::{ClientCert, DevXsuaa};

/// The callback the tests register; its query must survive code appending.
pub const REDIRECT: &str = "http://localhost:5000/login/callback?from=test";

fn builder(xsuaa: &DevXsuaa) -> reqwest::ClientBuilder {
    let ca = Certificate::from_pem(xsuaa.ca_pem().as_bytes()).expect("ca pem");
    Client::builder()
        .tls_certs_only([ca])
        .redirect(redirect::Policy::none())
}

/// A client without a client certificate.
pub fn client(xsuaa: &DevXsuaa) -> Client {
    builder(xsuaa).build().expect("client")
}

/// A client presenting `cert` (chain + key PEM).
pub fn mtls_client(xsuaa: &DevXsuaa, cert: &ClientCert) -> Client {
    let pem = format!("{}{}", cert.cert_pem, cert.key_pem);
    let identity = Identity::from_pem(pem.as_bytes()).expect("identity pem");
    builder(xsuaa).identity(identity).build().expect("mtls client")
}

/// The certificate and key of an x509 credentials object.
pub fn cert_of(credentials: &Value) -> ClientCert {
    let cert_pem = credentials["certificate"].as_str().expect("certificate").to_string();
    let key_pem = credentials["key"].as_str().expect("key").to_string();
    let leaf_b64: String = cert_pem
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(leaf_b64).expect("der");
    let sha256_fingerprint = digest::digest(&digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ClientCert {
        cert_pem,
        key_pem,
        sha256_fingerprint,
    }
}

/// A PKCE (verifier, S256 challenge) pair.
pub fn pkce(verifier: &str) -> (String, String) {
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    (verifier.to_string(), challenge)
}

/// Runs /oauth/authorize and returns the `Location` of the redirect.
pub async fn authorize_location(xsuaa: &DevXsuaa, challenge: Option<&str>) -> Url {
    let mut url = Url::parse(&format!("{}/oauth/authorize", xsuaa.url())).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &xsuaa.client_id())
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "st&te=1");
    if let Some(challenge) = challenge {
        url.query_pairs_mut()
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
    }
    let resp = client(xsuaa).get(url).send().await.expect("authorize");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().expect("location");
    Url::parse(location).expect("location url")
}

/// The value of one query parameter.
pub fn param(url: &Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// Logs in and returns the authorization code.
pub async fn login(xsuaa: &DevXsuaa, challenge: Option<&str>) -> String {
    let location = authorize_location(xsuaa, challenge).await;
    param(&location, "code").expect("code in redirect")
}

/// POSTs a form to `{base}/oauth/token`, returning status and JSON body.
pub async fn post_token(client: &Client, base: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = client
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}
