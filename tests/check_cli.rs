//! `approuter check` and `approuter binding-params`, run as the real binary: the report, its exit
//! status (0 ok, 64 configuration problems, 1 other failures), and parameters parsed back.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::idp::dev_xsuaa;
use xsuaa_dev::{ClientCertOpts, DevXsuaa, ServiceKind};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(args: &[String], env: &[(String, String)]) -> Run {
    let child = tokio::process::Command::new(support::binary())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the approuter binary");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the binary did not finish")
        .expect("binary output");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// === check ===

fn protected_app() -> Value {
    json!({"routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]})
}

fn public_app() -> Value {
    json!({"routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}]})
}

enum Binding {
    None,
    Files(Value),
    Vcap(Value),
    /// XSUAA with these credentials, and the Destination and Connectivity services.
    Services(Value),
}

struct Case {
    name: &'static str,
    xs_app: Value,
    binding: Binding,
    /// Extra variables.
    env: Vec<(&'static str, &'static str)>,
    /// Files in the app folder.
    files: Vec<(&'static str, String)>,
    /// Arguments after `check`; `{dir}` is the app folder.
    args: Vec<&'static str>,
    code: i32,
    contains: Vec<&'static str>,
    absent: Vec<&'static str>,
}

impl Case {
    fn new(name: &'static str, binding: Binding, code: i32, contains: &[&'static str]) -> Case {
        Case {
            name,
            xs_app: protected_app(),
            binding,
            env: Vec::new(),
            files: Vec::new(),
            args: Vec::new(),
            code,
            contains: contains.to_vec(),
            absent: Vec::new(),
        }
    }
}

fn credentials_with_cert(dev: &DevXsuaa, opts: ClientCertOpts) -> Value {
    dev.credentials_with(&dev.issue_client_cert(opts))
}

fn valid_for(lifetime: Duration) -> ClientCertOpts {
    let now = SystemTime::now();
    ClientCertOpts {
        not_before: now - Duration::from_secs(3600),
        not_after: now + lifetime,
        ..Default::default()
    }
}

const MTA_INLINE: &str = r#"
_schema-version: "3.1"
ID: shop
version: 1.0.0
modules:
  - name: app-router
    type: approuter.nodejs
    requires:
      - name: shop-uaa
        parameters:
          config:
            credential-type: x509
resources:
  - name: shop-db
    type: org.cloudfoundry.managed-service
    parameters:
      service: hana
  - name: shop-uaa
    type: org.cloudfoundry.managed-service
    parameters:
      service: xsuaa
      service-plan: application
      config:
        xsappname: shop
        oauth2-configuration:
          credential-types: [x509, binding-secret]
"#;

const MTA_PATH: &str = r#"
ID: shop
version: 1.0.0
resources:
  - name: shop-uaa
    type: com.sap.xs.uaa
    parameters:
      path: ./xs-security.json
"#;

const MTA_NO_UAA: &str = r#"
ID: shop
version: 1.0.0
resources:
  - name: shop-db
    type: org.cloudfoundry.managed-service
    parameters:
      service: hana
"#;

fn cases(dev: &DevXsuaa) -> Vec<Case> {
    let mut shared = dev.credentials();
    shared["tenantmode"] = json!("shared");
    let mut no_certurl = dev.credentials();
    no_certurl.as_object_mut().unwrap().remove("certurl");
    let mut mismatched = dev.credentials();
    mismatched["key"] = json!(dev.issue_client_cert(ClientCertOpts::default()).key_pem);
    let now = SystemTime::now();
    let expired = credentials_with_cert(
        dev,
        ClientCertOpts {
            not_before: now - Duration::from_secs(7200),
            not_after: now - Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let ten_hours = credentials_with_cert(dev, valid_for(Duration::from_secs(10 * 3600)));
    vec![
        Case::new(
            "x509 binding files",
            Binding::Files(dev.credentials()),
            0,
            &[
                "binding files in",
                "credential type x509",
                "certurl: https://127.0.0.1:",
                "key: the private key matches the certificate",
                "issuer CN=xsuaa-dev CA",
                "days to expiry",
                "check passed (0 warnings)",
            ],
        ),
        Case {
            xs_app: json!({"routes": [{"source": "^/api/(.*$", "destination": "backend"}]}),
            ..Case::new(
                "a broken route, and the binding is still reported",
                Binding::Files(dev.credentials()),
                64,
                &["config   xs-app.json: routes[0].source", "credential type x509", "check failed"],
            )
        },
        Case {
            xs_app: json!({"routes": [
                {"source": "^/secret$", "destination": "backend"},
                {"source": "^/report\\?format=csv$", "destination": "backend", "authenticationType": "none"},
                {"source": "^/api/(.*)$", "destination": "backend"},
                {"source": "^/(.*)$", "destination": "backend", "authenticationType": "none"}
            ]}),
            ..Case::new(
                "a table whose routes depend on the query string",
                Binding::Files(dev.credentials()),
                0,
                &[
                    "warning  routes[1].source: matches the query string",
                    "warning  routes: routes[0] end with `$`",
                    "check passed (2 warnings)",
                ],
            )
        },
        Case::new(
            "expired certificate",
            Binding::Files(expired),
            1,
            &["error    expiry: the certificate expired at", "check failed: 1 error"],
        ),
        Case::new(
            "key of another certificate",
            Binding::Files(mismatched),
            1,
            &["error    key: certificate and key do not match"],
        ),
        Case::new(
            "expiry within the warning period",
            Binding::Files(ten_hours.clone()),
            0,
            &["warning  expiry: 0.4 days to expiry", "less than the 48 h warning period", "check passed (1 warning)"],
        ),
        Case {
            env: vec![("CERT_EXPIRY_WARNING_HOURS", "5")],
            absent: vec!["warning  expiry"],
            ..Case::new(
                "a shorter warning period",
                Binding::Files(ten_hours),
                0,
                &["ok       expiry: 0.4 days to expiry"],
            )
        },
        Case::new(
            "x509 without certurl",
            Binding::Files(no_certurl),
            64,
            &[".certurl: is required for x509 credentials"],
        ),
        Case::new(
            "secret binding in VCAP_SERVICES",
            Binding::Vcap(json!({
                "clientid": "sb-shop", "clientsecret": "s3cret", "url": "https://shop.auth.example",
                "xsappname": "shop", "uaadomain": "auth.example", "credential-type": "binding-secret"
            })),
            0,
            &["from VCAP_SERVICES, credential type binding-secret", "with the client secret"],
        ),
        Case {
            xs_app: public_app(),
            ..Case::new("no binding and only public routes", Binding::None, 0, &["no XSUAA binding found"])
        },
        Case::new(
            "no binding for a protected route",
            Binding::None,
            64,
            &["routes[0].authenticationType: needs an XSUAA binding"],
        ),
        Case {
            files: vec![("mta.yaml", MTA_INLINE.into())],
            args: vec!["--mta", "{dir}/mta.yaml"],
            ..Case::new(
                "mta.yaml with inline config",
                Binding::Files(dev.credentials()),
                0,
                &[
                    "mta.yaml: resources[1]: xsuaa resource \"shop-uaa\"",
                    "resources[1]: oauth2-configuration.credential-types: includes x509 (x509, binding-secret)",
                    "default credential type is x509",
                    "modules[0].requires[0].parameters.config.credential-type: module \"app-router\" binds with credential type x509",
                ],
            )
        },
        Case {
            files: vec![
                ("mta.yaml", MTA_PATH.into()),
                (
                    "xs-security.json",
                    json!({"xsappname": "shop", "oauth2-configuration": {"credential-types": ["binding-secret"]}}).to_string(),
                ),
            ],
            args: vec!["--mta", "{dir}/mta.yaml"],
            ..Case::new(
                "mta.yaml with a descriptor file without x509",
                Binding::Files(dev.credentials()),
                0,
                &["warning  mta.yaml: resources[0]: oauth2-configuration.credential-types: does not include x509"],
            )
        },
        Case {
            files: vec![("mta.yaml", MTA_NO_UAA.into())],
            args: vec!["--mta", "{dir}/mta.yaml"],
            ..Case::new(
                "mta.yaml without xsuaa",
                Binding::Files(dev.credentials()),
                0,
                &["no xsuaa resource declared"],
            )
        },
        Case {
            files: vec![("mta.yaml", "resources: [unclosed".into())],
            args: vec!["--mta", "{dir}/mta.yaml"],
            ..Case::new("mta.yaml not YAML", Binding::Files(dev.credentials()), 64, &["mta.yaml: not valid YAML"])
        },
        Case {
            files: vec![(
                "xs-security.json",
                json!({"oauth2-configuration": {"credential-types": ["binding-secret", "x509"]}}).to_string(),
            )],
            args: vec!["--xs-security", "{dir}/xs-security.json"],
            ..Case::new(
                "xs-security.json with x509 second",
                Binding::Files(dev.credentials()),
                0,
                &["includes x509", "default credential type is binding-secret", "approuter binding-params"],
            )
        },
        Case {
            files: vec![(
                "xs-security.json",
                json!({"oauth2-configuration": {"credential-types": ["x509", "certificate"]}}).to_string(),
            )],
            args: vec!["--xs-security", "{dir}/xs-security.json"],
            ..Case::new(
                "xs-security.json with an unknown type",
                Binding::Files(dev.credentials()),
                64,
                &["xs-security.json: oauth2-configuration.credential-types[1]: must be one of"],
            )
        },
        Case {
            xs_app: json!({"routes": [
                {"source": "^/erp/(.*)$", "destination": "erp"},
                {"source": "^/d/([^/]+)/(.*)$", "target": "/$2", "destination": "$1"},
                {"source": "^/(.*)$", "destination": "backend"}
            ]}),
            ..Case::new(
                "routes to Destination service destinations",
                Binding::Services(dev.credentials()),
                0,
                &[
                    "Destination service",
                    "found at request time: erp (routes[0])",
                    "routes[1]: $1",
                    "HTML5.DynamicDestination",
                ],
            )
        },
        Case {
            env: vec![("TENANT_HOST_PATTERN", r"^(.*)\.app\.example$")],
            args: vec!["--host", "acme.app.example:443"],
            ..Case::new(
                "a tenant from --host",
                Binding::Vcap(shared.clone()),
                0,
                &["TENANT_HOST_PATTERN", "acme.app.example:443: tenant acme", "/oauth/authorize"],
            )
        },
        Case {
            args: vec!["--host", "acme.app.example"],
            ..Case::new(
                "tenantmode shared without a pattern",
                Binding::Vcap(shared.clone()),
                64,
                &["TENANT_HOST_PATTERN: the XSUAA binding has tenantmode shared"],
            )
        },
        Case {
            xs_app: json!({"routes": [{"source": "^/erp/(.*)$", "destination": "erp"}]}),
            ..Case::new(
                "a Destination service destination without the service",
                Binding::Files(dev.credentials()),
                64,
                &["routes[0].destination", "no destination", "service is bound"],
            )
        },
        Case {
            files: vec![("xs-security.json", "{ not json".into())],
            args: vec!["--xs-security", "{dir}/xs-security.json"],
            ..Case::new(
                "xs-security.json not JSON",
                Binding::Files(dev.credentials()),
                64,
                &["is not valid JSON"],
            )
        },
    ]
}

#[tokio::test]
async fn check_reports_and_exits_by_severity() {
    let dev = dev_xsuaa().await;
    let ca = tempfile::tempdir().unwrap();
    let ca_file = ca.path().join("ca.pem");
    std::fs::write(&ca_file, dev.ca_pem()).unwrap();
    for case in cases(&dev) {
        let dir = tempfile::tempdir().unwrap();
        support::write_app(dir.path(), &case.xs_app, &[]);
        for (name, content) in &case.files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let bindings = tempfile::tempdir().unwrap();
        let mut env = vec![
            (
                "destinations".to_string(),
                json!([{"name": "backend", "url": "http://127.0.0.1:9"}]).to_string(),
            ),
            ("XS_CACERT_PATH".to_string(), ca_file.display().to_string()),
        ];
        match &case.binding {
            Binding::None => {}
            Binding::Files(credentials) => {
                dev.write_binding_dir(bindings.path(), "shop-uaa", credentials).unwrap();
                env.push(("SERVICE_BINDING_ROOT".into(), bindings.path().display().to_string()));
            }
            Binding::Vcap(credentials) => env.push(("VCAP_SERVICES".into(), dev.vcap_services(credentials))),
            Binding::Services(credentials) => {
                let destination = dev.service_credentials(ServiceKind::Destination).unwrap();
                let connectivity = dev.service_credentials(ServiceKind::Connectivity).unwrap();
                env.push((
                    "VCAP_SERVICES".into(),
                    dev.vcap_services_all(credentials, &destination, &connectivity),
                ));
            }
        }
        for (name, value) in &case.env {
            env.push((name.to_string(), value.to_string()));
        }
        let mut args = vec!["check".to_string(), "--dir".into(), dir.path().display().to_string()];
        args.extend(
            case.args
                .iter()
                .map(|arg| arg.replace("{dir}", &dir.path().display().to_string())),
        );
        let run = run(&args, &env).await;
        let name = case.name;
        assert_eq!(run.code, Some(case.code), "{name}:\n{}\n{}", run.stdout, run.stderr);
        for text in &case.contains {
            assert!(run.stdout.contains(text), "{name}: missing {text:?} in\n{}", run.stdout);
        }
        for text in &case.absent {
            assert!(
                !run.stdout.contains(text),
                "{name}: unexpected {text:?} in\n{}",
                run.stdout
            );
        }
    }
}

#[tokio::test]
async fn check_without_a_subcommand_flag_still_serves() {
    // `--dir` after the subcommand and before it mean the same; the plain command is the router.
    let dir = tempfile::tempdir().unwrap();
    support::write_app(dir.path(), &json!({"routez": []}), &[]);
    let env = vec![("PORT".to_string(), "0".to_string())];
    let before = run(
        &["--dir".into(), dir.path().display().to_string(), "check".into()],
        &env,
    )
    .await;
    let after = run(
        &["check".into(), "--dir".into(), dir.path().display().to_string()],
        &env,
    )
    .await;
    assert_eq!(before.code, Some(64), "{}", before.stdout);
    assert_eq!(before.stdout, after.stdout);
    let serve = run(&["--dir".into(), dir.path().display().to_string()], &env).await;
    assert_eq!(
        serve.code,
        Some(64),
        "the router refuses the same configuration: {}",
        serve.stderr
    );
    assert!(serve.stderr.contains("routez"), "{}", serve.stderr);
}

// === binding-params ===

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn leaf_der(pem: &str) -> Vec<u8> {
    approuter::tls::certificates(pem).unwrap()[0].as_ref().to_vec()
}

#[tokio::test]
async fn binding_params_are_valid_json_within_the_documented_limits() {
    let dev = dev_xsuaa().await;
    let files = tempfile::tempdir().unwrap();
    let cert = dev.issue_client_cert(ClientCertOpts::default());
    let now = SystemTime::now();
    let expired = dev.issue_client_cert(ClientCertOpts {
        not_before: now - Duration::from_secs(7200),
        not_after: now - Duration::from_secs(3600),
        ..Default::default()
    });
    let cert_file = write(files.path(), "cert.pem", &cert.cert_pem);
    let with_key = write(files.path(), "both.pem", &format!("{}{}", cert.cert_pem, cert.key_pem));
    let expired_file = write(files.path(), "expired.pem", &expired.cert_pem);
    let key_only = write(files.path(), "key.pem", &cert.key_pem);
    let missing = files.path().join("missing.pem").display().to_string();

    type Check = Box<dyn Fn(&Value)>;
    let service = |validity: u64, key_length: u64| -> Check {
        Box::new(move |json: &Value| {
            assert_eq!(
                json,
                &json!({"credential-type": "x509", "x509": {"key-length": key_length, "validity": validity, "validity-type": "DAYS"}})
            )
        })
    };
    let cert_pem = cert.cert_pem.clone();
    let self_managed = move |pinning: bool| -> Check {
        let cert_pem = cert_pem.clone();
        Box::new(move |json: &Value| {
            assert_eq!(json["credential-type"], "x509");
            let x509 = &json["x509"];
            assert_eq!(x509["certificate-pinning"], pinning);
            assert_eq!(x509["ensure-uniqueness"], false);
            let pem = x509["certificate"].as_str().unwrap();
            assert!(!pem.contains("PRIVATE KEY"), "{pem}");
            assert_eq!(leaf_der(pem), leaf_der(&cert_pem));
            assert_eq!(approuter::tls::certificates(pem).unwrap().len(), 2, "the chain is kept");
        })
    };
    let rows: Vec<(Vec<&str>, i32, Option<Check>, &str)> = vec![
        (vec![], 0, Some(service(7, 2048)), "7 days"),
        (
            vec!["--validity", "30", "--key-length", "4096"],
            0,
            Some(service(30, 4096)),
            "",
        ),
        (
            vec!["--validity", "1", "--validity-type", "days"],
            0,
            Some(service(1, 2048)),
            "1 day:",
        ),
        (
            vec!["--validity", "31"],
            64,
            None,
            "--validity must be 1 to 30 days, got 31",
        ),
        (vec!["--validity", "0"], 64, None, "got 0"),
        (
            vec!["--validity", "1", "--validity-type", "MONTHS"],
            64,
            None,
            "MONTHS is not accepted",
        ),
        (vec!["--validity-type", "YEARS"], 64, None, "YEARS is not accepted"),
        (
            vec!["--key-length", "1024"],
            64,
            None,
            "--key-length must be 2048, 4096 or 8192",
        ),
        (
            vec!["--certificate", &cert_file],
            0,
            Some(self_managed(true)),
            "certificate-pinning is true",
        ),
        (
            vec!["--certificate", &with_key, "--certificate-pinning", "false"],
            0,
            Some(self_managed(false)),
            "private key; it was left out",
        ),
        (
            vec!["--certificate", &expired_file],
            64,
            None,
            "the certificate expired at",
        ),
        (vec!["--certificate", &key_only], 64, None, "holds no certificate"),
        (vec!["--certificate", &missing], 1, None, "cannot read"),
        (
            vec!["--certificate", &cert_file, "--validity", "3"],
            2,
            None,
            "cannot be used with",
        ),
    ];
    for (extra, code, check, stderr) in rows {
        let mut args = vec!["binding-params".to_string()];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let run = run(&args, &[]).await;
        assert_eq!(run.code, Some(code), "{extra:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(stderr), "{extra:?}: {}", run.stderr);
        match check {
            Some(check) => {
                let json: Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
                check(&json);
            }
            None => assert!(
                run.stdout.is_empty(),
                "{extra:?}: nothing on stdout on error: {}",
                run.stdout
            ),
        }
    }
}
