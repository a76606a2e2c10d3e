use super::*;

fn rules(env: &[(&str, &str)]) -> (Vec<CorsRule>, Error) {
    let mut errors = Error::default();
    let rules = cors_rules(None, &Env::from_pairs(env.iter().copied()), &mut errors);
    (rules, errors)
}

#[test]
fn cors_defaults_follow_the_reference() {
    let (rules, errors) = rules(&[(
        "CORS",
        r#"[{"uriPattern": "^/api", "allowedOrigin": [{"host": "a.example"}]}]"#,
    )]);
    assert!(errors.is_empty(), "{errors}");
    let rule = &rules[0];
    let methods: Vec<&str> = rule.allowed_methods.iter().map(Method::as_str).collect();
    assert_eq!(methods, ["GET", "POST", "HEAD", "OPTIONS"]);
    assert_eq!(
        rule.allowed_headers,
        "Origin,Accept,X-Requested-With,Content-Type,Access-Control-Request-Method,Access-Control-Request-Headers"
    );
    assert_eq!(rule.max_age.as_ref().unwrap(), "1800");
    assert!(rule.allow_credentials);
    assert!(!rule.any_origin);
    assert!(rule.expose_headers.is_none());
}

#[test]
fn cors_and_allowlist_errors_name_their_key_paths() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "CORS",
            r#"[{"uriPattern": "(", "allowedOrigin": [{"host": "a"}]}]"#,
            "CORS[0].uriPattern",
        ),
        (
            "CORS",
            r#"[{"uriPattern": "^/", "allowedOrigin": []}]"#,
            "CORS[0].allowedOrigin",
        ),
        (
            "CORS",
            r#"[{"uriPattern": "^/", "allowedOrigin": [{"host": "a*b"}]}]"#,
            "CORS[0].allowedOrigin[0]",
        ),
        (
            "CORS",
            r#"[{"uriPattern": "^/", "allowedOrigin": [{"host": "a"}], "allowedMethods": ["G T"]}]"#,
            "CORS[0].allowedMethods[0]",
        ),
        (
            "CORS",
            r#"[{"uriPattern": "^/", "allowedOrigin": [{"host": "a"}], "exposeHeaders": ["a b"]}]"#,
            "CORS[0].exposeHeaders[0]",
        ),
        (
            "CORS",
            r#"[{"uriPattern": "^/", "allowedOrigin": [{"host": "a"}], "bogus": 1}]"#,
            "CORS[0].bogus",
        ),
        ("CORS", r#"{}"#, "CORS"),
        ("CORS", r#"not json"#, "CORS"),
        (
            "CJ_PROTECT_WHITELIST",
            r#"[{"host": "a", "port": "http"}]"#,
            "CJ_PROTECT_WHITELIST[0].port",
        ),
        ("CJ_PROTECT_WHITELIST", r#"[{"hots": "a"}]"#, "CJ_PROTECT_WHITELIST[0]"),
        ("WS_ALLOWED_ORIGINS", r#"[{"host": "*a"}]"#, "WS_ALLOWED_ORIGINS[0]"),
        ("WS_ALLOWED_ORIGINS", r#"{"host": "a"}"#, "WS_ALLOWED_ORIGINS"),
    ];
    for (name, value, path) in cases {
        let env = Env::from_pairs([(*name, *value)]);
        let mut errors = Error::default();
        if *name == "CORS" {
            cors_rules(None, &env, &mut errors);
        } else {
            allowlist(&env, name, &mut errors);
        }
        assert!(
            errors.problems.iter().any(|p| p.path.starts_with(path)),
            "{name}={value}: expected a problem at {path}, got {errors}"
        );
    }
}

#[test]
fn wildcard_origin_only_without_credentials() {
    let (rules, _) = rules(&[(
        "CORS",
        r#"[{"uriPattern": "^/a", "allowedOrigin": [{"host": "*"}], "allowedCredentials": false, "maxAge": -1},
            {"uriPattern": "^/b", "allowedOrigin": [{"host": "*"}]}]"#,
    )]);
    assert!(rules[0].any_origin);
    assert!(rules[0].max_age.is_none());
    assert!(!rules[1].any_origin);
}

#[test]
fn allowlist_ports_may_be_text() {
    let env = Env::from_pairs([(
        "WS_ALLOWED_ORIGINS",
        r#"[{"protocol": "https", "host": "*.example", "port": "8443"}]"#,
    )]);
    let mut errors = Error::default();
    let list = allowlist(&env, "WS_ALLOWED_ORIGINS", &mut errors).unwrap();
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(list.entries[0].port, Some(8443));
    assert!(allowlist(&Env::default(), "WS_ALLOWED_ORIGINS", &mut errors).is_none());
}
