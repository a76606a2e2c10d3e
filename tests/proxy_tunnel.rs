//! Destinations behind an HTTP proxy (`proxyHost`/`proxyPort`): every connection goes through a
//! `CONNECT` tunnel, for `http` and `https` origins alike, and a proxy that refuses the tunnel
//! makes the request a 502.

mod support;

use serde_json::json;
use support::pki::{server_config, TestCa};
use support::tunnel::{connect_proxy, refusing_proxy};
use support::{backend, client, gateway, GatewayBuilder};

/// The one destination, `backend` at `url`, behind the proxy listening on loopback `proxy_port`.
fn behind_proxy(url: &str, proxy_port: u16) -> serde_json::Value {
    json!({"name": "backend", "url": url, "proxyHost": "127.0.0.1", "proxyPort": proxy_port})
}

fn public_routes() -> GatewayBuilder {
    gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
}

#[tokio::test]
async fn http_destination_is_reached_through_the_proxy_tunnel() {
    let backend = backend().await;
    let mut proxy = connect_proxy().await;
    let router = public_routes()
        .destination_entries(json!([behind_proxy(&backend.url(), proxy.addr.port())]))
        .start()
        .await;
    let client = client();
    for index in 0..3 {
        // Bodiless GETs and a POST: the inline client must not take a proxied destination's.
        let response = client
            .get(router.url(&format!("/tunnelled/{index}")))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("body");
    }
    let response = client
        .post(router.url("/posted"))
        .body("payload")
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.next_request().await,
        format!("CONNECT 127.0.0.1:{} HTTP/1.1", backend.addr.port())
    );
    assert_eq!(backend.seen().len(), 4);
    assert_eq!(backend.connections(), 1, "the tunnelled connection is reused");
}

#[tokio::test]
async fn https_destination_is_verified_through_the_proxy_tunnel() {
    let ca = TestCa::new();
    let backend = support::backend::tls_backend(server_config(&ca, &[b"h2", b"http/1.1"])).await;
    let mut proxy = connect_proxy().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("ca.pem");
    std::fs::write(&path, &ca.pem).expect("CA file");
    let proxy_port = proxy.addr.port();
    let entry = |strict: bool| {
        let mut entry = behind_proxy(&format!("https://127.0.0.1:{}", backend.addr.port()), proxy_port);
        entry["strictSSL"] = json!(strict);
        json!([entry])
    };
    let trusting = public_routes()
        .destination_entries(entry(true))
        .env("XS_CACERT_PATH", path.display().to_string())
        .keep(folder)
        .start()
        .await;
    let response = client().get(trusting.url("/trusted")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.next_request().await,
        format!("CONNECT 127.0.0.1:{} HTTP/1.1", backend.addr.port())
    );
    assert_eq!(
        backend.seen()[0].version,
        http::Version::HTTP_2,
        "ALPN through the tunnel"
    );

    // Without the CA among its roots the router refuses the certificate, unless strictSSL is off.
    let strict = public_routes().destination_entries(entry(true)).start().await;
    let response = client().get(strict.url("/untrusted")).send().await.expect("response");
    assert_eq!(response.status(), 502);
    let relaxed = public_routes().destination_entries(entry(false)).start().await;
    let response = client().get(relaxed.url("/relaxed")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    // HTTP/2 requests carry the absolute URI.
    let origin = format!("https://127.0.0.1:{}", backend.addr.port());
    let paths: Vec<String> = backend.seen().into_iter().map(|seen| seen.uri).collect();
    assert_eq!(paths, [format!("{origin}/trusted"), format!("{origin}/relaxed")]);
}

#[tokio::test]
async fn refused_tunnel_is_502() {
    let backend = backend().await;
    let mut proxy = refusing_proxy(403).await;
    let router = public_routes()
        .destination_entries(json!([behind_proxy(&backend.url(), proxy.addr.port())]))
        .start()
        .await;
    let response = client().get(router.url("/refused")).send().await.expect("response");
    assert_eq!(response.status(), 502);
    assert!(proxy.next_request().await.starts_with("CONNECT 127.0.0.1:"));
    assert!(backend.seen().is_empty());
}
