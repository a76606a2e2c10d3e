use super::*;

#[test]
fn service_managed_limits() {
    let base = ServiceManaged::default();
    let rows: &[(ServiceManaged, Result<(), &str>)] = &[
        (base.clone(), Ok(())),
        (
            ServiceManaged {
                validity: 30,
                ..base.clone()
            },
            Ok(()),
        ),
        (
            ServiceManaged {
                validity: 1,
                key_length: 4096,
                ..base.clone()
            },
            Ok(()),
        ),
        (
            ServiceManaged {
                validity_type: "days".into(),
                ..base.clone()
            },
            Ok(()),
        ),
        (
            ServiceManaged {
                validity: 0,
                ..base.clone()
            },
            Err("1 to 30 days, got 0"),
        ),
        (
            ServiceManaged {
                validity: 31,
                ..base.clone()
            },
            Err("got 31"),
        ),
        (
            ServiceManaged {
                validity_type: "MONTHS".into(),
                validity: 1,
                ..base.clone()
            },
            Err("MONTHS is not accepted"),
        ),
        (
            ServiceManaged {
                validity_type: "YEARS".into(),
                validity: 1,
                ..base.clone()
            },
            Err("YEARS is not accepted"),
        ),
        (
            ServiceManaged {
                key_length: 1024,
                ..base.clone()
            },
            Err("got 1024"),
        ),
    ];
    for (request, expected) in rows {
        match (service_managed(request), expected) {
            (Ok(params), Ok(())) => {
                assert_eq!(params.json["credential-type"], "x509");
                assert_eq!(params.json["x509"]["validity"], request.validity);
                assert_eq!(params.json["x509"]["validity-type"], "DAYS");
                assert_eq!(params.json["x509"]["key-length"], request.key_length);
            }
            (Err(error), Err(text)) => assert!(error.to_string().contains(text), "{request:?}: {error}"),
            (got, want) => panic!("{request:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn pem_blocks_round_trip() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = pem_block(cert.der());
    let parsed = crate::tls::certificates(&pem).unwrap();
    assert_eq!(parsed[0].as_ref(), cert.der().as_ref());
    assert!(pem.lines().all(|line| line.len() <= 64));
}
