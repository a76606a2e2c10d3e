use serde_json::json;

use super::*;

fn vcap(services: Value) -> Env {
    Env::from_pairs([("VCAP_SERVICES", services.to_string())])
}

fn registry(name: &str, credentials: Value) -> Value {
    json!({"name": name, "label": "saas-registry", "tags": ["saas-registry"], "credentials": credentials})
}

fn found(env: &Env) -> (Option<SaasRegistry>, Error) {
    let mut errors = Error::default();
    let found = find(env, &mut errors);
    (found, errors)
}

#[test]
fn paths_default_without_app_urls() {
    let (found, errors) = found(&vcap(json!({"saas-registry": [registry("reg", json!({}))]})));
    assert!(errors.is_empty(), "{errors}");
    let found = found.expect("binding");
    assert_eq!(found.name, "reg");
    assert_eq!(found.dependencies_path, DEFAULT_DEPENDENCIES_PATH);
    assert_eq!(found.tenants_path, DEFAULT_TENANTS_PATH);
}

#[test]
fn app_urls_give_the_paths_cut_before_the_tenant_id() {
    let app_urls = json!({
        "getDependencies": "https://provider.example.org/saas/deps",
        "onSubscription": "https://provider.example.org/saas/tenants/{tenantId}",
        "callbackTimeoutMillis": 300000
    });
    let credentials = json!({"appUrls": app_urls.to_string()});
    let (found, errors) = found(&vcap(json!({"user-provided": [registry("reg", credentials)]})));
    assert!(errors.is_empty(), "{errors}");
    let found = found.expect("binding");
    assert_eq!(found.dependencies_path, "/saas/deps");
    assert_eq!(found.tenants_path, "/saas/tenants");
}

#[test]
fn app_urls_as_an_object_from_binding_files_are_read_too() {
    let credentials = json!({"appUrls": {"onSubscription": "/subs/{tenantId}"}});
    let (found, errors) = found(&vcap(json!({"saas-registry": [registry("reg", credentials)]})));
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(found.expect("binding").tenants_path, "/subs");
}

#[test]
fn bad_app_urls_are_errors_with_their_key() {
    let rows = [
        (json!("{not json"), "appUrls"),
        (json!("[]"), "appUrls"),
        (
            json!(json!({"getDependencies": 5}).to_string()),
            "appUrls.getDependencies",
        ),
        (
            json!(json!({"onSubscription": "ftp://x/y"}).to_string()),
            "appUrls.onSubscription",
        ),
        (
            json!(json!({"onSubscription": "https://x/{tenant}/y"}).to_string()),
            "appUrls.onSubscription",
        ),
        (
            json!(json!({"onSubscription": "https://x/"}).to_string()),
            "appUrls.onSubscription",
        ),
        (
            json!(json!({"getDependencies": "/t/deps", "onSubscription": "/t/{tenantId}"}).to_string()),
            "appUrls",
        ),
    ];
    for (app_urls, key) in rows {
        let credentials = json!({ "appUrls": app_urls });
        let (found, errors) = found(&vcap(json!({"saas-registry": [registry("reg", credentials)]})));
        assert!(found.is_none(), "{app_urls}");
        let paths: Vec<&str> = errors.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, [format!("VCAP_SERVICES: reg.credentials.{key}")], "{app_urls}");
    }
}

#[test]
fn two_registries_are_an_error_naming_both() {
    let env = vcap(json!({"saas-registry": [registry("one", json!({})), registry("two", json!({}))]}));
    let (found, errors) = found(&env);
    assert!(found.is_none());
    let text = errors.to_string();
    assert!(text.contains("\"one\"") && text.contains("\"two\""), "{text}");
}

#[test]
fn nothing_bound_is_none() {
    let (found, errors) = found(&vcap(json!({"xsuaa": []})));
    assert!(found.is_none());
    assert!(errors.is_empty(), "{errors}");
}

#[test]
fn binding_files_are_found_by_type() {
    let root = tempfile::tempdir().expect("temp dir");
    let folder = root.path().join("my-saas");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("type"), "saas-registry\n").expect("type");
    let app_urls = json!({"getDependencies": "https://p.example.org/deps", "onSubscription": "https://p.example.org/subs/{tenantId}"});
    std::fs::write(folder.join("appUrls"), app_urls.to_string()).expect("appUrls");
    let env = Env::from_pairs([("SERVICE_BINDING_ROOT", root.path().display().to_string())]);
    let (found, errors) = found(&env);
    assert!(errors.is_empty(), "{errors}");
    let found = found.expect("binding");
    assert_eq!(found.name, "my-saas");
    assert_eq!(found.source, BindingSource::Files(folder));
    assert_eq!(found.dependencies_path, "/deps");
    assert_eq!(found.tenants_path, "/subs");
}
