use super::*;

#[test]
fn cookies_partitioned_is_read_or_named_in_the_errors() {
    let rows: &[(&str, &[&str])] = &[
        (r#"{"SameSite":"None","Partitioned":true}"#, &[]),
        (r#"{"Partitioned":false}"#, &[]),
        (r#"{"Partitioned":{"supportedPartitionAgents":"Chrome/"}}"#, &[]),
        (r#"{"Partitioned":"yes"}"#, &["COOKIES.Partitioned"]),
        (
            r#"{"Partitioned":{"supportedPartitionAgents":"(","agents":1}}"#,
            &[
                "COOKIES.Partitioned.supportedPartitionAgents",
                "COOKIES.Partitioned.agents",
            ],
        ),
        (
            r#"{"Partitioned":{"unsupportedPartitionAgents":3}}"#,
            &["COOKIES.Partitioned.unsupportedPartitionAgents"],
        ),
    ];
    for (value, paths) in rows {
        let mut errors = Error::default();
        let settings = auth_settings(&Env::from_pairs([("COOKIES", *value)]), &mut errors);
        let found: Vec<&str> = errors.problems.iter().map(|problem| problem.path.as_str()).collect();
        assert_eq!(&found, paths, "{value}");
        if paths.is_empty() {
            let agent = |agent: &'static str| {
                let mut headers = http::HeaderMap::new();
                headers.insert(http::header::USER_AGENT, HeaderValue::from_static(agent));
                settings.partitioned.applies(&headers)
            };
            let expected = !value.contains("false");
            assert_eq!(agent("Chrome/131"), expected, "{value}");
        }
    }
}

#[test]
fn outgoing_request_options_are_read_in_the_node_routers_form() {
    let read = |text: &str| {
        let env = Env::from_pairs([("OUTGOING_REQUEST_OPTIONS", text)]);
        let mut errors = Error::default();
        let xsuaa = outgoing_timeout(&env, "xsuaa", &mut errors);
        let destination = outgoing_timeout(&env, "destination", &mut errors);
        let text = if errors.is_empty() {
            String::new()
        } else {
            errors.to_string()
        };
        (xsuaa, destination, text)
    };
    let ms = |millis| Some(Duration::from_millis(millis));
    // The original's form, which used to be read as nothing.
    let (xsuaa, destination, errors) = read(r#"{"xsuaa":{"timeout":20000},"destination":{"timeout":3000}}"#);
    assert_eq!((xsuaa, destination), (ms(20000), ms(3000)), "{errors}");
    assert!(errors.is_empty(), "{errors}");
    // A bare number is taken too; 0 means the default.
    let (xsuaa, destination, errors) = read(r#"{"xsuaa":15000,"destination":{"timeout":0},"cls":{"timeout":0}}"#);
    assert_eq!((xsuaa, destination), (ms(15000), None), "{errors}");
    assert!(errors.is_empty(), "{errors}");
    for (text, named) in [
        (r#"{"xsua":{"timeout":1}}"#, "OUTGOING_REQUEST_OPTIONS.xsua"),
        (
            r#"{"xsuaa":{"timeout":1,"retries":2}}"#,
            "OUTGOING_REQUEST_OPTIONS.xsuaa.retries",
        ),
        (
            r#"{"destination":{"timeout":"5s"}}"#,
            "OUTGOING_REQUEST_OPTIONS.destination.timeout",
        ),
        (r#"[1]"#, "OUTGOING_REQUEST_OPTIONS"),
    ] {
        let (_, _, errors) = read(text);
        assert!(errors.contains(named), "{text}: {errors}");
    }
}

#[test]
fn default_services_json_supplies_the_xsuaa_binding_when_nothing_is_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let uaa = serde_json::json!({
        "clientid": "sb-local!t1", "clientsecret": "s", "xsappname": "local!t1",
        "url": "https://local.auth.example.com", "uaadomain": "auth.example.com"
    });
    std::fs::write(
        dir.path().join("default-services.json"),
        serde_json::json!({"uaa": uaa}).to_string(),
    )
    .expect("write");
    let mut env = Env::default();
    load_default_env(dir.path(), &mut env).expect("loads");
    let mut errors = Error::default();
    let binding = crate::config::find_xsuaa(&env, &mut errors).expect("bound from default-services.json");
    assert_eq!(binding.clientid, "sb-local!t1");
    assert!(errors.is_empty(), "{errors}");

    let mut bound = Env::from_pairs([("VCAP_SERVICES", "{}")]);
    load_default_env(dir.path(), &mut bound).expect("loads");
    assert_eq!(bound.get("VCAP_SERVICES"), Some("{}"), "a real binding wins");

    std::fs::write(
        dir.path().join("default-services.json"),
        r#"{"uaa": {}, "hana": {"url": "x"}}"#,
    )
    .expect("write");
    let errors = load_default_env(dir.path(), &mut Env::default()).expect_err("hana is not read");
    assert_eq!(errors.problems[0].path, "default-services.json: hana");
}
