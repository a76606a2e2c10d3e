//! `default-env.json` supplies every variable to the binary, the log level and format and the
//! worker count included; settings the router does not honour are named at start, or stop it.

mod support;

use std::process::Stdio;

use serde_json::json;
use support::{backend, binary, client};
use tokio::io::AsyncReadExt;

fn routes() -> serde_json::Value {
    json!({"routes": [{"source": "^/(.*)$", "destination": "backend", "authenticationType": "none"}]})
}

fn command(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary());
    command
        .arg("--dir")
        .arg(dir)
        .env_clear()
        .env("PORT", "0")
        .env("XS_BIND_ADDRESS", "127.0.0.1")
        .env("ADMIN_ADDRESS", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn default_env_sets_the_log_level_format_and_workers_and_ignored_settings_are_named() {
    let backend = backend().await;
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_app(dir.path(), &routes(), &[]);
    let default_env = json!({
        "destinations": [{"name": "backend", "url": backend.url()}],
        "XS_APP_LOG_LEVEL": "warning",
        "LOG_JSON": "true",
        "TOKIO_WORKER_THREADS": 3,
        "CF_NODEJS_LOGGING_LEVEL": "info",
        "DISABLE_CONNECTION_REUSE": true,
    });
    std::fs::write(dir.path().join("default-env.json"), default_env.to_string()).expect("write");
    let mut child = command(dir.path()).spawn().expect("start the binary");
    let url = support::listening_url(&mut child).await;
    let response = client().get(format!("{url}/x")).send().await.expect("response");
    assert_eq!(response.status(), 200);

    // The main thread is the third worker.
    assert_eq!(
        support::worker_threads(&child),
        2,
        "TOKIO_WORKER_THREADS=3 from default-env.json"
    );
    // SIGTERM: the binary writes the log lines it buffered before it exits.
    let status = support::terminate(&mut child).await;
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("LOG_JSON: not JSON: {line}")))
        .collect();
    let named = |name: &str| {
        lines
            .iter()
            .any(|line| line["level"] == "WARN" && line["setting"] == name)
    };
    assert!(named("CF_NODEJS_LOGGING_LEVEL"), "{stderr}");
    assert!(named("DISABLE_CONNECTION_REUSE"), "{stderr}");
    assert!(
        lines.iter().all(|line| line["level"] != "INFO"),
        "XS_APP_LOG_LEVEL=warning keeps info lines (the access log) out: {stderr}"
    );
}

#[tokio::test]
async fn refused_settings_in_default_env_and_default_services_stop_start_up_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_app(dir.path(), &routes(), &[]);
    let default_env = json!({
        "destinations": [{"name": "backend", "url": "http://127.0.0.1:1"}],
        "plugins": [{"name": "p", "source": "^/p/", "destination": "backend"}],
        "XS_APP_LOG_LEVEL": "chatty",
    });
    std::fs::write(dir.path().join("default-env.json"), default_env.to_string()).expect("write");
    let services = json!({"uaa": {"clientid": "c", "clientsecret": "s", "url": "https://a.example"}, "hana": {}});
    std::fs::write(dir.path().join("default-services.json"), services.to_string()).expect("write");
    let output = support::run_binary(
        &["--dir".as_ref(), dir.path().as_os_str()],
        &[
            ("PORT", "0"),
            ("XS_BIND_ADDRESS", "127.0.0.1"),
            ("ADMIN_ADDRESS", "off"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("plugins: not yet supported: plugins"), "{stderr}");
    assert!(
        stderr.contains("XS_APP_LOG_LEVEL: unknown level \"chatty\""),
        "{stderr}"
    );
    assert!(stderr.contains("default-services.json: hana"), "{stderr}");
}
