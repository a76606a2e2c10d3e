//! The admin listener: `/healthz`, `/readyz` flipping when the identity provider or the session
//! store goes away and comes back, and `/metrics` parsed and checked against a scripted set of
//! requests.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::idp::{dev_xsuaa, Browser};
use support::redis::RedisServer;
use support::{backend, client, gateway, Backend, Gateway};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use xsuaa_dev::{ClientCertOpts, DevXsuaa};

/// Starts the admin endpoints for `router` on `127.0.0.1:0`.
async fn admin(router: &Gateway) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(approuter::server::admin::run(
        listener,
        router.state.clone(),
        std::future::pending(),
    ));
    addr
}

async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let response = client()
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn readiness(admin: SocketAddr) -> (u16, Value) {
    let (status, body) = get(admin, "/readyz").await;
    (status, serde_json::from_str(&body).expect("readiness JSON"))
}

/// A TCP relay that can be switched off (refusing new connections and cutting open ones) and on.
struct Relay {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(target: SocketAddr) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (up, up_rx) = watch::channel(true);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let mut up_rx = up_rx.clone();
            if !*up_rx.borrow_and_update() {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = up_rx.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    Relay { addr, up, task }
}

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/down/(.*)$", "target": "/$1", "destination": "down", "authenticationType": "none"}
        ]
    })
}

async fn router(dev: &DevXsuaa, credentials: &Value, backend: &Backend, extra: &[(&str, &str)]) -> Gateway {
    // A port nobody listens on: bound, then released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut builder = gateway(app())
        .destination_entries(json!([
            {"name": "backend", "url": backend.url(), "forwardAuthToken": true},
            {"name": "down", "url": format!("http://{closed}")}
        ]))
        .xsuaa(dev, credentials);
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

#[tokio::test]
async fn readiness_follows_the_identity_provider_away_and_back() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let idp_addr: SocketAddr = dev.uaa_domain().parse().expect("uaadomain is host:port");
    let relay = relay(idp_addr).await;
    // Token keys come from `uaadomain`: through the relay.
    let mut credentials = dev.credentials();
    credentials["uaadomain"] = Value::String(relay.addr.to_string());
    let router = router(&dev, &credentials, &backend, &[]).await;
    let admin = admin(&router).await;

    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".to_string()));
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ready"], true);
    for check in ["config", "session_store", "idp_keys", "client_certificate"] {
        assert_eq!(report["checks"][check]["ok"], true, "{check}: {report}");
    }

    relay.up.send_replace(false);
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["ready"], false);
    assert_eq!(report["checks"]["idp_keys"]["ok"], false, "{report}");
    assert_eq!(report["checks"]["session_store"]["ok"], true, "{report}");
    assert_eq!(get(admin, "/healthz").await.0, 200, "alive while not ready");

    relay.up.send_replace(true);
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 200, "{report}");

    // The identity provider itself shuts down: its keys cannot be fetched.
    dev.shutdown().await;
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["checks"]["idp_keys"]["ok"], false, "{report}");
}

#[tokio::test]
async fn readiness_follows_the_session_store_away_and_back() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("SESSION_SECRET", "readiness-session-secret-0123456789"),
    ];
    let router = router(&dev, &dev.credentials(), &backend, &env).await;
    let admin = admin(&router).await;
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 200, "{report}");

    redis.crash().await;
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["checks"]["session_store"]["ok"], false, "{report}");
    assert_eq!(report["checks"]["idp_keys"]["ok"], true, "{report}");

    redis.restart().await;
    // The store reconnects in the background with a short backoff: a bounded wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = readiness(admin).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready 10 s after Redis came back: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_fails_with_an_expired_client_certificate() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let now = SystemTime::now();
    let expired = dev.issue_client_cert(ClientCertOpts {
        not_before: now - Duration::from_secs(7200),
        not_after: now - Duration::from_secs(60),
        ..ClientCertOpts::default()
    });
    let router = router(&dev, &dev.credentials_with(&expired), &backend, &[]).await;
    let admin = admin(&router).await;
    let (status, report) = readiness(admin).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["checks"]["client_certificate"]["ok"], false, "{report}");
    assert_eq!(report["checks"]["idp_keys"]["ok"], true, "{report}");
}

/// Sample lines of an OpenMetrics text by series (`name{labels}`), checking every line's shape.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker");
    let mut samples = HashMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(
            series.chars().next().is_some_and(|c| c.is_ascii_alphabetic()),
            "bad series name: {line:?}"
        );
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate series: {line:?}"
        );
    }
    samples
}

#[tokio::test]
async fn metrics_count_a_scripted_set_of_requests() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &dev.credentials(), &backend, &[]).await;
    let admin = admin(&router).await;
    let http = client();

    // A login: the login page (route 0), the callback (no route), the original request (route 0).
    let browser = Browser::new(&dev);
    let (response, _) = browser.navigate(&router.url("/api/orders")).await;
    assert_eq!(response.status(), 200);
    for path in ["/open/a", "/open/b", "/open/c"] {
        assert_eq!(http.get(router.url(path)).send().await.unwrap().status(), 200);
    }
    let statuses = [
        ("/open/status/404", 404),
        ("/nothing-routes-here", 404),
        ("/login/callback?state=forged&code=x", 401),
        ("/down/x", 502),
    ];
    for (path, expected) in statuses {
        assert_eq!(
            http.get(router.url(path)).send().await.unwrap().status(),
            expected,
            "{path}"
        );
    }
    let xhr = http
        .get(router.url("/api/data"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(xhr.status(), 401);

    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    let expected: &[(&str, f64)] = &[
        (r#"approuter_requests_total{route="0",status_class="2xx"}"#, 2.0),
        (r#"approuter_requests_total{route="0",status_class="4xx"}"#, 1.0),
        (r#"approuter_requests_total{route="1",status_class="2xx"}"#, 3.0),
        (r#"approuter_requests_total{route="1",status_class="4xx"}"#, 1.0),
        (r#"approuter_requests_total{route="2",status_class="5xx"}"#, 1.0),
        (r#"approuter_requests_total{route="none",status_class="3xx"}"#, 1.0),
        (r#"approuter_requests_total{route="none",status_class="4xx"}"#, 2.0),
        (r#"approuter_requests_total{route="1",status_class="5xx"}"#, 0.0),
        (r#"approuter_request_duration_seconds_count{route="1"}"#, 4.0),
        (r#"approuter_upstream_duration_seconds_count{route="1"}"#, 4.0),
        (r#"approuter_upstream_duration_seconds_count{route="0"}"#, 1.0),
        (r#"approuter_upstream_errors_total{kind="connect"}"#, 1.0),
        ("approuter_logins_started_total", 1.0),
        ("approuter_logins_completed_total", 1.0),
        (r#"approuter_logins_failed_total{reason="state_invalid"}"#, 1.0),
        (
            r#"approuter_token_requests_total{grant="authorization_code",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"approuter_token_request_duration_seconds_count{grant="authorization_code"}"#,
            1.0,
        ),
        (r#"approuter_jwks_fetches_total{outcome="ok"}"#, 1.0),
        ("approuter_sessions", 1.0),
        ("approuter_session_store_errors_total", 0.0),
    ];
    let mut wrong = Vec::new();
    for (series, value) in expected {
        if samples.get(*series) != Some(value) {
            wrong.push(format!("{series}: expected {value}, got {:?}", samples.get(*series)));
        }
    }
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));
    let client_expiry = samples[r#"approuter_certificate_expiry_seconds{certificate="client"}"#];
    assert!(
        client_expiry > 3600.0 && client_expiry <= 8.0 * 86_400.0,
        "{client_expiry}"
    );
    assert!(samples["approuter_connections_total"] >= 1.0);
    // Labels never carry paths.
    assert!(
        !text.contains("/open/") && !text.contains("nothing-routes-here"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_be_switched_off_and_unknown_paths_are_404() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &dev.credentials(), &backend, &[("METRICS", "false")]).await;
    let admin = admin(&router).await;
    assert_eq!(get(admin, "/metrics").await.0, 404);
    assert_eq!(get(admin, "/elsewhere").await.0, 404);
    assert_eq!(get(admin, "/healthz").await.0, 200);
}
