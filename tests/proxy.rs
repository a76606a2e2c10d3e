//! Forwarding to destinations: backend failures become 502/504, HTTP/2 clients reach HTTP/1.1
//! backends, responses are compressed by the reference's rules, backend cookies reach the client.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;
use support::{backend, client, gateway, refusing, Gateway};

/// A failure must be answered well before this.
const QUICK: Duration = Duration::from_secs(5);

/// One catch-all public route to `backend`.
fn public_routes() -> serde_json::Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    })
}

#[tokio::test]
async fn dead_backend_is_502_quickly() {
    let dead = refusing();
    let router = gateway(public_routes())
        .destinations(&[("backend", &format!("http://{}", dead.addr))])
        .start()
        .await;
    let started = Instant::now();
    let response = client().get(router.url("/anything")).send().await.expect("response");
    assert_eq!(response.status(), 502);
    assert!(started.elapsed() < QUICK, "502 took {:?}", started.elapsed());
    assert_eq!(response.text().await.unwrap(), "Bad Gateway");
}

#[tokio::test]
async fn hanging_backend_is_504_after_the_destination_timeout() {
    let backend = backend().await;
    let router = gateway(public_routes())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "timeout": 300}]))
        .start()
        .await;
    let started = Instant::now();
    let response = client().get(router.url("/hang")).send().await.expect("response");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(elapsed < QUICK, "504 took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(300),
        "504 before the timeout: {elapsed:?}"
    );
    assert_eq!(
        backend.next().await.uri,
        "/hang",
        "the request must have reached the backend"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_client_reaches_an_http1_backend() {
    let backend = backend().await;
    let router = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .start()
        .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .expect("h2 client");

    let response = h2.get(router.url("/echo?x=1")).send().await.expect("h2 GET");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value = response.json().await.expect("echo JSON");
    assert_eq!(echo["path"], "/echo?x=1");
    let seen = backend.next().await;
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers.get("host").unwrap(), backend.addr.to_string().as_str());

    let response = h2
        .post(router.url("/count"))
        .body(vec![b'a'; 100_000])
        .send()
        .await
        .expect("h2 POST");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "100000");
    assert_eq!(backend.next().await.version, http::Version::HTTP_11);
}

#[tokio::test]
async fn backend_cookies_reach_the_client_on_a_public_route() {
    let backend = backend().await;
    let router = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .start()
        .await;
    let response = client().get(router.url("/cookie")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        cookies.contains(&"BPERSIST=persist-1; Max-Age=3600; Path=/"),
        "{cookies:?}"
    );
    assert!(cookies.contains(&"BSESSION=backend-session-1; Path=/"), "{cookies:?}");
}

struct CompressionRow {
    name: &'static str,
    /// Which router: `true` for the one with `COMPRESSION={"enabled":false}`.
    disabled: bool,
    path: &'static str,
    accept_encoding: Option<&'static str>,
    /// The `Content-Encoding` the client must get (`None`: not compressed).
    encoding: Option<&'static str>,
}

const COMPRESSION_ROWS: &[CompressionRow] = &[
    CompressionRow {
        name: "text over the threshold, gzip",
        disabled: false,
        path: "/text/5000",
        accept_encoding: Some("gzip"),
        encoding: Some("gzip"),
    },
    CompressionRow {
        name: "text over the threshold, br",
        disabled: false,
        path: "/text/5000",
        accept_encoding: Some("br"),
        encoding: Some("br"),
    },
    CompressionRow {
        name: "client accepts no encoding",
        disabled: false,
        path: "/text/5000",
        accept_encoding: None,
        encoding: None,
    },
    CompressionRow {
        name: "text under the 1024-byte threshold",
        disabled: false,
        path: "/text/100",
        accept_encoding: Some("gzip"),
        encoding: None,
    },
    CompressionRow {
        name: "binary content type",
        disabled: false,
        path: "/bytes/5000",
        accept_encoding: Some("gzip"),
        encoding: None,
    },
    CompressionRow {
        name: "COMPRESSION disabled",
        disabled: true,
        path: "/text/5000",
        accept_encoding: Some("gzip"),
        encoding: None,
    },
];

/// The text the backend's `/text/N` answers.
fn backend_text(length: usize) -> String {
    "lorem ipsum dolor sit amet ".repeat(length / 27 + 1)[..length].to_string()
}

#[tokio::test]
async fn compression_follows_size_type_and_settings() {
    let backend = backend().await;
    let enabled = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .start()
        .await;
    let disabled = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .env("COMPRESSION", r#"{"enabled":false}"#)
        .start()
        .await;
    // Sees the encoded bytes: no automatic decompression.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_proxy()
        .build()
        .expect("client");
    let mut failures = Vec::new();
    for row in COMPRESSION_ROWS {
        let router: &Gateway = if row.disabled { &disabled } else { &enabled };
        let mut request = raw.get(router.url(row.path));
        if let Some(accept) = row.accept_encoding {
            request = request.header("accept-encoding", accept);
        }
        let response = request.send().await.expect(row.name);
        if response.status() != 200 {
            failures.push(format!("{}: status {}", row.name, response.status()));
            continue;
        }
        let got = response
            .headers()
            .get("content-encoding")
            .map(|value| value.to_str().unwrap().to_string());
        if got.as_deref() != row.encoding {
            failures.push(format!(
                "{}: content-encoding {got:?}, want {:?}",
                row.name, row.encoding
            ));
        }
        let body = response.bytes().await.expect("body");
        let length: usize = row.path.rsplit('/').next().unwrap().parse().unwrap();
        if row.encoding.is_some() && body.len() >= length {
            failures.push(format!("{}: {} encoded bytes for {length}", row.name, body.len()));
        }
        if row.encoding.is_none() && body.len() != length {
            failures.push(format!("{}: {} bytes, want {length} unencoded", row.name, body.len()));
        }
    }
    assert!(failures.is_empty(), "compression rows failed:\n{}", failures.join("\n"));

    // And what was compressed decodes to what the backend sent.
    let decoding = client();
    for accept in ["gzip", "br"] {
        let text = decoding
            .get(enabled.url("/text/5000"))
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("response")
            .text()
            .await
            .expect("decoded body");
        assert_eq!(text, backend_text(5000), "{accept} round trip");
    }
}
