use serde_json::json;

use super::*;

fn vcap(services: Value) -> Env {
    Env::from_pairs([("VCAP_SERVICES", services.to_string())])
}

fn destination_x509() -> Value {
    json!({
        "clientid": "sb-clone!b1|destination-xsappname!b404",
        "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
        "certurl": "https://acme.authentication.cert.eu10.hana.ondemand.com/",
        "url": "https://acme.authentication.eu10.hana.ondemand.com",
        "uri": "https://destination-configuration.cfapps.eu10.hana.ondemand.com",
        "uaadomain": "authentication.eu10.hana.ondemand.com"
    })
}

fn connectivity_secret() -> Value {
    json!({
        "clientid": "sb-conn",
        "clientsecret": "s3cret",
        "url": "https://acme.authentication.eu10.hana.ondemand.com",
        "onpremise_proxy_host": "connectivityproxy.internal",
        "onpremise_proxy_port": "20003"
    })
}

fn instance(name: &str, tags: &[&str], credentials: Value) -> Value {
    json!({"name": name, "label": "x", "tags": tags, "credentials": credentials})
}

fn find(env: &Env) -> (ServiceBindings, Error) {
    let mut errors = Error::default();
    let found = find_services(env, &mut errors);
    (found, errors)
}

#[test]
fn destination_and_connectivity_are_found_by_tag_or_label() {
    let env = vcap(json!({
        "destination": [instance("dest", &["destination", "conn", "connsvc"], destination_x509())],
        "user-provided": [instance("conn", &["connectivity"], connectivity_secret())],
        "xsuaa": [instance("uaa", &["xsuaa"], json!({}))]
    }));
    let (found, errors) = find(&env);
    assert!(errors.is_empty(), "{errors}");
    let destination = found.destination.expect("destination");
    assert_eq!(destination.name, "dest");
    assert!(destination.is_x509());
    assert_eq!(
        destination.token_url,
        "https://acme.authentication.cert.eu10.hana.ondemand.com/oauth/token"
    );
    assert_eq!(
        destination.uri.as_deref(),
        Some("https://destination-configuration.cfapps.eu10.hana.ondemand.com")
    );
    let connectivity = found.connectivity.expect("connectivity");
    assert!(!connectivity.is_x509());
    assert_eq!(connectivity.proxy, Some(("connectivityproxy.internal".into(), 20003)));
    assert_eq!(
        connectivity.token_url,
        "https://acme.authentication.eu10.hana.ondemand.com/oauth/token"
    );
}

#[test]
fn connectivity_prefers_the_current_field_names() {
    let mut credentials = connectivity_secret();
    credentials["onpremise_proxy_http_port"] = json!(20004);
    credentials["token_service_url"] = json!("https://token.example.org");
    let env = vcap(json!({"connectivity": [instance("conn", &[], credentials)]}));
    let (found, errors) = find(&env);
    assert!(errors.is_empty(), "{errors}");
    let connectivity = found.connectivity.expect("connectivity");
    assert_eq!(connectivity.proxy, Some(("connectivityproxy.internal".into(), 20004)));
    assert_eq!(connectivity.token_url, "https://token.example.org/oauth/token");
}

#[test]
fn nothing_bound_is_no_binding_and_no_error() {
    let (found, errors) = find(&Env::default());
    assert!(found.destination.is_none() && found.connectivity.is_none());
    assert!(errors.is_empty());
}

#[test]
fn two_bindings_with_one_tag_are_an_error_naming_both() {
    let env = vcap(json!({
        "destination": [
            instance("first", &["destination"], destination_x509()),
            instance("second", &["destination"], destination_x509())
        ]
    }));
    let (found, errors) = find(&env);
    assert!(found.destination.is_none());
    let text = errors.to_string();
    assert!(
        text.contains("VCAP_SERVICES") && text.contains("\"first\"") && text.contains("\"second\""),
        "{text}"
    );
}

#[test]
fn bad_bindings_name_the_key() {
    let with = |change: &dyn Fn(&mut Value)| {
        let mut credentials = destination_x509();
        change(&mut credentials);
        vcap(json!({"destination": [instance("dest", &["destination"], credentials)]}))
    };
    let rows: Vec<(Env, &str)> = vec![
        (
            with(&|c| {
                c.as_object_mut().map(|c| c.remove("clientid"));
            }),
            "dest.credentials.clientid: is required",
        ),
        (
            with(&|c| {
                c.as_object_mut().map(|c| c.remove("uri"));
            }),
            "dest.credentials.uri: is required",
        ),
        (
            with(&|c| c["uri"] = json!("/relative")),
            "dest.credentials.uri: must be an absolute http(s) URL",
        ),
        (
            with(&|c| c["certurl"] = json!("ftp://x")),
            "dest.credentials.certurl: must be an absolute",
        ),
        (
            with(&|c| {
                c.as_object_mut().map(|c| c.remove("certurl"));
            }),
            "dest.credentials.certurl: is required",
        ),
        (
            with(&|c| {
                c.as_object_mut().map(|c| c.remove("key"));
            }),
            "dest.credentials.key: is required with certificate",
        ),
        (
            with(&|c| {
                let object = c.as_object_mut().expect("object");
                object.remove("key");
                object.remove("certificate");
            }),
            "dest.credentials: needs clientsecret or certificate and key",
        ),
        (
            vcap(
                json!({"connectivity": [instance("conn", &[], json!({"clientid": "c", "clientsecret": "s", "url": "https://u", "onpremise_proxy_port": "99999"}))]}),
            ),
            "conn.credentials.onpremise_proxy_host: is required",
        ),
        (
            vcap(
                json!({"connectivity": [instance("conn", &[], json!({"clientid": "c", "clientsecret": "s", "url": "https://u", "onpremise_proxy_host": "h", "onpremise_proxy_port": "99999"}))]}),
            ),
            "conn.credentials.onpremise_proxy_port: must be a port number",
        ),
        (
            vcap(
                json!({"connectivity": [instance("conn", &[], json!({"clientid": "c", "clientsecret": "s", "url": "https://u", "onpremise_proxy_host": "h"}))]}),
            ),
            "conn.credentials.onpremise_proxy_http_port: is required",
        ),
        (
            vcap(
                json!({"connectivity": [instance("conn", &[], json!({"clientid": "c", "clientsecret": "s", "onpremise_proxy_host": "h", "onpremise_proxy_port": 1}))]}),
            ),
            "conn.credentials.url: is required",
        ),
    ];
    for (env, expected) in rows {
        let (found, errors) = find(&env);
        assert!(found.destination.is_none() && found.connectivity.is_none());
        assert!(errors.to_string().contains(expected), "{expected}: {errors}");
    }
}

#[test]
fn binding_files_are_found_by_type_and_duplicates_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, kind: &str, fields: &[(&str, &str)]| {
        let folder = root.path().join(name);
        std::fs::create_dir(&folder).expect("folder");
        std::fs::write(folder.join("type"), kind).expect("type");
        for (key, value) in fields {
            std::fs::write(folder.join(key), value).expect("field");
        }
    };
    let fields = [
        ("clientid", "c"),
        ("clientsecret", "s"),
        ("url", "https://uaa.example.org"),
        ("uri", "https://dest.example.org"),
    ];
    write("my-destination", "destination\n", &fields);
    let env = Env::from_pairs([("SERVICE_BINDING_ROOT", root.path().display().to_string())]);
    let (found, errors) = find(&env);
    assert!(errors.is_empty(), "{errors}");
    let destination = found.destination.expect("destination");
    assert_eq!(destination.name, "my-destination");
    assert_eq!(
        destination.source,
        BindingSource::Files(root.path().join("my-destination"))
    );
    assert_eq!(destination.token_url, "https://uaa.example.org/oauth/token");

    write("other-destination", "destination", &fields);
    let (found, errors) = find(&env);
    assert!(found.destination.is_none());
    let text = errors.to_string();
    assert!(
        text.contains("SERVICE_BINDING_ROOT") && text.contains("my-destination") && text.contains("other-destination"),
        "{text}"
    );
}
