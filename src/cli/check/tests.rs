use super::*;

fn types(descriptor: Value) -> Report {
    let mut report = Report::default();
    check_credential_types(&descriptor, "xs-security.json", &mut report);
    report
}

#[test]
fn credential_types_are_judged() {
    let rows: &[(Value, u8, &str)] = &[
        (
            serde_json::json!({"oauth2-configuration": {"credential-types": ["x509", "binding-secret"]}}),
            0,
            "default credential type is x509",
        ),
        (
            serde_json::json!({"oauth2-configuration": {"credential-types": ["binding-secret", "x509"]}}),
            0,
            "default credential type is binding-secret",
        ),
        (
            serde_json::json!({"oauth2-configuration": {"credential-types": ["binding-secret"]}}),
            0,
            "does not include x509",
        ),
        (serde_json::json!({"xsappname": "app"}), 0, "not set"),
        (
            serde_json::json!({"oauth2-configuration": {"credential-types": ["x509", "x500"]}}),
            64,
            "credential-types[1]: must be one of",
        ),
        (
            serde_json::json!({"oauth2-configuration": {"credential-types": "x509"}}),
            64,
            "must be a list",
        ),
        (
            serde_json::json!({"oauth2-configuration": {"credential-types": []}}),
            64,
            "is empty",
        ),
    ];
    for (descriptor, code, text) in rows {
        let report = types(descriptor.clone());
        assert_eq!(report.exit_code(), *code, "{descriptor}: {report}");
        assert!(report.to_string().contains(text), "{descriptor}: {report}");
    }
}

#[test]
fn merge_keeps_file_keys_and_lets_inline_win() {
    let mut file = serde_json::json!({"xsappname": "a", "oauth2-configuration": {"token-validity": 600, "credential-types": ["binding-secret"]}});
    merge(
        &mut file,
        &serde_json::json!({"oauth2-configuration": {"credential-types": ["x509"]}}),
    );
    assert_eq!(file["xsappname"], "a");
    assert_eq!(file["oauth2-configuration"]["token-validity"], 600);
    assert_eq!(
        file["oauth2-configuration"]["credential-types"],
        serde_json::json!(["x509"])
    );
}
