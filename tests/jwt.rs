//! Access token validation against the development XSUAA's real `/token_keys`: pinned algorithms,
//! keys only from `uaadomain` (never `jku`), exp/nbf leeway, the xssec audience rule, and the
//! rate-limited refetch of keys for unknown `kid`s.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use approuter::config::{Env, XsuaaCredentials};
use approuter::idp::jwt::{JwtError, Validator};
use approuter::idp::xsuaa::IdpClient;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use xsuaa_dev::{DevXsuaa, User};

/// What the router builds for a binding: credentials, an IdP client trusting the dev CA, and a
/// validator for the binding's client.
struct Setup {
    dev: DevXsuaa,
    idp: IdpClient,
    validator: Validator,
}

fn credentials(dev: &DevXsuaa) -> XsuaaCredentials {
    let env = Env::from_pairs([("VCAP_SERVICES", dev.vcap_services(&dev.credentials()))]);
    let mut errors = approuter::config::Error::default();
    let credentials = approuter::config::find_xsuaa(&env, &mut errors).expect("xsuaa binding");
    assert!(errors.is_empty(), "{errors:?}");
    credentials
}

async fn setup() -> Setup {
    let dev = DevXsuaa::builder().start().await.expect("development XSUAA");
    let creds = credentials(&dev);
    assert_eq!(creds.uaadomain, dev.uaa_domain());
    let roots = approuter::tls::root_store(&[] as &[&str], &[dev.ca_pem()]).expect("roots");
    let idp = IdpClient::new(&creds, Arc::new(roots), Duration::from_secs(10)).expect("idp client");
    let validator = Validator::new(&creds.clientid, &creds.xsappname, &creds.uaadomain);
    Setup { dev, idp, validator }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn user_claims(dev: &DevXsuaa) -> Value {
    dev.user_token_claims(&User::new("jane.doe"))
}

fn header_of(token: &str) -> Value {
    let head = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A fresh RSA key the identity provider does not know.
fn foreign_rsa_key() -> EncodingKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
    EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).expect("encoding key")
}

fn sign(alg: Algorithm, kid: Option<&str>, jku: Option<String>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    header.jku = jku;
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn flip_signature_char(token: &str) -> String {
    let (rest, signature) = token.rsplit_once('.').unwrap();
    let mut chars: Vec<char> = signature.chars().collect();
    // A character in the middle: every one of its six bits is part of the signature.
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    format!("{rest}.{}", chars.into_iter().collect::<String>())
}

#[tokio::test]
async fn token_cases_table() {
    let Setup { dev, idp, validator } = setup().await;
    let now = now();
    let kid = header_of(&dev.mint_token(user_claims(&dev)))["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let with = |patch: Value| {
        let mut claims = user_claims(&dev);
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let own_key = EncodingKey::from_rsa_pem(dev.signing_key_pem().as_bytes()).unwrap();

    let cases: Vec<(&str, String, Result<(), JwtError>)> = vec![
        ("valid", dev.mint_token(user_claims(&dev)), Ok(())),
        (
            "alg none, no signature",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
                b64(&user_claims(&dev))
            ),
            Err(JwtError::Malformed),
        ),
        (
            "HS256 keyed with the public key PEM",
            sign(
                Algorithm::HS256,
                Some(&kid),
                None,
                &user_claims(&dev),
                &EncodingKey::from_secret(dev.public_key_pem().as_bytes()),
            ),
            Err(JwtError::AlgorithmNotAllowed("HS256".into())),
        ),
        (
            "PS256 with the published RS256 key",
            sign(Algorithm::PS256, Some(&kid), None, &user_claims(&dev), &own_key),
            Err(JwtError::AlgorithmNotAllowed("PS256 with a RS256 key".into())),
        ),
        (
            "no kid",
            sign(Algorithm::RS256, None, None, &user_claims(&dev), &own_key),
            Err(JwtError::MissingKid),
        ),
        (
            "wrong audience",
            dev.mint_token(with(json!({
                "aud": ["sb-other!t9", "other!t9"],
                "scope": ["openid", "other!t9.Display"],
                "cid": "sb-other!t9",
                "client_id": "sb-other!t9",
                "azp": "sb-other!t9"
            }))),
            Err(JwtError::WrongAudience),
        ),
        (
            "audience only through scopes",
            dev.mint_token(with(
                json!({"aud": [], "cid": "sb-other!t9", "scope": [format!("{}.Display", dev.xsappname())]}),
            )),
            Ok(()),
        ),
        (
            "expired beyond the 60 s leeway",
            dev.mint_token(with(json!({"exp": now - 61}))),
            Err(JwtError::Expired),
        ),
        (
            "expired within the leeway",
            dev.mint_token(with(json!({"exp": now - 30}))),
            Ok(()),
        ),
        (
            "nbf beyond the leeway",
            dev.mint_token(with(json!({"nbf": now + 61}))),
            Err(JwtError::NotYetValid),
        ),
        (
            "nbf within the leeway",
            dev.mint_token(with(json!({"nbf": now + 30}))),
            Ok(()),
        ),
        (
            "no exp",
            dev.mint_token(with(json!({"exp": null}))),
            Err(JwtError::MissingExp),
        ),
        (
            "flipped signature character",
            flip_signature_char(&dev.mint_token(user_claims(&dev))),
            Err(JwtError::BadSignature),
        ),
        (
            "claims changed after signing",
            {
                let token = dev.mint_token(user_claims(&dev));
                let parts: Vec<&str> = token.split('.').collect();
                let forged = b64(&with(json!({"user_name": "admin"})));
                format!("{}.{forged}.{}", parts[0], parts[2])
            },
            Err(JwtError::BadSignature),
        ),
        ("not a JWT", "abc".to_string(), Err(JwtError::Malformed)),
    ];
    for (name, token, expected) in cases {
        let result = validator.validate(&idp, &token, now).await;
        match (&result, &expected) {
            (Ok(claims), Ok(())) => assert_eq!(claims.user_name.as_deref(), Some("jane.doe"), "{name}"),
            (Err(got), Err(want)) => assert_eq!(got, want, "{name}"),
            _ => panic!("{name}: expected {expected:?}, got {:?}", result.as_ref().map(|_| ())),
        }
    }
    // Every case above used the same zone: one key fetch served them all.
    assert_eq!(dev.stats().jwks_requests, 1);
}

#[tokio::test]
async fn unknown_kid_fetches_keys_once_then_is_rate_limited() {
    let Setup { dev, idp, validator } = setup().await;
    let now = now();
    let foreign = foreign_rsa_key();
    let claims = user_claims(&dev);

    let first = sign(Algorithm::RS256, Some("nope"), None, &claims, &foreign);
    assert_eq!(
        validator.validate(&idp, &first, now).await.unwrap_err(),
        JwtError::UnknownKey {
            kid: "nope".into(),
            zid: dev.zone_id()
        }
    );
    assert_eq!(dev.stats().jwks_requests, 1, "an unknown kid refetches the keys");

    // Forged tokens with ever new kids must not make the router hammer the identity provider.
    for kid in ["nope-2", "nope-3", "nope"] {
        let token = sign(Algorithm::RS256, Some(kid), None, &claims, &foreign);
        assert!(matches!(
            validator.validate(&idp, &token, now).await,
            Err(JwtError::UnknownKey { .. })
        ));
    }
    assert_eq!(dev.stats().jwks_requests, 1, "no refetch right after a fetch");

    // The real keys are still served from the cache.
    validator
        .validate(&idp, &dev.mint_token(user_claims(&dev)), now)
        .await
        .expect("valid token");
    assert_eq!(dev.stats().jwks_requests, 1);
}

#[tokio::test]
async fn jku_is_ignored_keys_come_from_uaadomain_only() {
    let Setup { dev, idp, validator } = setup().await;
    // A second identity provider with the same client id and the same kid names: its tokens
    // point at its own JWKS through `jku`.
    let other = DevXsuaa::builder().start().await.unwrap();
    let other_token = other.mint_token(other.user_token_claims(&User::new("jane.doe")));
    let header = header_of(&other_token);
    assert_eq!(header["jku"], format!("{}/token_keys", other.url()));
    assert_eq!(header["kid"], header_of(&dev.mint_token(user_claims(&dev)))["kid"]);
    assert_eq!(
        validator.validate(&idp, &other_token, now()).await.unwrap_err(),
        JwtError::BadSignature,
        "checked with the bound IdP's key of that kid"
    );

    // A foreign key and a `jku` at the other server: UnknownKey, and the other server is never asked.
    let forged = sign(
        Algorithm::RS256,
        Some("other-kid"),
        Some(format!("{}/token_keys", other.url())),
        &user_claims(&dev),
        &foreign_rsa_key(),
    );
    assert!(matches!(
        validator.validate(&idp, &forged, now()).await,
        Err(JwtError::UnknownKey { .. })
    ));
    assert_eq!(other.stats().jwks_requests, 0, "jku was followed");
    assert_eq!(dev.stats().jwks_requests, 1);
}

#[tokio::test]
async fn foreign_zone_is_refused() {
    let Setup { dev, idp, validator } = setup().await;
    let mut claims = user_claims(&dev);
    claims["zid"] = json!("other-zone");
    let token = dev.mint_token(claims);
    // The keys of another zone are asked for with ?zid=other-zone; XSUAA refuses that zone.
    assert_eq!(
        validator.validate(&idp, &token, now()).await.unwrap_err(),
        JwtError::WrongAudience
    );
    assert_eq!(dev.stats().jwks_requests, 1);
}

/// Moves tokio's clock forward by `by`, then lets it run again. (Not `start_paused`: a paused
/// clock auto-advances to the next timer whenever the runtime waits for I/O, which could fire the
/// IdP client's timeouts in the middle of a key fetch.)
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// Only the validator's refetch interval (tokio time) moves; token times use the `now` argument,
/// so they stay valid.
#[tokio::test]
async fn rotated_key_is_picked_up_by_a_refetch() {
    let Setup { dev, idp, validator } = setup().await;
    let old = dev.mint_token(user_claims(&dev));
    validator.validate(&idp, &old, now()).await.expect("old key");
    assert_eq!(dev.stats().jwks_requests, 1);

    dev.rotate_signing_key();
    let new = dev.mint_token(user_claims(&dev));
    assert_ne!(header_of(&new)["kid"], header_of(&old)["kid"]);
    // Right after a fetch the unknown kid is refused without asking again (rate limit) ...
    assert!(matches!(
        validator.validate(&idp, &new, now()).await,
        Err(JwtError::UnknownKey { .. })
    ));
    assert_eq!(dev.stats().jwks_requests, 1);

    // ... and once the refetch interval has passed, the new key is fetched and accepted.
    jump(Duration::from_secs(11)).await;
    let claims = validator
        .validate(&idp, &new, now())
        .await
        .expect("new key after refetch");
    assert_eq!(claims.user_name.as_deref(), Some("jane.doe"));
    assert_eq!(dev.stats().jwks_requests, 2);
    // The old key is still published and cached: tokens issued before the rotation stay valid.
    validator
        .validate(&idp, &old, now())
        .await
        .expect("old key still valid");
    assert_eq!(dev.stats().jwks_requests, 2);

    // A tampered token with the new kid is refused.
    assert_eq!(
        validator
            .validate(&idp, &flip_signature_char(&new), now())
            .await
            .unwrap_err(),
        JwtError::BadSignature
    );
}
