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
        (
            "http://host:6379",
            "REDIS_URL: scheme must be redis, rediss, redis+sentinel",
        ),
        ("rediss://host:6379/#insecure", "REDIS_URL: must not have a fragment"),
        ("not a url", "REDIS_URL: not a valid URL"),
    ] {
        let (_, errors) = check(&[("REDIS_URL", url.into()), ("SESSION_SECRET", SECRET.into())]);
        assert!(errors.iter().any(|e| e.starts_with(expected)), "{url}: {errors:?}");
    }
}

#[test]
fn a_sentinel_binding_names_the_sentinels_and_the_master() {
    let ext = json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET});
    // The fields of SAP's redis-operator binding secret; `sentinelHost` may list several sentinels.
    let credentials = json!({"sentinelEnabled": "true", "host": "redis.ns.svc", "port": "6379",
                             "sentinelHost": "s1.ns.svc, s2.ns.svc:26380,[::1]", "sentinelPort": "26400",
                             "masterName": "mymaster", "password": "p@ss", "tlsEnabled": "true",
                             "caData": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"});
    let (config, errors) = check(&[
        ("EXT_SESSION_MGT", ext.to_string()),
        ("VCAP_SERVICES", vcap(credentials)),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let settings = redis(config);
    let sentinel = settings.sentinel.clone().expect("sentinel");
    assert_eq!(
        sentinel.nodes,
        vec![
            ("s1.ns.svc".to_string(), 26400),
            ("s2.ns.svc".to_string(), 26380),
            ("::1".to_string(), 26400)
        ]
    );
    assert_eq!(sentinel.master_name, "mymaster");
    assert!(sentinel.tls);
    assert_eq!(sentinel.password.as_deref(), Some("p@ss"));
    assert!(sentinel.ca_pem.is_some());
    assert_eq!(
        settings.display_url(),
        "rediss+sentinel://s1.ns.svc:26400,s2.ns.svc:26380,[::1]:26400/mymaster"
    );
    assert!(!format!("{settings:?}").contains("p@ss"), "no password in Debug");
    assert!(!settings.cluster);
}

#[test]
fn a_sentinel_url_in_redis_url() {
    // (URL, sentinels, master name, user name, password, TLS)
    type Row<'a> = (
        &'a str,
        Vec<(&'a str, u16)>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        bool,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            "redis+sentinel://:pw%40x@10.0.0.1:5000,10.0.0.2/primary",
            vec![("10.0.0.1", 5000), ("10.0.0.2", 26379)],
            "primary",
            None,
            Some("pw@x"),
            false,
        ),
        (
            "rediss+sentinel://app:hunter2x@sentinel.internal/mymaster",
            vec![("sentinel.internal", 26379)],
            "mymaster",
            Some("app"),
            Some("hunter2x"),
            true,
        ),
        ("redis+sentinel://h:1/m", vec![("h", 1)], "m", None, None, false),
    ];
    for (url, nodes, master, username, password, tls) in rows {
        let (config, errors) = check(&[("REDIS_URL", url.into()), ("SESSION_SECRET", SECRET.into())]);
        assert!(errors.is_empty(), "{url}: {errors:?}");
        let settings = redis(config);
        let sentinel = settings.sentinel.clone().expect("sentinel");
        let expected: Vec<(String, u16)> = nodes.iter().map(|(h, p)| (h.to_string(), *p)).collect();
        assert_eq!(sentinel.nodes, expected, "{url}");
        assert_eq!(sentinel.master_name, master, "{url}");
        assert_eq!(sentinel.username.as_deref(), username, "{url}");
        assert_eq!(sentinel.password.as_deref(), password, "{url}");
        assert_eq!(sentinel.tls, tls, "{url}");
        if let Some(password) = password {
            assert!(!settings.display_url().contains(password), "{url}");
            assert!(!format!("{settings:?}").contains(password), "{url}");
        }
    }
}

#[test]
fn bad_sentinel_settings_name_their_key_path() {
    let ext = json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET}).to_string();
    let base = json!({"sentinelEnabled": true, "sentinelHost": "s1", "masterName": "mymaster"});
    let with = |key: &str, value: Value| {
        let mut credentials = base.clone();
        match value {
            Value::Null => {
                credentials.as_object_mut().unwrap().remove(key);
            }
            value => credentials[key] = value,
        }
        vcap(credentials)
    };
    let path = "VCAP_SERVICES: sessions.credentials";
    let binding_rows: Vec<(String, String)> = vec![
        (
            with("sentinelHost", Value::Null),
            format!("{path}.sentinelHost: is required"),
        ),
        (
            with("masterName", Value::Null),
            format!("{path}.masterName: is required"),
        ),
        (
            with("sentinelPort", json!("0")),
            format!("{path}.sentinelPort: must be a port number"),
        ),
        (
            with("sentinelHost", json!("s1:99999")),
            format!("{path}.sentinelHost: sentinel 1 (\"s1:99999\"): not a port number"),
        ),
        (
            with("sentinelHost", json!("s1,,s2")),
            format!("{path}.sentinelHost: sentinel 2 (\"\"): no host"),
        ),
        (
            with("sentinelHost", json!("::1")),
            format!("{path}.sentinelHost: sentinel 1 (\"::1\"): an IPv6 address must be in brackets"),
        ),
        (
            with("sentinelEnabled", json!("yes")),
            format!("{path}.sentinelEnabled: must be true or false"),
        ),
        (
            with("cluster_mode", json!(true)),
            format!("{path}.cluster_mode: cannot be true together with sentinelEnabled"),
        ),
        (
            with("caData", json!("-----BEGIN CERTIFICATE-----")),
            format!("{path}.caData: is given but tlsEnabled is not true"),
        ),
        (
            with("tlsEnabled", json!("maybe")),
            format!("{path}.tlsEnabled: must be true or false"),
        ),
    ];
    for (vcap, expected) in binding_rows {
        let (config, errors) = check(&[("EXT_SESSION_MGT", ext.clone()), ("VCAP_SERVICES", vcap.clone())]);
        assert!(
            errors.iter().any(|e| e.starts_with(&expected)),
            "{vcap}: expected {expected:?}, got {errors:?}"
        );
        assert!(matches!(config, SessionStoreConfig::Memory), "{vcap}");
    }
    let url_rows = [
        ("redis+sentinel://h1:26379", "REDIS_URL: has no master name"),
        (
            "redis+sentinel://h1:26379/",
            "REDIS_URL: the path must be the master name alone",
        ),
        (
            "redis+sentinel://h1/m/0",
            "REDIS_URL: the path must be the master name alone",
        ),
        (
            "redis+sentinel://h1,h2:x/m",
            "REDIS_URL: sentinel 2 (\"h2:x\"): not a port number",
        ),
        ("redis+sentinel:///m", "REDIS_URL: sentinel 1 (\"\"): no host"),
        (
            "rediss+sentinel://h1/m#insecure",
            "REDIS_URL: must not have a query or fragment",
        ),
        (
            "redis+sentinel://h1/m?db=2",
            "REDIS_URL: must not have a query or fragment",
        ),
        ("redis+sentinel:h1/m", "REDIS_URL: not a valid URL"),
        (
            "redis+sentinel://u:%ff@h1/m",
            "REDIS_URL: the password is not valid UTF-8",
        ),
    ];
    for (url, expected) in url_rows {
        let (config, errors) = check(&[("REDIS_URL", url.into()), ("SESSION_SECRET", SECRET.into())]);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{url}: expected {expected:?}, got {errors:?}"
        );
        assert!(matches!(config, SessionStoreConfig::Memory), "{url}");
    }
}
