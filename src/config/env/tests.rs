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
