//! RS256 signing keys (with rotation), the JWKS document, XSUAA-shaped claims
//! and verification of tokens this server issued.

use std::sync::Arc;

use aws_lc_rs::digest;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::{KeyPair, PKCS_RSA_SHA256};
use serde_json::{json, Value};

use crate::config::{Config, User};
use crate::util;
use crate::zone::Zone;

/// Failure to create a signing key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("rsa key generation failed")]
    Generate(#[from] rcgen::Error),
    #[error("rsa key not usable for jwt signing")]
    Encoding(#[from] jsonwebtoken::errors::Error),
    #[error("rsa public key could not be parsed")]
    PublicKey,
}

/// One RSA 2048 key pair with its key id.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl SigningKey {
    fn generate(kid: String) -> Result<Self, KeyError> {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
        let private_pem = key.serialize_pem();
        // public_key_raw is the PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }.
        let (_, seq, _) = util::der_next(key.public_key_raw()).ok_or(KeyError::PublicKey)?;
        let (_, n, rest) = util::der_next(seq).ok_or(KeyError::PublicKey)?;
        let (_, e, _) = util::der_next(rest).ok_or(KeyError::PublicKey)?;
        let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
        Ok(Self {
            kid,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes())?,
            decoding: DecodingKey::from_rsa_der(key.public_key_raw()),
            public_pem: key.public_key_pem(),
            private_pem,
            modulus: strip(n),
            exponent: strip(e),
        })
    }

    /// The JWK as XSUAA's /token_keys lists it, including the PEM `value`.
    fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "e": util::b64url(&self.exponent),
            "n": util::b64url(&self.modulus),
            "use": "sig",
            "kid": self.kid,
            "alg": "RS256",
            "value": self.public_pem,
        })
    }
}

/// The signing keys; the last one signs, all are published.
pub(crate) struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    generation: u32,
    /// Key ids are `<prefix>-<generation>`; each zone has its own prefix, so
    /// no kid names keys of two zones.
    kid_prefix: String,
}

impl KeyRing {
    pub(crate) fn new(kid_prefix: &str) -> Result<Self, KeyError> {
        let mut ring = Self {
            keys: Vec::new(),
            generation: 0,
            kid_prefix: kid_prefix.to_string(),
        };
        ring.rotate()?;
        Ok(ring)
    }

    pub(crate) fn current(&self) -> Arc<SigningKey> {
        // new() and rotate() always leave at least one key, drop_old() keeps the last.
        Arc::clone(&self.keys[self.keys.len() - 1])
    }

    pub(crate) fn rotate(&mut self) -> Result<(), KeyError> {
        self.generation += 1;
        let kid = format!("{}-{}", self.kid_prefix, self.generation);
        self.keys.push(Arc::new(SigningKey::generate(kid)?));
        Ok(())
    }

    pub(crate) fn drop_old(&mut self) {
        let keep = self.keys.len().saturating_sub(1);
        self.keys.drain(..keep);
    }

    pub(crate) fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid).cloned()
    }

    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
    }
}

/// Signs claims with the XSUAA header (RS256, jku, kid, typ JWT).
pub(crate) fn sign(key: &SigningKey, url: &str, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    header.jku = Some(format!("{url}/token_keys"));
    jsonwebtoken::encode(&header, claims, &key.encoding)
}

/// Verifies a token signed by one of the published keys and returns its claims.
pub(crate) fn verify(ring: &KeyRing, token: &str) -> Option<Value> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let key = ring.find(header.kid.as_deref()?)?;
    let mut validation = Validation::new(Algorithm::RS256);
    // Audience checks belong to resource servers; userinfo only needs a valid token.
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
        .ok()
        .map(|data| data.claims)
}

/// A stable user GUID derived from the user name, shaped like XSUAA's.
pub(crate) fn user_guid(user_name: &str) -> String {
    let d = digest::digest(&digest::SHA256, user_name.as_bytes());
    let h = util::hex(&d.as_ref()[..16]);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `aud` as XSUAA derives it: the client id plus every scope's prefix before
/// its last dot, deduplicated in order.
pub(crate) fn audiences(client_id: &str, scopes: &[String]) -> Vec<String> {
    let mut aud = vec![client_id.to_string()];
    for scope in scopes {
        if let Some((prefix, _)) = scope.rsplit_once('.') {
            if !aud.iter().any(|a| a == prefix) {
                aud.push(prefix.to_string());
            }
        }
    }
    aud
}

/// The `scope` array of a user token: `openid` plus the prefixed local scopes.
pub(crate) fn user_scopes(config: &Config, user: &User) -> Vec<String> {
    std::iter::once("openid".to_string())
        .chain(user.scopes.iter().map(|s| format!("{}.{s}", config.xsappname)))
        .collect()
}

fn rev_sig(parts: &[&str]) -> String {
    let d = digest::digest(&digest::SHA256, parts.join("|").as_bytes());
    util::hex(&d.as_ref()[..4])
}

/// Claims of a user access token as XSUAA issues them.
pub(crate) fn user_claims(
    config: &Config,
    zone: &Zone,
    user: &User,
    grant_type: &str,
    now: u64,
    lifetime_secs: u64,
    jti: &str,
) -> Value {
    let issue = Issue {
        zone_id: &zone.zone_id,
        zdn: &zone.subdomain,
        url: &zone.url,
        client_id: &config.client_id,
        now,
        lifetime_secs,
        jti,
    };
    user_claims_for(&issue, user, user_scopes(config, user), grant_type)
}

/// Who issues a token to which client, and when: the parts every claim set
/// shares.
pub(crate) struct Issue<'a> {
    pub(crate) zone_id: &'a str,
    /// The zone's subdomain (`ext_attr.zdn`).
    pub(crate) zdn: &'a str,
    pub(crate) url: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) now: u64,
    pub(crate) lifetime_secs: u64,
    pub(crate) jti: &'a str,
}

/// Claims of a user access token for any client with the given scopes.
pub(crate) fn user_claims_for(issue: &Issue<'_>, user: &User, scopes: Vec<String>, grant_type: &str) -> Value {
    let guid = user_guid(&user.user_name);
    let client_id = issue.client_id;
    json!({
        "jti": issue.jti,
        "ext_attr": {"enhancer": "XSUAA", "subaccountid": issue.zone_id, "zdn": issue.zdn},
        "xs.system.attributes": {"xs.rolecollections": []},
        "given_name": user.given_name,
        "family_name": user.family_name,
        "xs.user.attributes": user.attributes,
        "sub": guid,
        "user_id": guid,
        "aud": audiences(client_id, &scopes),
        "scope": scopes,
        "client_id": client_id,
        "cid": client_id,
        "azp": client_id,
        "grant_type": grant_type,
        "origin": user.origin,
        "user_name": user.user_name,
        "email": user.email,
        "auth_time": issue.now,
        "rev_sig": rev_sig(&[&guid, client_id]),
        "iat": issue.now,
        "exp": issue.now + issue.lifetime_secs,
        "iss": format!("{}/oauth/token", issue.url),
        "zid": issue.zone_id,
    })
}

/// Claims of a client-credentials token: the client is the subject.
pub(crate) fn client_claims(config: &Config, zone: &Zone, now: u64, lifetime_secs: u64, jti: &str) -> Value {
    let issue = Issue {
        zone_id: &zone.zone_id,
        zdn: &zone.subdomain,
        url: &zone.url,
        client_id: &config.client_id,
        now,
        lifetime_secs,
        jti,
    };
    client_claims_for(&issue, vec!["uaa.resource".to_string()])
}

/// Claims of a client-credentials token for any client with the given scopes.
pub(crate) fn client_claims_for(issue: &Issue<'_>, scopes: Vec<String>) -> Value {
    let client_id = issue.client_id;
    json!({
        "jti": issue.jti,
        "ext_attr": {"enhancer": "XSUAA", "subaccountid": issue.zone_id, "zdn": issue.zdn},
        "sub": client_id,
        "authorities": scopes,
        "aud": audiences(client_id, &scopes),
        "scope": scopes,
        "client_id": client_id,
        "cid": client_id,
        "azp": client_id,
        "grant_type": "client_credentials",
        "rev_sig": rev_sig(&[client_id]),
        "iat": issue.now,
        "exp": issue.now + issue.lifetime_secs,
        "iss": format!("{}/oauth/token", issue.url),
        "zid": issue.zone_id,
    })
}

/// Verifies a token as one this server issued in its zone: signature by a
/// published key, not expired, `iss` and `zid` ours.
pub(crate) fn verify_ours(ring: &KeyRing, url: &str, zone_id: &str, token: &str) -> Option<Value> {
    let claims = verify(ring, token)?;
    let issuer = format!("{url}/oauth/token");
    (claims["iss"].as_str() == Some(issuer.as_str()) && claims["zid"].as_str() == Some(zone_id)).then_some(claims)
}

/// The user a user token names, rebuilt from its claims.
pub(crate) fn user_from_claims(claims: &Value) -> Option<User> {
    let text = |key: &str| claims[key].as_str().map(str::to_string);
    Some(User {
        user_name: text("user_name")?,
        email: text("email").unwrap_or_default(),
        given_name: text("given_name").unwrap_or_default(),
        family_name: text("family_name").unwrap_or_default(),
        origin: text("origin").unwrap_or_default(),
        password: String::new(),
        scopes: Vec::new(),
        attributes: serde_json::from_value(claims["xs.user.attributes"].clone()).unwrap_or_default(),
    })
}

/// The `scope` array of a token, as strings.
pub(crate) fn scopes_of(claims: &Value) -> Vec<String> {
    claims["scope"]
        .as_array()
        .map(|scopes| scopes.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// OpenID Connect ID token claims for a user login.
pub(crate) fn id_token_claims(access: &Value, config: &Config) -> Value {
    let mut claims = json!({ "aud": [config.client_id], "amr": ["pwd"] });
    for field in [
        "jti",
        "sub",
        "user_id",
        "user_name",
        "email",
        "given_name",
        "family_name",
        "origin",
        "zid",
        "cid",
        "azp",
        "auth_time",
        "iat",
        "exp",
        "iss",
    ] {
        claims[field] = access[field].clone();
    }
    claims
}
