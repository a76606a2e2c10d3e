use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn answer(configuration: Value, auth_tokens: Option<Value>) -> Vec<u8> {
    let mut answer = json!({"owner": {"SubaccountId": "s"}, "destinationConfiguration": configuration});
    if let Some(tokens) = auth_tokens {
        answer["authTokens"] = tokens;
    }
    answer.to_string().into_bytes()
}

fn base(authentication: &str) -> Value {
    json!({"Name": "erp", "Type": "HTTP", "URL": "https://erp.example.org/api", "Authentication": authentication, "ProxyType": "Internet"})
}

fn bearer(expires_in: Value) -> Value {
    json!([{"type": "Bearer", "value": "eyJ", "expires_in": expires_in, "http_header": {"key": "Authorization", "value": "Bearer eyJ"}}])
}

fn parse(bytes: &[u8]) -> Result<FoundDestination, DestinationError> {
    parse_destination("erp", bytes, false)
}

#[test]
fn a_full_answer_is_read() {
    let mut configuration = base("OAuth2ClientCredentials");
    let object = configuration.as_object_mut().expect("object");
    for (key, value) in [
        ("HTML5.DynamicDestination", json!("TRUE")),
        ("HTML5.Timeout", json!("60000")),
        ("HTML5.SetXForwardedHeaders", json!(false)),
        ("HTML5.PreserveHostHeader", json!("true")),
        ("URL.headers.x-api-key", json!("k-123")),
        ("sap-client", json!("100")),
        ("TrustAll", json!("true")),
    ] {
        object.insert(key.into(), value);
    }
    let found = parse(&answer(configuration, Some(bearer(json!("3599"))))).expect("destination");
    assert_eq!(found.url.as_str(), "https://erp.example.org/api");
    assert_eq!(found.proxy_type, ProxyType::Internet);
    assert_eq!(found.authentication, Authentication::OAuth2ClientCredentials);
    let (key, value) = found.auth_header.expect("header");
    assert_eq!(
        (key.as_str(), value.to_str().expect("ascii")),
        ("authorization", "Bearer eyJ")
    );
    assert_eq!(found.auth_expires_in, Some(Duration::from_secs(3599)));
    assert_eq!(found.timeout, Some(Duration::from_millis(60000)));
    assert!(found.dynamic && found.preserve_host_header && !found.set_x_forwarded_headers);
    assert!(!found.trust_all, "TrustAll is for PrivateLink only");
    assert_eq!(found.headers.len(), 1);
    assert_eq!(found.headers[0].0.as_str(), "x-api-key");
    assert_eq!(found.sap_client.as_ref().map(|v| v.as_bytes()), Some(&b"100"[..]));
}

#[test]
fn each_authentication_type_is_known_and_none_goes_out_without_credentials() {
    let with_token = [
        "OAuth2ClientCredentials",
        "OAuth2UserTokenExchange",
        "OAuth2JWTBearer",
        "OAuth2SAMLBearerAssertion",
        "OAuth2Password",
        "OAuth2TechnicalUserPropagation",
        "SAMLAssertion",
        "OAuth2RefreshToken",
        "OAuth2AuthorizationCode",
        "OAuth2TokenExchange",
        "BasicAuthentication",
    ];
    for authentication in with_token {
        let found = parse(&answer(base(authentication), Some(bearer(json!(60))))).expect(authentication);
        assert_eq!(Authentication::from_name(authentication), Some(found.authentication));
        assert!(found.auth_header.is_some(), "{authentication}");
        let missing = parse(&answer(base(authentication), None)).expect_err(authentication);
        assert!(
            matches!(missing, DestinationError::AuthToken { .. }),
            "{authentication} without a token: {missing}"
        );
    }
    let found = parse(&answer(base("NoAuthentication"), None)).expect("none");
    assert!(found.auth_header.is_none());
    let found = parse(&answer(base("PrincipalPropagation"), None)).expect("principal propagation");
    assert_eq!(found.authentication, Authentication::PrincipalPropagation);

    let mut basic = base("BasicAuthentication");
    basic["User"] = json!("alice");
    basic["Password"] = json!("pw");
    let found = parse(&answer(basic, None)).expect("basic from User/Password");
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:pw"));
    assert_eq!(
        found.auth_header.expect("header").1.to_str().ok(),
        Some(expected.as_str())
    );

    let error = parse(&answer(base("KerberosMagic"), None)).expect_err("unknown");
    assert!(
        error.to_string().contains("unknown Authentication \"KerberosMagic\""),
        "{error}"
    );
    let error = parse(&answer(base("ClientCertificateAuthentication"), None)).expect_err("keystore");
    assert!(error.to_string().contains("KeyStoreLocation"), "{error}");
    let mut keystore = base("ClientCertificateAuthentication");
    keystore["KeyStoreLocation"] = json!("client.p12");
    let error = parse(&answer(keystore, None)).expect_err("p12");
    assert!(error.to_string().contains("not yet supported"), "{error}");
}

#[test]
fn bad_answers_name_the_destination_and_the_property() {
    let set = |key: &str, value: Value| {
        let mut configuration = base("NoAuthentication");
        configuration[key] = value;
        answer(configuration, None)
    };
    let remove = |key: &str| {
        let mut configuration = base("NoAuthentication");
        configuration.as_object_mut().map(|c| c.remove(key));
        answer(configuration, None)
    };
    let rows: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "destination erp: malformed answer"),
        (br#"{"owner": {}}"#.to_vec(), "no destinationConfiguration"),
        (set("Type", json!("RFC")), "erp: Type must be HTTP"),
        (remove("Type"), "erp: Type is required"),
        (set("URL", json!("/relative")), "erp: URL must be an absolute"),
        (set("URL", json!("ftp://host/x")), "erp: URL must be an absolute"),
        (remove("URL"), "erp: URL is required"),
        (set("ProxyType", json!("Intranet")), "erp: ProxyType must be OnPremise"),
        (remove("ProxyType"), "erp: ProxyType is required"),
        (
            set("ProxyType", json!("OnPremise")),
            "OnPremise needs a connectivity binding",
        ),
        (
            set("User", json!("alice")),
            "erp: Password User and Password come as a pair",
        ),
        (
            set("Password", json!("pw")),
            "erp: User User and Password come as a pair",
        ),
        (
            set("HTML5.Timeout", json!("soon")),
            "erp: HTML5.Timeout must be a whole number",
        ),
        (
            set("HTML5.Timeout", json!("0")),
            "erp: HTML5.Timeout must be a whole number",
        ),
        (
            set("HTML5.DynamicDestination", json!("yes")),
            "HTML5.DynamicDestination must be true or false",
        ),
        (
            set("URL.headers.bad name", json!("v")),
            "URL.headers.bad name not a header name",
        ),
        (set("URL.headers.x", json!("a\nb")), "URL.headers.x not a header value"),
        (set("sap-client", json!(100)), "sap-client must be a string"),
        (
            set("TrustStoreLocation", json!("trust.jks")),
            "TrustStoreLocation must name a .pem",
        ),
        (
            set("TrustStoreLocation", json!("trust.pem")),
            "no certificate named \"trust.pem\"",
        ),
        (
            answer(
                base("OAuth2ClientCredentials"),
                Some(json!([{"type": "", "value": "", "error": "Retrieval of OAuth token failed"}])),
            ),
            "could not get the token: Retrieval of OAuth token failed",
        ),
        (
            answer(
                base("OAuth2ClientCredentials"),
                Some(json!([{"type": "Bearer", "value": "x"}])),
            ),
            "http_header is missing",
        ),
        (
            answer(base("OAuth2ClientCredentials"), Some(bearer(json!("later")))),
            "expires_in is not a number",
        ),
    ];
    for (bytes, expected) in rows {
        let error = parse(&bytes).expect_err(expected);
        assert!(error.to_string().contains(expected), "{expected}: {error}");
    }

    let mut forward = base("BasicAuthentication");
    forward["HTML5.ForwardAuthToken"] = json!("true");
    let error = parse(&answer(forward, Some(bearer(json!(1))))).expect_err("forward");
    assert!(
        error.to_string().contains("HTML5.ForwardAuthToken is only allowed"),
        "{error}"
    );
    let mut forward = base("NoAuthentication");
    forward["HTML5.ForwardAuthToken"] = json!(true);
    forward["ProxyType"] = json!("OnPremise");
    let error = parse_destination("erp", &answer(forward, None), true).expect_err("onpremise");
    assert!(
        error.to_string().contains("not allowed with ProxyType OnPremise"),
        "{error}"
    );
}

#[test]
fn a_pem_trust_store_is_decoded() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["erp.example.org".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let mut configuration = base("NoAuthentication");
    configuration["TrustStoreLocation"] = json!("trust.pem");
    let mut bytes: Value = serde_json::from_slice(&answer(configuration, None)).expect("json");
    bytes["certificates"] = json!([{"Name": "trust.pem", "Type": "CERTIFICATE",
        "Content": base64::engine::general_purpose::STANDARD.encode(cert.pem())}]);
    let found = parse(bytes.to_string().as_bytes()).expect("trust store");
    assert_eq!(found.trust_store.len(), 1);
}

#[test]
fn names_are_one_encoded_path_segment() {
    let binding = crate::config::ServiceBinding {
        kind: crate::config::ServiceKind::Destination,
        name: "dest".into(),
        source: crate::config::BindingSource::VcapServices,
        clientid: "c".into(),
        credential: crate::config::ServiceCredential::Secret("s".into()),
        token_url: "https://uaa.example.org/oauth/token".into(),
        uaadomain: None,
        xsappname: None,
        uri: Some("https://dest.example.org/".into()),
        proxy: None,
    };
    let client =
        DestinationClient::new(&binding, Arc::new(RootCertStore::empty()), DEFAULT_TIMEOUT, false).expect("client");
    assert_eq!(
        client.find_uri("a/../b c?x#ü"),
        "https://dest.example.org/destination-configuration/v1/destinations/a%2F..%2Fb%20c%3Fx%23%C3%BC"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_answer_is_a_destination_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn any_property_values_are_a_destination_or_an_error(
        values in proptest::collection::vec((
            prop::sample::select(vec!["Type", "URL", "ProxyType", "Authentication", "User", "Password",
                "HTML5.Timeout", "HTML5.ForwardAuthToken", "URL.headers.x", "sap-client", "TrustAll",
                "TrustStoreLocation", "KeyStoreLocation", "CloudConnectorLocationId"]),
            "\\PC{0,24}",
        ), 0..8),
        expires_in in "\\PC{0,8}",
    ) {
        let mut configuration = base("OAuth2ClientCredentials");
        for (key, value) in values {
            configuration[key] = json!(value);
        }
        let _ = parse_destination("erp", &answer(configuration, Some(bearer(json!(expires_in)))), true);
    }
}
