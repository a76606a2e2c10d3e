//! Credentials, VCAP_SERVICES and the kubelet-style binding directory.

use std::fs;
use std::path::Path;

use serde_json::Value;
use xsuaa_dev::{ClientCertOpts, DevXsuaa};

#[tokio::test]
async fn credentials_and_vcap_services_look_like_an_xsuaa_binding() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let credentials = xsuaa.credentials();
    for (field, expected) in [
        ("clientid", xsuaa.client_id()),
        ("xsappname", xsuaa.xsappname()),
        ("url", xsuaa.url()),
        ("certurl", xsuaa.cert_url()),
        ("uaadomain", xsuaa.uaa_domain()),
        ("identityzone", "dev".into()),
        ("identityzoneid", xsuaa.zone_id()),
        ("tenantmode", "dedicated".into()),
        ("credential-type", "x509".into()),
        ("verificationkey", xsuaa.public_key_pem()),
    ] {
        assert_eq!(credentials[field], expected.as_str(), "{field}");
    }
    let certificate = credentials["certificate"].as_str().unwrap();
    assert_eq!(certificate.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(certificate.ends_with(&xsuaa.ca_pem()), "leaf first, then the CA");
    assert!(credentials["key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(credentials.get("clientsecret").is_none());

    let cert = xsuaa.issue_client_cert(ClientCertOpts::default());
    assert_eq!(xsuaa.credentials_with(&cert)["certificate"], cert.cert_pem.as_str());

    let vcap: Value = serde_json::from_str(&xsuaa.vcap_services(&credentials)).unwrap();
    let binding = &vcap["xsuaa"][0];
    assert_eq!(binding["label"], "xsuaa");
    assert_eq!(binding["plan"], "application");
    assert_eq!(binding["tags"], serde_json::json!(["xsuaa"]));
    assert_eq!(binding["credentials"], credentials);
}

fn data_target(dir: &Path) -> String {
    fs::read_link(dir.join("..data"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn binding_dir_uses_kubelet_layout_and_swaps_atomically() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let first = xsuaa.credentials();
    let dir = xsuaa.write_binding_dir(root.path(), "xsuaa", &first).unwrap();
    assert_eq!(dir, root.path().join("xsuaa"));

    let target = data_target(&dir);
    assert!(target.starts_with(".."), "{target}");
    assert!(fs::symlink_metadata(dir.join(&target)).unwrap().is_dir());
    for field in ["clientid", "certificate", "key", "url", "type", "provider"] {
        let link = fs::read_link(dir.join(field)).unwrap();
        assert_eq!(
            link,
            Path::new("..data").join(field),
            "{field} is a symlink into ..data"
        );
        assert!(fs::symlink_metadata(dir.join(&target).join(field)).unwrap().is_file());
    }
    let read = |field: &str| fs::read_to_string(dir.join(field)).unwrap();
    assert_eq!(read("clientid"), xsuaa.client_id());
    assert_eq!(read("certificate"), first["certificate"].as_str().unwrap());
    assert_eq!(read("type"), "xsuaa");
    assert_eq!(read("provider"), "sap");

    // Second write: new certificate, a removed field and a non-string field.
    let cert = xsuaa.issue_client_cert(ClientCertOpts::default());
    let mut second = xsuaa.credentials_with(&cert);
    second.as_object_mut().unwrap().remove("tenantmode");
    second["extra"] = serde_json::json!({"nested": [1, 2]});
    xsuaa.write_binding_dir(root.path(), "xsuaa", &second).unwrap();

    let new_target = data_target(&dir);
    assert_ne!(new_target, target);
    assert!(!dir.join(&target).exists(), "old payload directory removed");
    assert!(!dir.join("..data_tmp").exists());
    assert_eq!(read("certificate"), cert.cert_pem);
    assert_eq!(read("key"), cert.key_pem);
    assert_eq!(read("extra"), r#"{"nested":[1,2]}"#);
    assert!(
        fs::symlink_metadata(dir.join("tenantmode")).is_err(),
        "stale field removed"
    );

    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".."))
        .collect();
    names.sort();
    assert_eq!(names, vec![new_target, "..data".to_string()]);
}

#[tokio::test]
async fn binding_dir_rejects_unsafe_names() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    assert!(xsuaa
        .write_binding_dir(root.path(), "../escape", &xsuaa.credentials())
        .is_err());
    let bad = serde_json::json!({"../x": "y"});
    assert!(xsuaa.write_binding_dir(root.path(), "xsuaa", &bad).is_err());
    assert!(xsuaa
        .write_binding_dir(root.path(), "xsuaa", &serde_json::json!([1]))
        .is_err());
}
