use super::*;

fn xsuaa(tenantmode: Option<&str>, x509: bool) -> XsuaaCredentials {
    XsuaaCredentials {
        name: "uaa".into(),
        source: crate::config::BindingSource::VcapServices,
        clientid: "sb-app!t1".into(),
        clientsecret: (!x509).then(|| "secret".into()),
        url: "https://provider.authentication.eu10.hana.ondemand.com".into(),
        certurl: Some("https://provider.authentication.cert.eu10.hana.ondemand.com".into()),
        uaadomain: "authentication.eu10.hana.ondemand.com".into(),
        xsappname: "app!t1".into(),
        identityzone: Some("provider".into()),
        identityzoneid: Some("zone-p".into()),
        apiurl: None,
        credential_type: None,
        tenantmode: tenantmode.map(str::to_string),
        certificate: x509.then(|| "-----BEGIN CERTIFICATE-----".into()),
        key: x509.then(|| "-----BEGIN PRIVATE KEY-----".into()),
    }
}

fn tenancy(pattern: &str, binding: &XsuaaCredentials) -> Result<Option<Tenancy>, Error> {
    let env = Env::from_pairs([("TENANT_HOST_PATTERN", pattern)]);
    let mut errors = Error::default();
    let tenancy = from_env(&env, Some(binding), &mut errors);
    if errors.is_empty() {
        Ok(tenancy)
    } else {
        Err(errors)
    }
}

#[test]
fn tenant_urls_follow_the_binding() {
    let tenancy = tenancy(r"^(.*)-app\.cfapps\.example$", &xsuaa(Some("shared"), true))
        .expect("valid")
        .expect("set");
    assert_eq!(tenancy.tenant_of("acme-app.cfapps.example:443"), Some("acme"));
    assert_eq!(tenancy.tenant_of("acme-app.cfapps.example"), Some("acme"));
    assert_eq!(tenancy.tenant_of("other.example"), None);
    assert_eq!(
        tenancy.tenant_of("a.b-app.cfapps.example"),
        None,
        "not a subdomain label"
    );
    // The per-thread memo answers as the pattern does, also once it is full.
    for round in 0..3 {
        for i in 0..40 {
            let host = format!("t{i}-app.cfapps.example");
            let expected = format!("t{i}");
            assert_eq!(
                tenancy.tenant_of_host(&host).as_deref(),
                Some(expected.as_str()),
                "{round}"
            );
            assert_eq!(tenancy.tenant_of_host(&format!("x{i}.other")), None);
        }
    }
    assert_eq!(
        tenancy.url("acme"),
        "https://acme.authentication.eu10.hana.ondemand.com"
    );
    assert_eq!(
        tenancy.token_url("acme"),
        "https://acme.authentication.cert.eu10.hana.ondemand.com/oauth/token"
    );
    assert_eq!(
        tenancy.keys_url("zone-a"),
        "https://authentication.eu10.hana.ondemand.com/token_keys?zid=zone%2Da"
    );
    let secret = tenancy_for_secret();
    assert_eq!(
        secret.token_url("acme"),
        "https://acme.authentication.eu10.hana.ondemand.com/oauth/token"
    );
}

fn tenancy_for_secret() -> Tenancy {
    tenancy(r"^(.*)-app\.cfapps\.example$", &xsuaa(Some("shared"), false))
        .expect("valid")
        .expect("set")
}

#[test]
fn ports_of_a_development_binding_are_kept() {
    let mut binding = xsuaa(Some("shared"), true);
    binding.url = "https://dev.auth.localhost:8443".into();
    binding.certurl = Some("https://dev.auth.cert.localhost:9443".into());
    binding.uaadomain = "auth.localhost".into();
    let tenancy = tenancy(r"^(.*)\.app\.localhost$", &binding)
        .expect("valid")
        .expect("set");
    assert_eq!(tenancy.url("acme"), "https://acme.auth.localhost:8443");
    assert_eq!(
        tenancy.token_url("acme"),
        "https://acme.auth.cert.localhost:9443/oauth/token"
    );
    assert_eq!(tenancy.keys_url("z"), "https://auth.localhost:8443/token_keys?zid=z");
}

#[test]
fn the_pattern_and_the_binding_must_agree() {
    let shared = xsuaa(Some("shared"), true);
    let dedicated = xsuaa(Some("dedicated"), true);
    let message = |result: Result<Option<Tenancy>, Error>| result.expect_err("refused").to_string();
    assert!(message(tenancy("^([a-z]+)-app$", &dedicated)).contains("tenantmode shared"));
    assert!(message(tenancy("^[a-z]+-app$", &shared)).contains("capture group"));
    assert!(message(tenancy("^([a-z+-app$", &shared)).contains("not a valid regex"));
    let mut errors = Error::default();
    assert!(from_env(&Env::from_pairs([("X", "y")]), Some(&shared), &mut errors).is_none());
    assert!(errors.to_string().contains("TENANT_HOST_PATTERN"), "{errors}");
    let mut errors = Error::default();
    let env = Env::from_pairs([("TENANT_HOST_PATTERN", "^(.*)$"), ("APPROUTER_URL", "https://x")]);
    from_env(&env, Some(&shared), &mut errors);
    assert!(errors.to_string().contains("APPROUTER_URL"), "{errors}");
}

proptest::proptest! {
    /// Any host a client sends: never a panic, a tenant only of DNS-label characters, and the
    /// per-thread memo answers as the pattern does.
    #[test]
    fn any_host_yields_a_label_or_nothing(host in "\\PC{0,80}", tail in "(:[0-9]{1,5})?") {
        let tenancy = tenancy(r"^(.*)-app\.cfapps\.example$", &xsuaa(Some("shared"), true))
            .expect("valid")
            .expect("set");
        for candidate in [host.clone(), format!("{host}-app.cfapps.example{tail}")] {
            let direct = tenancy.tenant_of(&candidate).map(str::to_string);
            if let Some(tenant) = &direct {
                proptest::prop_assert!(!tenant.is_empty() && tenant.len() <= 63);
                proptest::prop_assert!(tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
            let remembered = tenancy.tenant_of_host(&candidate).map(|tenant| tenant.to_string());
            proptest::prop_assert_eq!(&direct, &remembered);
            // Asked again, from the memo.
            let again = tenancy.tenant_of_host(&candidate).map(|tenant| tenant.to_string());
            proptest::prop_assert_eq!(&direct, &again);
        }
    }
}
