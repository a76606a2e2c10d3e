//! Protection and tracing on real sockets: the limit on failed logins per client address, the request body limit (declared and streamed), load shedding past
//! `MAX_IN_FLIGHT`, the connection cap, W3C trace context towards destinations, and the
//! configuration errors of these settings.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use support::idp::{dev_xsuaa, Browser};
use support::raw::PATIENCE;
use support::{backend, client, gateway, Backend, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xsuaa_dev::DevXsuaa;

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/slow/(.*)$", "target": "/$1", "destination": "slow", "authenticationType": "none"}
        ]
    })
}

async fn router(dev: &DevXsuaa, backend: &Backend, env: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(app())
        .destination_entries(json!([
            {"name": "backend", "url": backend.url()},
            {"name": "slow", "url": backend.url(), "timeout": 500}
        ]))
        .xsuaa(dev, &dev.credentials());
    for (name, value) in env {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

/// The value of one sample of the router's metrics.
fn metric(router: &Gateway, series: &str) -> Option<f64> {
    router.state.metrics.refresh_in_flight();
    router
        .state
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn callback_floods_are_limited_per_client_address() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    // One trusted proxy in front: its X-Forwarded-For entry (the last) names the client.
    let router = router(
        &dev,
        &backend,
        &[("LOGIN_RATE_LIMIT", "3"), ("CLIENT_IP_FORWARDED_HOPS", "1")],
    )
    .await;
    let callback = router.url("/login/callback?state=forged&code=x");
    let http = client();
    let cases: &[(&str, &str, u16)] = &[
        ("first client, 1", "203.0.113.5", 401),
        ("first client, 2", "203.0.113.5", 401),
        ("first client, 3", "203.0.113.5", 401),
        ("first client over the limit", "203.0.113.5", 429),
        (
            "a spoofed leftmost entry changes nothing",
            "198.51.100.1, 203.0.113.5",
            429,
        ),
        ("another client has its own bucket", "203.0.113.6", 401),
    ];
    for (name, forwarded_for, expected) in cases {
        let response = http
            .get(&callback)
            .header("x-forwarded-for", *forwarded_for)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), *expected, "{name}");
        if *expected == 429 {
            let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{name}: retry-after {retry}");
        }
    }
    assert_eq!(
        metric(
            &router,
            r#"approuter_requests_refused_total{reason="login_rate_limit"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&router, r#"approuter_logins_failed_total{reason="state_invalid"}"#),
        Some(4.0)
    );
}

#[tokio::test]
async fn login_starts_cost_nothing_until_the_address_fails_too_often() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[("LOGIN_RATE_LIMIT", "2")]).await;
    let http = client();
    let status = |url: String| {
        let http = &http;
        async move { http.get(url).send().await.expect("request").status().as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(status(router.url("/api/x")).await);
    }
    for _ in 0..2 {
        statuses.push(status(router.url("/login/callback?state=forged&code=x")).await);
    }
    statuses.push(status(router.url("/api/x")).await);
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 401, 401, 429],
        "starts are free; two failures use up the limit and the next start is refused"
    );
    assert_eq!(metric(&router, "approuter_logins_started_total"), Some(4.0));
    // A browser that already has a session is not affected by the limit on logins.
    let fresh = router_with_session(&dev, &backend).await;
    assert_eq!(fresh, 200);
}

/// A browser that logs in under `LOGIN_RATE_LIMIT=2`, then sends requests with its session;
/// returns the last status.
async fn router_with_session(dev: &DevXsuaa, backend: &Backend) -> u16 {
    let router = router(dev, backend, &[("LOGIN_RATE_LIMIT", "2")]).await;
    let browser = Browser::new(dev);
    let (response, _) = browser.navigate(&router.url("/api/first")).await;
    assert_eq!(response.status(), 200);
    let mut last = 0;
    for _ in 0..5 {
        last = browser
            .client
            .get(router.url("/api/more"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
    }
    last
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_413() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[("MAX_REQUEST_BODY", "1024")]).await;
    let http = client();
    let chunked = |chunks: usize| {
        let stream =
            futures_util::stream::iter((0..chunks).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 512]))));
        reqwest::Body::wrap_stream(stream)
    };
    let cases: Vec<(&str, reqwest::Body, u16, Option<&str>)> = vec![
        (
            "declared, at the limit",
            reqwest::Body::from(vec![b'x'; 1024]),
            200,
            Some("1024"),
        ),
        (
            "declared, over the limit",
            reqwest::Body::from(vec![b'x'; 1025]),
            413,
            None,
        ),
        ("streamed, under the limit", chunked(1), 200, Some("512")),
        ("streamed, over the limit", chunked(8), 413, None),
    ];
    for (name, body, expected, answer) in cases {
        let response = http
            .post(router.url("/open/count"))
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), expected, "{name}");
        let text = response.text().await.unwrap_or_default();
        if let Some(answer) = answer {
            assert_eq!(text, answer, "{name}");
        }
    }
    // The declared oversize body never reached the backend (the streamed one was cut on the way).
    let seen = backend.seen();
    assert!(
        seen.iter()
            .all(|seen| seen.headers.get("content-length").is_none_or(|v| v != "1025")),
        "{seen:?}"
    );
    assert_eq!(
        metric(&router, r#"approuter_requests_refused_total{reason="body_too_large"}"#),
        Some(2.0)
    );
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_shed_with_503() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[("MAX_IN_FLIGHT", "1")]).await;
    let http = client();
    // Holds the only slot until the destination's 500 ms timeout answers it with 504.
    let slow = tokio::spawn(http.get(router.url("/slow/hang")).send());
    backend.next_matching(|seen| seen.uri == "/hang").await;
    let shed = http.get(router.url("/open/fast")).send().await.expect("request");
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(metric(&router, "approuter_requests_in_flight"), Some(1.0));
    assert_eq!(slow.await.expect("task").expect("slow request").status(), 504);
    let after = http.get(router.url("/open/fast")).send().await.expect("request");
    assert_eq!(after.status(), 200, "the slot is free again");
    assert_eq!(
        metric(&router, r#"approuter_requests_refused_total{reason="in_flight"}"#),
        Some(1.0)
    );
    assert_eq!(metric(&router, "approuter_requests_in_flight"), Some(0.0));
}

/// Sends a keep-alive request on `stream` and reads its status line, within `patience`.
async fn status_on(stream: &mut TcpStream, path: &str, patience: Duration) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        while !received.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buffer).await.expect("read");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&received)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    tokio::time::timeout(patience, read).await.ok()
}

#[tokio::test]
async fn at_max_connections_new_clients_wait_until_one_closes() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[("MAX_CONNECTIONS", "1")]).await;
    let mut first = TcpStream::connect(router.addr).await.expect("connect");
    let line = status_on(&mut first, "/open/one", PATIENCE)
        .await
        .expect("first answered");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut second = TcpStream::connect(router.addr)
        .await
        .expect("the kernel accepts into the backlog");
    let pending = async {
        let mut buffer = [0u8; 64];
        second
            .write_all(b"GET /open/two HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_millis(300), second.read(&mut buffer)).await
    };
    assert!(
        pending.await.is_err(),
        "the second connection was served while the first was open"
    );
    drop(first);
    let mut buffer = [0u8; 64];
    let n = tokio::time::timeout(PATIENCE, second.read(&mut buffer))
        .await
        .expect("served once the first connection closed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn trace_context_reaches_destinations() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("absent: a new trace starts", None, false),
        ("valid: passed through with tracestate", Some(valid), true),
        ("invalid: replaced, tracestate dropped", Some("00-xyz-01"), false),
    ];
    for (index, (name, traceparent, kept)) in cases.iter().enumerate() {
        let path = format!("/open/trace{index}");
        let mut request = client().get(router.url(&path)).header("tracestate", "vendor=opaque");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", *traceparent);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200, "{name}");
        assert!(response.headers().contains_key("x-request-id"), "{name}");
        let seen = backend.next_matching(|seen| seen.uri == format!("/trace{index}")).await;
        let sent = seen.headers["traceparent"].to_str().unwrap();
        let fields: Vec<&str> = sent.split('-').collect();
        assert_eq!(fields.len(), 4, "{name}: {sent}");
        assert_eq!(
            (fields[0], fields[1].len(), fields[2].len()),
            ("00", 32, 16),
            "{name}: {sent}"
        );
        assert_eq!(*traceparent == Some(sent), *kept, "{name}: {sent}");
        assert_eq!(seen.headers.contains_key("tracestate"), *kept, "{name}");
    }
}

#[tokio::test]
async fn invalid_operation_settings_name_their_variable() {
    let cases: &[(&str, &str)] = &[
        ("MAX_CONNECTIONS", "many"),
        ("MAX_IN_FLIGHT", "-1"),
        ("MAX_REQUEST_BODY", "1k"),
        ("LOGIN_RATE_LIMIT", "fast"),
        ("CLIENT_IP_FORWARDED_HOPS", "one"),
        ("ADMIN_ADDRESS", "localhost"),
        ("TLS_RELOAD_INTERVAL", "0"),
        ("METRICS", "maybe"),
        ("ACCESS_LOG", "sometimes"),
    ];
    for (name, value) in cases {
        let (_dir, config) = gateway(json!({"authenticationMethod": "none", "routes": []}))
            .env(name, *value)
            .config();
        let errors = config.err().map(|errors| errors.to_string()).unwrap_or_default();
        assert!(errors.contains(name), "{name}={value}: {errors:?}");
    }
    let (_dir, config) = gateway(json!({"authenticationMethod": "none", "routes": []}))
        .env("ADMIN_ADDRESS", "off")
        .env("MAX_CONNECTIONS", "off")
        .env("LOGIN_RATE_LIMIT", "0")
        .config();
    let config = config.expect("off is a valid value");
    assert!(config.server.admin.is_none());
    assert!(config.server.max_connections.is_none());
    assert!(config.server.login_rate_limit.is_none());
}
