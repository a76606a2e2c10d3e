//! `replace` on `localDir` routes: variables and services rendered into files, escaping, the
//! suffix match, validators that follow the rendered content, a changed file rendered again, 405
//! for other methods, template errors, and the start-up errors of a bad `replace`.

mod support;

use serde_json::json;
use support::{client, gateway, GatewayBuilder};

const INDEX: &str = "{{GREETING}}|{{{GREETING}}}|{{& GREETING}}|[{{MISSING}}]|{{FROM_FILE}}|{{{ui5.url}}}|{{ui5.url}}|{{#ui5}}{{user}}{{/ui5}}{{! gone }}";

fn vcap_services() -> String {
    json!({
        "user-provided": [
            {"name": "other", "label": "user-provided", "tags": ["x"], "credentials": {"url": "https://other"}},
            {"name": "my-ui5", "label": "user-provided", "tags": ["ui5"],
             "credentials": {"url": "https://ui5.example/lib?a=b", "user": "u<1>"}}
        ]
    })
    .to_string()
}

fn replace_route(replace: serde_json::Value) -> serde_json::Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "$1", "localDir": "web", "replace": replace}]
    })
}

fn router() -> GatewayBuilder {
    gateway(replace_route(json!({
        "pathSuffixes": ["index.html", "some.html", ".json"],
        "vars": ["GREETING", "MISSING", "FROM_FILE"],
        "services": {"ui5": {"tag": "ui5"}}
    })))
    .env("GREETING", "<b>\"hi\" & 'bye'</b>")
    .env("VCAP_SERVICES", vcap_services())
    .file("default-env.json", json!({"FROM_FILE": "file=1"}).to_string())
    .file("web/index.html", INDEX)
    .file("web/sub/index.html", "sub {{FROM_FILE}}")
    .file("web/awesome.html", "awesome {{FROM_FILE}}")
    .file("web/other.html", "other {{FROM_FILE}}")
    .file("web/config.json", "{\"url\": \"{{{ui5.url}}}\"}")
    .file("web/broken.json", "{{#open}} never closed")
    .file("web/huge.json", "x".repeat(4 * 1024 * 1024 + 1))
}

#[tokio::test]
async fn vars_and_services_are_rendered_with_the_escaping_of_mustache_js() {
    let gateway = router().start().await;
    let response = client().get(gateway.url("/index.html")).send().await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html; charset=UTF-8");
    assert!(response.headers().get("last-modified").is_none());
    let body = response.text().await.expect("body");
    assert_eq!(
        body,
        "&lt;b&gt;&quot;hi&quot; &amp; &#39;bye&#39;&lt;&#x2F;b&gt;|<b>\"hi\" & 'bye'</b>|<b>\"hi\" & 'bye'</b>|[]|\
         file&#x3D;1|https://ui5.example/lib?a=b|https:&#x2F;&#x2F;ui5.example&#x2F;lib?a&#x3D;b|u&lt;1&gt;"
    );

    // A folder's index.html, and the content type by extension.
    let folder = client().get(gateway.url("/sub/")).send().await.expect("response");
    assert_eq!(folder.text().await.expect("body"), "sub file&#x3D;1");
    let json = client()
        .get(gateway.url("/config.json"))
        .send()
        .await
        .expect("response");
    assert_eq!(json.headers()["content-type"], "application/json; charset=UTF-8");
    assert_eq!(
        json.text().await.expect("body"),
        "{\"url\": \"https://ui5.example/lib?a=b\"}"
    );
}

#[tokio::test]
async fn suffixes_match_as_the_reference_does() {
    let gateway = router().start().await;
    // `some.html` also takes `awesome.html`: a plain "ends with".
    let awesome = client()
        .get(gateway.url("/awesome.html"))
        .send()
        .await
        .expect("response");
    assert_eq!(awesome.text().await.expect("body"), "awesome file&#x3D;1");
    // Other files are plain static files, with their usual validators.
    let other = client().get(gateway.url("/other.html")).send().await.expect("response");
    assert!(other.headers().get("last-modified").is_some());
    assert_eq!(other.text().await.expect("body"), "other {{FROM_FILE}}");

    let exact = support::gateway(replace_route(json!({"pathSuffixes": ["/some.html"]})))
        .file("web/awesome.html", "awesome {{x}}")
        .start()
        .await;
    let awesome = client().get(exact.url("/awesome.html")).send().await.expect("response");
    assert_eq!(awesome.text().await.expect("body"), "awesome {{x}}");
}

#[tokio::test]
async fn the_etag_follows_the_rendered_content_and_a_changed_file_is_rendered_again() {
    let gateway = router().start().await;
    let first = client()
        .get(gateway.url("/awesome.html"))
        .send()
        .await
        .expect("response");
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");

    let again = client()
        .get(gateway.url("/awesome.html"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("response");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());

    let head = client()
        .head(gateway.url("/awesome.html"))
        .send()
        .await
        .expect("response");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        "awesome file&#x3D;1".len().to_string().as_str()
    );

    std::fs::write(gateway.dir.path().join("web/awesome.html"), "changed: {{{FROM_FILE}}}").expect("write");
    let changed = client()
        .get(gateway.url("/awesome.html"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("response");
    assert_eq!(changed.status(), 200);
    let new_etag = changed.headers()["etag"].to_str().expect("etag").to_string();
    assert_ne!(new_etag, etag);
    assert_eq!(changed.text().await.expect("body"), "changed: file=1");
}

#[tokio::test]
async fn other_methods_get_405_and_a_broken_or_huge_template_500() {
    let gateway = router().start().await;
    let post = client()
        .post(gateway.url("/index.html"))
        .body("x")
        .send()
        .await
        .expect("response");
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    let broken = client()
        .get(gateway.url("/broken.json"))
        .send()
        .await
        .expect("response");
    assert_eq!(broken.status(), 500);
    assert!(!broken.text().await.expect("body").contains("never closed"));

    // Read, rendered and kept whole, a template has a size limit.
    let huge = client().get(gateway.url("/huge.json")).send().await.expect("response");
    assert_eq!(huge.status(), 500);

    let missing = client()
        .get(gateway.url("/missing.json"))
        .send()
        .await
        .expect("response");
    assert_eq!(missing.status(), 404);
}

#[test]
fn bad_replace_settings_stop_start_up_naming_the_key() {
    let rows: &[(serde_json::Value, &str, &str)] = &[
        (
            json!({"pathSuffixes": [".html"], "services": {"ui5": {"tag": "nothing-has-it"}}}),
            "routes[0].replace.services.ui5",
            "no bound service matches",
        ),
        (
            json!({"pathSuffixes": [".html"], "vars": ["ui5"], "services": {"ui5": {"tag": "ui5"}}}),
            "routes[0].replace.services.ui5",
            "also listed in vars",
        ),
        (
            json!({"pathSuffixes": [".html"], "services": {"both": {"label": "user-provided"}}}),
            "routes[0].replace.services.both",
            "2 bound services match",
        ),
        (
            json!({"pathSuffixes": []}),
            "routes[0].replace.pathSuffixes",
            "at least one",
        ),
        (json!({"vars": ["A"]}), "routes[0].replace", "pathSuffixes"),
    ];
    for (replace, key, message) in rows {
        let (_dir, config) = gateway(replace_route(replace.clone()))
            .env("VCAP_SERVICES", vcap_services())
            .file("web/index.html", "x")
            .config();
        let errors = config.expect_err("a bad replace must not start").to_string();
        assert!(errors.contains(key) && errors.contains(message), "{replace}: {errors}");
    }

    let (_dir, config) = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "destination": "d", "replace": {"pathSuffixes": [".html"]}}]
    }))
    .destinations(&[("d", "http://127.0.0.1:1")])
    .config();
    let errors = config.expect_err("replace needs localDir").to_string();
    assert!(
        errors.contains("routes[0].replace") && errors.contains("localDir"),
        "{errors}"
    );
}

#[tokio::test]
async fn the_binary_refuses_a_missing_service_with_exit_code_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let xs_app = replace_route(json!({"pathSuffixes": [".html"], "services": {"ui5": {"name": "absent"}}}));
    support::write_app(dir.path(), &xs_app, &[("web/index.html".into(), b"x".to_vec())]);
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
    assert!(
        stderr.contains("routes[0].replace.services.ui5") && stderr.contains("no bound service matches"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_path_leaving_the_folder_is_refused_before_any_rendering() {
    // Without the pipeline's traversal check, the static layer alone must refuse it.
    let gateway = router()
        .env("DISABLE_PATHNAME_VALIDATION", "true")
        .file("secret.html", "TOP-SECRET {{GREETING}}")
        .start()
        .await;
    for target in ["/../secret.html", "/%2e%2e/secret.html", "/sub/..%2f..%2fsecret.html"] {
        let response = support::raw::exchange(gateway.addr, &support::raw::request("GET", target, &[])).await;
        assert!(
            matches!(response.status, 400 | 403 | 404),
            "{target}: {}",
            response.status
        );
        assert!(!response.text().contains("TOP-SECRET"), "{target}");
    }
}
