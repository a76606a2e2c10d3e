//! HTTPS destinations: the certificate is checked against the trust roots (`XS_CACERT_PATH`)
//! unless `strictSSL` is off, HTTP/2 is used where the backend offers it by ALPN (one connection
//! carries concurrent requests), and HTTP/1.1 connections are reused.

mod support;

use serde_json::json;
use support::pki::{server_config, TestCa};
use support::{client, gateway, Backend, Gateway};

fn public_routes() -> serde_json::Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    })
}

/// A router whose destination `backend` is `backend` over HTTPS, trusting `ca` when given.
async fn router(backend: &Backend, ca: Option<&TestCa>, strict_ssl: bool) -> Gateway {
    let url = format!("https://127.0.0.1:{}", backend.addr.port());
    let mut builder =
        gateway(public_routes()).destination_entries(json!([{"name": "backend", "url": url, "strictSSL": strict_ssl}]));
    if let Some(ca) = ca {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = folder.path().join("ca.pem");
        std::fs::write(&path, &ca.pem).expect("CA file");
        builder = builder.env("XS_CACERT_PATH", path.display().to_string()).keep(folder);
    }
    builder.start().await
}

#[tokio::test]
async fn https_destination_offering_h2_carries_concurrent_requests_on_one_connection() {
    let ca = TestCa::new();
    let backend = support::backend::tls_backend(server_config(&ca, &[b"h2", b"http/1.1"])).await;
    let router = router(&backend, Some(&ca), true).await;
    // The first request learns that the origin speaks HTTP/2 (ALPN); a burst before that would
    // open a connection per request, as nothing says yet that one can carry them all.
    let response = client().get(router.url("/first")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
    let mut requests = Vec::new();
    for index in 0..20 {
        // Separate client connections, all at once.
        let url = router.url(&format!("/h2/{index}"));
        requests.push(tokio::spawn(async move {
            let response = client().get(url).send().await.expect("response");
            assert_eq!(response.status(), 200);
            let echo: serde_json::Value = response.json().await.expect("echo");
            echo["path"].as_str().expect("path").to_string()
        }));
    }
    let mut paths = futures_util::future::try_join_all(requests).await.expect("requests");
    paths.sort();
    assert_eq!(paths.len(), 20);
    let seen = backend.seen();
    assert_eq!(seen.len(), 21);
    assert!(
        seen.iter().all(|seen| seen.version == http::Version::HTTP_2),
        "versions: {:?}",
        seen.iter().map(|seen| seen.version).collect::<Vec<_>>()
    );
    assert_eq!(backend.connections(), 1, "one HTTP/2 connection for every request");
}

#[tokio::test]
async fn https_destination_over_http1_reuses_its_connection() {
    let ca = TestCa::new();
    let backend = support::backend::tls_backend(server_config(&ca, &[b"http/1.1"])).await;
    let router = router(&backend, Some(&ca), true).await;
    let client = client();
    for index in 0..10 {
        let response = client
            .get(router.url(&format!("/h1/{index}")))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("body");
    }
    assert!(backend.seen().iter().all(|seen| seen.version == http::Version::HTTP_11));
    assert_eq!(backend.connections(), 1, "sequential requests share one TLS connection");
}

#[tokio::test]
async fn untrusted_destination_certificate_is_502_unless_strict_ssl_is_off() {
    let ca = TestCa::new();
    let backend = support::backend::tls_backend(server_config(&ca, &[b"h2", b"http/1.1"])).await;
    // The CA is not among the router's trust roots.
    let strict = router(&backend, None, true).await;
    let response = client().get(strict.url("/strict")).send().await.expect("response");
    assert_eq!(response.status(), 502);
    assert!(backend.seen().is_empty(), "a request passed an untrusted certificate");

    let relaxed = router(&backend, None, false).await;
    let response = client().get(relaxed.url("/relaxed")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(backend.seen().len(), 1);
}
