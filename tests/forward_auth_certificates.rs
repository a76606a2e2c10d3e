//! `forwardAuthCertificates` and `HTML5.ForwardAuthCertificates`: a backend that demands a client
//! certificate from the development XSUAA's CA gets the XSUAA binding's certificate, and after a
//! rotation the new one on a new connection; without the flag, or without a certificate in the
//! binding, nothing reaches it.

mod support;

use approuter::idp::rotation::{Reload, Trigger};
use serde_json::{json, Value};
use support::backend::{tls_backend, Backend};
use support::pki::{server_config, server_config_demanding_client, TestCa};
use support::{client, gateway, Gateway, GatewayBuilder};
use xsuaa_dev::{ClientCertOpts, DevXsuaa};

const BINDING: &str = "my-xsuaa";

fn app() -> Value {
    json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/mtls/(.*)$", "target": "/$1", "destination": "mtls"},
            {"source": "^/plain/(.*)$", "target": "/$1", "destination": "plain"}
        ]
    })
}

/// A route to the Destination service's `svc-mtls`.
fn service_app() -> Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/svc/(.*)$", "target": "/$1", "destination": "svc-mtls"}]
    })
}

/// A backend over HTTPS (its certificate from `ca`) that demands a client certificate of `dev`'s
/// CA, HTTP/1.1 only so that connection reuse is visible.
async fn demanding_backend(ca: &TestCa, dev: &DevXsuaa) -> Backend {
    tls_backend(server_config_demanding_client(ca, &dev.ca_pem(), &[b"http/1.1"])).await
}

/// Both CAs the router must trust: the development XSUAA's and the backend's.
fn trust(builder: GatewayBuilder, dev: &DevXsuaa, ca: &TestCa) -> GatewayBuilder {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("ca.pem");
    std::fs::write(&path, format!("{}\n{}", dev.ca_pem(), ca.pem)).expect("CA file");
    builder.env("XS_CACERT_PATH", path.display().to_string()).keep(folder)
}

fn env_destinations(backend: &Backend) -> Value {
    let url = format!("https://127.0.0.1:{}", backend.addr.port());
    json!([
        {"name": "mtls", "url": url, "forwardAuthCertificates": true},
        {"name": "plain", "url": url}
    ])
}

/// The DER of the leaf certificate in a binding's `certificate`.
fn leaf(credentials: &Value) -> Vec<u8> {
    let pem = credentials["certificate"].as_str().expect("certificate");
    approuter::tls::certificates(pem).expect("PEM")[0].to_vec()
}

/// A router with the XSUAA binding under `SERVICE_BINDING_ROOT`, so that it can rotate.
async fn router_with_binding_files(dev: &DevXsuaa, ca: &TestCa, backend: &Backend) -> (Gateway, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    dev.write_binding_dir(root.path(), BINDING, &dev.credentials())
        .expect("binding files");
    let root_path = root.path().to_path_buf();
    let builder = gateway(app())
        .destination_entries(env_destinations(backend))
        .env("SERVICE_BINDING_ROOT", root.path().display().to_string())
        // Only the explicit reload below rotates.
        .env("BINDING_POLL_INTERVAL_MS", "3600000")
        .keep(root);
    (trust(builder, dev, ca).start().await, root_path)
}

async fn get(router: &Gateway, path: &str) -> reqwest::Response {
    client().get(router.url(path)).send().await.expect("response")
}

#[tokio::test]
async fn the_binding_certificate_is_presented_only_with_the_flag() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let ca = TestCa::new();
    let backend = demanding_backend(&ca, &dev).await;
    let builder = gateway(app())
        .xsuaa(&dev, &dev.credentials())
        .destination_entries(env_destinations(&backend));
    let router = trust(builder, &dev, &ca).start().await;

    let response = get(&router, "/mtls/hello").await;
    assert_eq!(response.status(), 200);
    let seen = backend.next().await;
    assert_eq!(seen.uri, "/hello");
    assert_eq!(
        seen.client_certificate,
        Some(leaf(&dev.credentials())),
        "the backend sees the binding's certificate"
    );

    // The same backend without the flag: the handshake is refused, nothing reaches it.
    let response = get(&router, "/plain/hello").await;
    assert_eq!(response.status(), 502);
    assert_eq!(backend.seen().len(), 1, "no request passed without a certificate");
}

#[tokio::test]
async fn xsuaa_private_key_overrides_the_binding_key() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let ca = TestCa::new();
    let backend = demanding_backend(&ca, &dev).await;
    let credentials = dev.credentials();
    let key = credentials["key"].as_str().expect("key").to_string();
    // The binding's own key belongs to another certificate: only the override makes a pair.
    let other = dev.issue_client_cert(ClientCertOpts::default());
    let mut wrong_key = credentials.clone();
    wrong_key["key"] = json!(other.key_pem);
    let builder = gateway(app())
        .xsuaa(&dev, &wrong_key)
        .env("XSUAA_PRIVATE_KEY", key)
        .destination_entries(env_destinations(&backend));
    let router = trust(builder, &dev, &ca).start().await;

    let response = get(&router, "/mtls/override").await;
    assert_eq!(response.status(), 200);
    assert_eq!(backend.next().await.client_certificate, Some(leaf(&credentials)));
}

#[tokio::test]
async fn xsuaa_private_key_completes_a_binding_without_a_key() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let ca = TestCa::new();
    let backend = demanding_backend(&ca, &dev).await;
    let credentials = dev.credentials();
    let key = credentials["key"].as_str().expect("key").to_string();
    let mut without_key = credentials.clone();
    without_key.as_object_mut().expect("object").remove("key");
    let builder = gateway(app())
        .xsuaa(&dev, &without_key)
        .env("XSUAA_PRIVATE_KEY", key)
        .destination_entries(env_destinations(&backend));
    let router = trust(builder, &dev, &ca).start().await;

    let response = get(&router, "/mtls/completed").await;
    assert_eq!(response.status(), 200);
    assert_eq!(backend.next().await.client_certificate, Some(leaf(&credentials)));
}

#[tokio::test]
async fn after_a_rotation_new_connections_present_the_new_certificate() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let ca = TestCa::new();
    let backend = demanding_backend(&ca, &dev).await;
    let (router, root) = router_with_binding_files(&dev, &ca, &backend).await;

    let response = get(&router, "/mtls/before").await;
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
    assert_eq!(backend.next().await.client_certificate, Some(leaf(&dev.credentials())));
    assert_eq!(backend.connections(), 1);

    let fresh = dev.issue_client_cert(ClientCertOpts::default());
    let rotated = dev.credentials_with(&fresh);
    dev.write_binding_dir(&root, BINDING, &rotated).expect("binding files");
    let idp = router.state.auth.as_ref().expect("auth").idp.clone();
    assert_eq!(idp.reload(Trigger::Signal).await, Reload::Rotated);

    // The idle connection made with the old certificate is not reused.
    let response = get(&router, "/mtls/after").await;
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
    let seen = backend.next().await;
    assert_eq!(seen.uri, "/after");
    assert_eq!(seen.client_certificate, Some(leaf(&rotated)), "the rotated certificate");
    assert_eq!(backend.connections(), 2, "a new connection for the new certificate");

    // ... and the new one is pooled as usual.
    let response = get(&router, "/mtls/again").await;
    assert_eq!(response.status(), 200);
    assert_eq!(backend.next().await.client_certificate, Some(leaf(&rotated)));
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_destination_service_destination_with_the_property_presents_it() {
    let ca = TestCa::new();
    // The backend's address is needed for the destination, the development XSUAA's CA for the
    // backend: the destination is added once both run.
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let backend = demanding_backend(&ca, &dev).await;
    dev.set_destination(
        "svc-mtls",
        [
            ("URL", format!("https://127.0.0.1:{}", backend.addr.port())),
            ("ProxyType", "Internet".into()),
            ("Authentication", "NoAuthentication".into()),
            ("HTML5.ForwardAuthCertificates", "true".into()),
        ],
    );
    let builder = gateway(service_app()).services(&dev, &dev.credentials());
    let router = trust(builder, &dev, &ca).start().await;

    let response = get(&router, "/svc/found").await;
    assert_eq!(response.status(), 200);
    let seen = backend.next().await;
    assert_eq!(seen.uri, "/found");
    assert_eq!(seen.client_certificate, Some(leaf(&dev.credentials())));
}

#[tokio::test]
async fn a_secret_binding_refuses_the_env_destination_at_start_up() {
    let dev = DevXsuaa::builder()
        .client_secret("s3cret")
        .start()
        .await
        .expect("development XSUAA");
    let ca = TestCa::new();
    let backend = demanding_backend(&ca, &dev).await;
    let (_dir, config) = gateway(app())
        .xsuaa(&dev, &dev.secret_credentials().expect("secret credentials"))
        .destination_entries(env_destinations(&backend))
        .config();
    let errors = config.expect_err("no certificate to present").to_string();
    assert!(
        errors.contains("destinations: mtls.forwardAuthCertificates"),
        "{errors}"
    );
    assert!(!errors.contains("plain"), "{errors}");
}

#[tokio::test]
async fn a_secret_binding_answers_502_for_a_service_destination_with_the_property() {
    let dev = DevXsuaa::builder()
        .client_secret("s3cret")
        .start()
        .await
        .expect("development XSUAA");
    let ca = TestCa::new();
    // A backend that takes anyone: a request sent without the certificate would pass.
    let backend = tls_backend(server_config(&ca, &[b"http/1.1"])).await;
    dev.set_destination(
        "svc-mtls",
        [
            ("URL", format!("https://127.0.0.1:{}", backend.addr.port())),
            ("ProxyType", "Internet".into()),
            ("Authentication", "NoAuthentication".into()),
            ("HTML5.ForwardAuthCertificates", "true".into()),
        ],
    );
    let builder = gateway(service_app()).services(&dev, &dev.secret_credentials().expect("secret credentials"));
    let router = trust(builder, &dev, &ca).start().await;

    let response = get(&router, "/svc/refused").await;
    assert_eq!(response.status(), 502);
    assert!(
        backend.seen().is_empty(),
        "the request went out without the certificate"
    );
    assert_eq!(backend.connections(), 0);
}

/// The status a websocket handshake through `router` to `path` is answered with.
async fn upgrade_status(router: &Gateway, path: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}{path}", router.addr)
        .into_client_request()
        .expect("request");
    let origin = format!("http://{}", router.addr);
    request.headers_mut().insert("origin", origin.parse().expect("origin"));
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("no HTTP answer to the handshake: {error}"),
    }
}

#[tokio::test]
async fn a_websocket_handshake_presents_the_binding_certificate_too() {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let ca = TestCa::new();
    let backend = demanding_backend(&ca, &dev).await;
    let mut xs_app = app();
    xs_app["websockets"] = json!({"enabled": true});
    let builder = gateway(xs_app)
        .xsuaa(&dev, &dev.credentials())
        .destination_entries(env_destinations(&backend));
    let router = trust(builder, &dev, &ca).start().await;

    // The backend refuses the upgrade with 404, after the TLS handshake took the certificate.
    assert_eq!(upgrade_status(&router, "/mtls/status/404").await, 404);
    let seen = backend.next().await;
    assert_eq!(seen.headers["upgrade"], "websocket");
    assert_eq!(seen.client_certificate, Some(leaf(&dev.credentials())));

    assert_eq!(upgrade_status(&router, "/plain/status/404").await, 502);
    assert_eq!(backend.seen().len(), 1, "no handshake passed without a certificate");
}
