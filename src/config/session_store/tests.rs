//! Table tests of `EXT_SESSION_MGT`, `REDIS_URL` and `SESSION_SECRET`.

use serde_json::json;

use super::*;

fn check(pairs: &[(&str, String)]) -> (SessionStoreConfig, Vec<String>) {
    let env = Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut errors = Error::default();
    let config = from_env(&env, &mut errors);
    (config, errors.problems.iter().map(|p| p.to_string()).collect())
}

fn redis(config: SessionStoreConfig) -> RedisSettings {
    match config {
        SessionStoreConfig::Redis(settings) => settings,
        SessionStoreConfig::Memory => panic!("expected redis"),
    }
}

fn vcap(credentials: Value) -> String {
    json!({
        "redis-cache": [{"name": "sessions", "label": "redis-cache", "credentials": credentials}]
    })
    .to_string()
}

const SECRET: &str = "0123456789abcdef-secret";

#[test]
fn nothing_set_means_memory() {
    let (config, errors) = check(&[("SESSION_SECRET", SECRET.into())]);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(matches!(config, SessionStoreConfig::Memory));
}

#[test]
fn ext_session_mgt_uses_the_bound_instance() {
    let ext = json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET,
                     "defaultRetryTimeout": 800, "backOffMultiplier": 20});
    let credentials = json!({"hostname": "redis.internal", "port": "6380", "password": "p@ss/word", "tls": true,
                             "uri": "rediss://no-user-name-for-redis:p@ss@redis.internal:6380", "cluster_mode": false});
    let (config, errors) = check(&[
        ("EXT_SESSION_MGT", ext.to_string()),
        ("VCAP_SERVICES", vcap(credentials)),
        ("REDIS_URL", "redis://ignored:6379".into()),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let settings = redis(config);
    assert_eq!(settings.url, "rediss://:p%40ss%2Fword@redis.internal:6380");
    assert!(!settings.cluster);
    assert_eq!(settings.secrets, vec![SECRET.to_string()]);
    assert_eq!(settings.reconnect_max_delay, Duration::from_millis(800));
    assert_eq!(settings.reconnect_min_delay, Duration::from_millis(20));
    assert!(!format!("{settings:?}").contains("word"), "no password in Debug");
    assert!(!format!("{settings:?}").contains(SECRET), "no secret in Debug");
}

#[test]
fn binding_files_and_uri_and_cluster_mode() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("sessions");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("uri"), "redis://:pw@10.0.0.1:7000").unwrap();
    std::fs::write(folder.join("cluster_mode"), "true").unwrap();
    let ext =
        json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": [SECRET, "an-older-secret-value"]});
    let (config, errors) = check(&[
        ("EXT_SESSION_MGT", ext.to_string()),
        ("SERVICE_BINDING_ROOT", root.path().display().to_string()),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let settings = redis(config);
    assert_eq!(settings.url, "redis://:pw@10.0.0.1:7000");
    assert!(settings.cluster);
    assert_eq!(settings.secrets.len(), 2);
    assert_eq!(
        settings.reconnect_max_delay,
        Duration::from_millis(DEFAULT_RECONNECT_MAX_DELAY_MS)
    );
}

#[test]
fn redis_url_alone_needs_session_secret() {
    let (config, errors) = check(&[
        ("REDIS_URL", "redis://127.0.0.1:6379".into()),
        (
            "SESSION_SECRET",
            format!("[\"{SECRET}\", \"another-secret-for-rotation\"]"),
        ),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(redis(config).secrets[1], "another-secret-for-rotation");
    let (_, errors) = check(&[("REDIS_URL", "redis://127.0.0.1:6379".into())]);
    assert!(errors[0].starts_with("SESSION_SECRET: is required"), "{errors:?}");
}

#[test]
fn problems_name_their_key_path() {
    let good = json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET});
    let with = |key: &str, value: Value| {
        let mut ext = good.clone();
        ext[key] = value;
        ext.to_string()
    };
    let bound = vcap(json!({"hostname": "h", "port": 6379}));
    let rows: Vec<(String, &str)> = vec![
        (
            with("connectTimeout", json!(100)),
            "EXT_SESSION_MGT.connectTimeout: unknown field",
        ),
        (
            with("storageType", json!("memcached")),
            "EXT_SESSION_MGT.storageType: must be \"redis\"",
        ),
        (
            with("sessionSecret", json!("short")),
            "EXT_SESSION_MGT.sessionSecret: must be at least 16",
        ),
        (
            with("sessionSecret", json!([SECRET, 5])),
            "EXT_SESSION_MGT.sessionSecret[1]: must be a string",
        ),
        (
            with("sessionSecret", json!([SECRET, SECRET])),
            "EXT_SESSION_MGT.sessionSecret[1]: is listed twice",
        ),
        (
            with("sessionSecret", json!([])),
            "EXT_SESSION_MGT.sessionSecret: must not be an empty list",
        ),
        (
            with("defaultRetryTimeout", json!(0)),
            "EXT_SESSION_MGT.defaultRetryTimeout: must be at least 1",
        ),
        (
            with("rejectUnauthorized", json!(false)),
            "EXT_SESSION_MGT.rejectUnauthorized: false is not supported",
        ),
        (
            with("externalStoreFilePath", json!("./store.js")),
            "EXT_SESSION_MGT.externalStoreFilePath: custom",
        ),
        (
            with("instanceName", json!("other")),
            "EXT_SESSION_MGT.instanceName: no service instance named \"other\"",
        ),
        (
            "{\"instanceName\": \"sessions\"}".into(),
            "EXT_SESSION_MGT: missing field `storageType`",
        ),
        ("[1]".into(), "EXT_SESSION_MGT: must be a JSON object"),
    ];
    for (ext, expected) in rows {
        let (config, errors) = check(&[("EXT_SESSION_MGT", ext.clone()), ("VCAP_SERVICES", bound.clone())]);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{ext}: expected {expected:?}, got {errors:?}"
        );
        assert!(matches!(config, SessionStoreConfig::Memory), "{ext}");
    }
}

#[test]
fn urls_are_checked() {
    for (url, expected) in [
        ("http://host:6379", "REDIS_URL: scheme must be redis or rediss"),
        ("rediss://host:6379/#insecure", "REDIS_URL: must not have a fragment"),
        ("not a url", "REDIS_URL: not a valid URL"),
    ] {
        let (_, errors) = check(&[("REDIS_URL", url.into()), ("SESSION_SECRET", SECRET.into())]);
        assert!(errors.iter().any(|e| e.starts_with(expected)), "{url}: {errors:?}");
    }
}
