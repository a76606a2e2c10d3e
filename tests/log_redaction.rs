//! No token, cookie value or secret in any log line: every event at trace level is captured as
//! JSON while a browser logs in (mutual TLS and client secret), tokens are refreshed, requests
//! carry the session cookie and a bearer token, a callback is replayed and the user logs out.
//!
//! The subscriber is installed for this thread only, so each test runs its servers on a
//! current-thread runtime: every task, and every log event, stays on the test's thread.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use approuter::session::SessionId;
use serde_json::{json, Value};
use support::idp::{param, Browser};
use support::{backend, gateway, Gateway};
use tracing_subscriber::EnvFilter;
use xsuaa_dev::DevXsuaa;

/// Log lines of these targets come from the test's own client and identity provider.
const TEST_SIDE_TARGETS: &[&str] = &["xsuaa_dev", "reqwest", "cookie_store"];
const CLIENT_SECRET: &str = "client-secret-that-must-never-be-logged-7f3a";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `scenario` with every event captured as the router's JSON log lines; returns the lines
/// and what the scenario says must never appear in them.
fn captured(scenario: impl std::future::Future<Output = Vec<(String, String)>>) -> (Vec<Value>, Vec<(String, String)>) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = approuter::logging::subscriber(true, EnvFilter::new("trace"), move || writer.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let secrets = tracing::subscriber::with_default(subscriber, || runtime.block_on(scenario));
    drop(runtime);
    let bytes = capture.0.lock().expect("capture").clone();
    let text = String::from_utf8(bytes).expect("logs are UTF-8");
    let lines = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not one JSON object: {line}")))
        .collect();
    (lines, secrets)
}

async fn router(dev: &DevXsuaa, credentials: &Value, backend_url: &str) -> Gateway {
    gateway(json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ],
        "logout": {"logoutEndpoint": "/logout"}
    }))
    .destination_entries(json!([{"name": "backend", "url": backend_url, "forwardAuthToken": true}]))
    .xsuaa(dev, credentials)
    .start()
    .await
}

/// Logs in, refreshes, sends cookies and bearer tokens, replays a callback and logs out; returns
/// every secret that passed through the router.
async fn login_and_browse(secret_credentials: bool) -> Vec<(String, String)> {
    let dev = DevXsuaa::builder()
        .client_secret(CLIENT_SECRET)
        // One-second tokens are due for refresh at once: every request refreshes.
        .access_token_lifetime(Duration::from_secs(1))
        .start()
        .await
        .expect("development XSUAA");
    let backend = backend().await;
    let credentials = if secret_credentials {
        dev.secret_credentials().expect("secret credentials")
    } else {
        dev.credentials()
    };
    let router = router(&dev, &credentials, &backend.url()).await;
    let auth = router.state.auth.clone().expect("auth");
    let browser = Browser::new(&dev);
    let mut secrets: Vec<(String, String)> = Vec::new();

    let (response, visited) = browser.navigate(&router.url("/api/orders?top=5")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    for (name, url) in [("state", &visited[1]), ("code", &visited[2])] {
        secrets.push((name.into(), param(url, name).expect("login parameter")));
    }
    let session_cookie = browser.cookie(&router.url("/"), "JSESSIONID").expect("session cookie");
    secrets.push(("session cookie".into(), session_cookie.clone()));
    let id = SessionId::parse(&session_cookie).expect("session id");

    let remember_session = |secrets: &mut Vec<(String, String)>| {
        let record = dev.last_token_request().expect("token request");
        for (field, value) in record.form {
            if matches!(
                field.as_str(),
                "code" | "code_verifier" | "refresh_token" | "client_secret" | "password"
            ) {
                secrets.push((format!("form {field}"), value));
            }
        }
    };
    remember_session(&mut secrets);
    let bearer = {
        let session = auth.store.load(&id).await.expect("store").expect("session");
        secrets.push(("access token".into(), session.access_token.as_str().to_string()));
        if let Some(refresh) = &session.refresh_token {
            secrets.push(("refresh token".into(), refresh.clone()));
        }
        session.access_token.as_str().to_string()
    };

    for path in ["/api/again", "/open/public", "/api/third"] {
        let response = browser
            .client
            .get(router.url(path))
            .header("authorization", format!("Bearer {bearer}"))
            .header("cookie", format!("extra=1; JSESSIONID={session_cookie}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        remember_session(&mut secrets);
        let session = auth.store.load(&id).await.expect("store").expect("session");
        secrets.push(("access token".into(), session.access_token.as_str().to_string()));
        if let Some(refresh) = &session.refresh_token {
            secrets.push(("refresh token".into(), refresh.clone()));
        }
    }
    for seen in backend.seen() {
        if let Some(token) = seen.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            secrets.push((
                "forwarded bearer".into(),
                token.trim_start_matches("Bearer ").to_string(),
            ));
        }
    }

    // A replayed callback and a forged session cookie are refused (and logged as such).
    let replay = browser.client.get(&visited[2]).send().await.expect("replay");
    assert_eq!(replay.status(), 401);
    let forged = support::client()
        .get(router.url("/api/x"))
        .header("cookie", "JSESSIONID=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 401);
    let logout = browser.client.get(router.url("/logout")).send().await.expect("logout");
    assert!(
        logout.status().is_redirection() || logout.status().is_success(),
        "{}",
        logout.status()
    );

    if secret_credentials {
        secrets.push(("client secret".into(), CLIENT_SECRET.into()));
    } else {
        let key = credentials["key"].as_str().expect("private key").to_string();
        let body: String = key.lines().filter(|line| !line.starts_with("-----")).collect();
        // Any run of the key's base64, with or without the PEM line breaks.
        for chunk in body.as_bytes().chunks(24) {
            secrets.push(("private key".into(), String::from_utf8_lossy(chunk).into_owned()));
        }
        secrets.push(("private key".into(), key));
    }
    secrets.retain(|(_, value)| value.len() >= 16);
    secrets
}

fn assert_clean(lines: &[Value], secrets: &[(String, String)]) {
    assert!(
        secrets.iter().any(|(name, _)| name == "refresh token"),
        "the scenario saw a refresh token"
    );
    assert!(
        secrets.iter().any(|(name, _)| name == "forwarded bearer"),
        "tokens reached the backend"
    );
    let router_lines: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            let target = line["target"].as_str().unwrap_or("");
            !TEST_SIDE_TARGETS.iter().any(|prefix| target.starts_with(prefix))
        })
        .collect();
    let access: Vec<&&Value> = router_lines.iter().filter(|line| line["target"] == "access").collect();
    assert!(access.len() >= 9, "one access line per request, got {}", access.len());
    for line in &access {
        for field in [
            "timestamp",
            "level",
            "correlation_id",
            "method",
            "path",
            "status",
            "duration_us",
        ] {
            assert!(!line[field].is_null(), "access line without {field}: {line}");
        }
        assert!(
            !line["path"].as_str().unwrap_or("").contains('?'),
            "queries are not logged: {line}"
        );
    }
    assert!(
        router_lines.iter().any(|line| line["message"] == "login completed"),
        "the router's own events were captured"
    );
    let mut leaks = Vec::new();
    for line in &router_lines {
        let text = line.to_string();
        for (name, secret) in secrets {
            // JSON escapes newlines; compare against the escaped form too.
            let escaped = serde_json::to_string(secret).unwrap_or_default();
            if text.contains(secret.as_str()) || text.contains(escaped.trim_matches('"')) {
                leaks.push(format!("{name} in {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in the log:\n{}", leaks.join("\n"));
}

#[test]
fn no_secret_is_logged_with_mutual_tls_credentials() {
    let (lines, secrets) = captured(login_and_browse(false));
    assert!(secrets.iter().any(|(name, _)| name == "private key"));
    assert_clean(&lines, &secrets);
}

#[test]
fn no_secret_is_logged_with_client_secret_credentials() {
    let (lines, secrets) = captured(login_and_browse(true));
    assert!(secrets.iter().any(|(name, _)| name == "client secret"));
    assert_clean(&lines, &secrets);
}
