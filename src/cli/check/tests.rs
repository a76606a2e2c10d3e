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

fn service(credential: config::ServiceCredential) -> ServiceBinding {
    ServiceBinding {
        kind: config::ServiceKind::Destination,
        name: "dest".into(),
        source: BindingSource::VcapServices,
        clientid: "sb-dest".into(),
        credential,
        token_url: "https://acme.authentication.cert.example.org/oauth/token".into(),
        uaadomain: None,
        xsappname: None,
        uri: Some("https://destination.example.org".into()),
        proxy: None,
    }
}

#[test]
fn bound_services_are_reported_with_their_certificate() {
    let mut params = rcgen::CertificateParams::new(vec!["dest-client".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "destination client");
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(30 * 86_400)).into();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let now_unix =
        i64::try_from(now.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()).expect("fits");

    let mut report = Report::default();
    let x509 = service(config::ServiceCredential::X509 {
        certificate: cert.pem(),
        key: key.serialize_pem(),
    });
    check_service(&x509, now_unix, DEFAULT_EXPIRY_WARNING, &mut report);
    let text = report.to_string();
    assert!(text.contains("credential type x509"), "{text}");
    assert!(
        text.contains("token URL https://acme.authentication.cert.example.org/oauth/token"),
        "{text}"
    );
    assert!(
        text.contains("destination certificate: subject CN=destination client"),
        "{text}"
    );
    assert!(text.contains("destination key: the private key matches"), "{text}");
    assert!(text.contains("destination expiry: 30.0 days to expiry"), "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");

    let mut report = Report::default();
    check_service(
        &service(config::ServiceCredential::Secret("s".into())),
        now_unix,
        DEFAULT_EXPIRY_WARNING,
        &mut report,
    );
    let text = report.to_string();
    assert!(text.contains("credential type binding-secret"), "{text}");
    assert!(!text.contains("certificate"), "{text}");

    let mut report = Report::default();
    let broken = service(config::ServiceCredential::X509 {
        certificate: "not a certificate".into(),
        key: key.serialize_pem(),
    });
    check_service(&broken, now_unix, DEFAULT_EXPIRY_WARNING, &mut report);
    assert_eq!(report.exit_code(), 1, "{report}");
}
