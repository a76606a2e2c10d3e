//! Access token validation as SAP's libraries do it for XSUAA: keys from
//! `https://<uaadomain>/token_keys?zid=<zid>` (never from the token's `jku`), pinned asymmetric
//! algorithms, `exp`/`nbf` with 60 s leeway against an injected clock, and the xssec audience rule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::xsuaa::{IdpClient, IdpError};
use crate::metrics::Metrics;

/// Clock skew tolerated on `exp` and `nbf`, as xssec does.
pub const LEEWAY_SECS: u64 = 60;
/// An unknown `kid` refetches the keys at most this often per zone.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys are refetched after this long even when every `kid` is known.
const KEYS_MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// Why a token is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("token has no kid")]
    MissingKid,
    #[error("no key {kid:?} for zone {zid:?}")]
    UnknownKey { kid: String, zid: String },
    #[error("signature invalid")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token has no exp")]
    MissingExp,
    #[error("audience does not include this client")]
    WrongAudience,
    #[error("token of another identity zone ({0:?})")]
    WrongZone(String),
    #[error("keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// The claims the router uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub scope: Option<Audience>,
    /// A client-credentials token's scopes (`authorities`), as XSUAA lists them beside `scope`.
    #[serde(default)]
    pub authorities: Option<Audience>,
    #[serde(default)]
    pub cid: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub zid: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub ext_attr: Option<Value>,
}

/// A claim that may be a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(one) => one.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
            Audience::Many(many) => many.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    /// XSUAA's extra field: the public key as PEM.
    #[serde(default)]
    value: Option<String>,
}

/// A decoding key and the algorithm its JWK names.
type ZoneKey = (Arc<DecodingKey>, Option<String>);

struct ZoneKeys {
    keys: HashMap<String, ZoneKey>,
    fetched: Instant,
}

/// Validates access tokens of one XSUAA binding.
pub struct Validator {
    clientid: String,
    xsappname: String,
    keys_url: String,
    zones: Mutex<HashMap<String, ZoneKeys>>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Fetches finished so far; lets a readiness probe share a fetch that ran while it waited.
    fetches: AtomicU64,
    /// Whether the last fetch brought usable keys.
    last_fetch_ok: AtomicBool,
    metrics: Arc<Metrics>,
    /// The only zone accepted, when known.
    zone: Option<String>,
}

const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

impl Validator {
    /// A validator for tokens issued to `clientid` / `xsappname`, with keys from `uaadomain`.
    pub fn new(clientid: &str, xsappname: &str, uaadomain: &str) -> Validator {
        let host = uaadomain.trim_start_matches("https://").trim_end_matches('/');
        Validator {
            clientid: clientid.to_string(),
            xsappname: xsappname.to_string(),
            keys_url: format!("https://{host}/token_keys"),
            zones: Mutex::new(HashMap::new()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            last_fetch_ok: AtomicBool::new(false),
            metrics: Metrics::disabled(),
            zone: None,
        }
    }

    /// Accepts only tokens of zone `zid` (the binding's `identityzoneid`): a dedicated app has one
    /// zone, and tokens naming any other never make the router fetch keys for it.
    pub fn with_zone(mut self, zid: Option<String>) -> Validator {
        self.zone = zid.filter(|z| !z.is_empty());
        self
    }

    /// Whether validating a token of zone `zid` would fetch keys first: the zone is one this
    /// validator accepts and none of its keys are held. Lets a caller bound the fetches that
    /// tokens naming new zones can cause.
    pub fn needs_keys(&self, zid: &str) -> bool {
        self.zone.as_ref().is_none_or(|zone| zone == zid)
            && self.zones.lock().map(|zones| !zones.contains_key(zid)).unwrap_or(true)
    }

    /// Records key fetches into `metrics`.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = metrics;
    }

    /// True when keys are loaded and the last fetch of them succeeded (readiness).
    pub fn has_keys(&self) -> bool {
        self.last_fetch_ok.load(Ordering::Acquire)
            && self
                .zones
                .lock()
                .map(|zones| zones.values().any(|zone| !zone.keys.is_empty()))
                .unwrap_or(false)
    }

    /// Fetches the keys of zone `zid` now; a probe that waited for a fetch already running uses
    /// that one's result instead of fetching again. Returns the number of keys.
    ///
    /// # Errors
    /// [`JwtError::KeysUnavailable`] when the identity provider does not deliver usable keys.
    pub async fn refresh_keys(&self, idp: &IdpClient, zid: &str) -> Result<usize, JwtError> {
        let before = self.fetches.load(Ordering::Acquire);
        let _guard = self.fetch_lock.lock().await;
        if self.fetches.load(Ordering::Acquire) == before {
            self.fetch_zone(idp, zid).await?;
        } else if !self.last_fetch_ok.load(Ordering::Acquire) {
            return Err(JwtError::KeysUnavailable("the last fetch failed".into()));
        }
        let count = self
            .zones
            .lock()
            .ok()
            .and_then(|zones| zones.get(zid).map(|zone| zone.keys.len()))
            .unwrap_or(0);
        if count == 0 {
            return Err(JwtError::KeysUnavailable("no usable key".into()));
        }
        Ok(count)
    }

    /// Validates `token` at Unix time `now`.
    ///
    /// # Errors
    /// [`JwtError`] naming the first failed check.
    pub async fn validate(&self, idp: &IdpClient, token: &str, now: u64) -> Result<Claims, JwtError> {
        let header = checked_header(token)?;
        let kid = header.kid.clone().ok_or(JwtError::MissingKid)?;
        let unverified = unverified_claims(token)?;
        let zid = unverified.zid.clone().unwrap_or_default();
        if let Some(zone) = &self.zone {
            if *zone != zid {
                return Err(JwtError::WrongZone(zid));
            }
        }
        let key = self.key(idp, &zid, &kid).await?;
        if let Some(alg) = &key.1 {
            if *alg != format!("{:?}", header.alg) {
                return Err(JwtError::AlgorithmNotAllowed(format!(
                    "{:?} with a {alg} key",
                    header.alg
                )));
            }
        }
        let mut validation = Validation::new(header.alg);
        // Time and audience are checked below against our own clock and the xssec rule.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key.0, &validation).map_err(|_| JwtError::BadSignature)?;
        let claims = data.claims;
        let exp = claims.exp.ok_or(JwtError::MissingExp)?;
        if exp + LEEWAY_SECS <= now {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = claims.nbf {
            if nbf > now + LEEWAY_SECS {
                return Err(JwtError::NotYetValid);
            }
        }
        if !self.audience_ok(&claims) {
            return Err(JwtError::WrongAudience);
        }
        Ok(claims)
    }

    /// xssec's rule: a candidate (aud entries, or the scopes when aud is empty, plus cid) equals the
    /// client id or xsappname, or starts with either followed by `.`; broker clients also accept
    /// `…|<xsappname>`.
    fn audience_ok(&self, claims: &Claims) -> bool {
        let mut candidates = claims.aud.as_ref().map(Audience::to_vec).unwrap_or_default();
        if candidates.is_empty() {
            candidates = claims.scope.as_ref().map(Audience::to_vec).unwrap_or_default();
        }
        if let Some(cid) = &claims.cid {
            candidates.push(cid.clone());
        }
        let matches = |candidate: &str, id: &str| {
            !id.is_empty() && (candidate == id || candidate.strip_prefix(id).is_some_and(|rest| rest.starts_with('.')))
        };
        let broker = self.clientid.contains("!b");
        candidates.iter().any(|candidate| {
            matches(candidate, &self.clientid)
                || matches(candidate, &self.xsappname)
                || (broker && candidate.ends_with(&format!("|{}", self.xsappname)))
        })
    }

    async fn key(&self, idp: &IdpClient, zid: &str, kid: &str) -> Result<(Arc<DecodingKey>, Option<String>), JwtError> {
        if let Some(found) = self.cached(zid, kid, KEYS_MAX_AGE) {
            return Ok(found);
        }
        // One fetch at a time; whoever waited re-checks the cache first.
        let _guard = self.fetch_lock.lock().await;
        if let Some(found) = self.cached(zid, kid, KEYS_MAX_AGE) {
            return Ok(found);
        }
        let recently = self
            .zones
            .lock()
            .ok()
            .and_then(|zones| zones.get(zid).map(|z| z.fetched.elapsed() < REFETCH_INTERVAL))
            .unwrap_or(false);
        if recently {
            // An unknown kid right after a fetch: do not let forged tokens hammer the IdP.
            return Err(JwtError::UnknownKey {
                kid: kid.to_string(),
                zid: zid.to_string(),
            });
        }
        self.fetch_zone(idp, zid).await?;
        self.cached(zid, kid, Duration::MAX)
            .ok_or_else(|| JwtError::UnknownKey {
                kid: kid.to_string(),
                zid: zid.to_string(),
            })
    }

    /// Fetches and caches the keys of `zid`; the caller holds `fetch_lock`.
    async fn fetch_zone(&self, idp: &IdpClient, zid: &str) -> Result<(), JwtError> {
        let result = self.download(idp, zid).await;
        let ok = result.as_ref().is_ok_and(|keys| !keys.is_empty());
        self.metrics.jwks_fetch(ok);
        self.last_fetch_ok.store(ok, Ordering::Release);
        self.fetches.fetch_add(1, Ordering::AcqRel);
        let keys = result?;
        if let Ok(mut zones) = self.zones.lock() {
            zones.insert(
                zid.to_string(),
                ZoneKeys {
                    keys,
                    fetched: Instant::now(),
                },
            );
        }
        Ok(())
    }

    async fn download(&self, idp: &IdpClient, zid: &str) -> Result<HashMap<String, ZoneKey>, JwtError> {
        let url = if zid.is_empty() {
            self.keys_url.clone()
        } else {
            let zid_q: String = form_urlencoded::byte_serialize(zid.as_bytes()).collect();
            format!("{}?zid={zid_q}", self.keys_url)
        };
        let document = idp.get_json(&url, None).await.map_err(|error| match error {
            IdpError::Refused { status, .. } if status.as_u16() == 400 => JwtError::WrongAudience,
            other => JwtError::KeysUnavailable(other.to_string()),
        })?;
        let jwks: Jwks =
            serde_json::from_value(document).map_err(|error| JwtError::KeysUnavailable(error.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let Some(kid) = jwk.kid.clone() else { continue };
            if let Some(key) = decoding_key(&jwk) {
                keys.insert(kid, (Arc::new(key), jwk.alg.clone()));
            }
        }
        Ok(keys)
    }

    fn cached(&self, zid: &str, kid: &str, max_age: Duration) -> Option<(Arc<DecodingKey>, Option<String>)> {
        let zones = self.zones.lock().ok()?;
        let zone = zones.get(zid)?;
        if zone.fetched.elapsed() > max_age {
            return None;
        }
        zone.keys.get(kid).cloned()
    }
}

fn decoding_key(jwk: &Jwk) -> Option<DecodingKey> {
    match jwk.kty.as_deref() {
        Some("RSA") => match (&jwk.n, &jwk.e) {
            (Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e).ok(),
            _ => jwk
                .value
                .as_ref()
                .and_then(|pem| DecodingKey::from_rsa_pem(crate::tls::unescape_pem(pem).as_bytes()).ok()),
        },
        Some("EC") => match (&jwk.x, &jwk.y) {
            (Some(x), Some(y)) => DecodingKey::from_ec_components(x, y).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The payload without checking the signature: only to pick the zone's keys.
/// The token's header, if it is one [`Validator::validate`] could accept (an allowed algorithm
/// and a key id): what is checked before any key fetch, so a token refused here costs none.
///
/// # Errors
/// `Malformed`, `AlgorithmNotAllowed` or `MissingKid`.
pub fn checked_header(token: &str) -> Result<jsonwebtoken::Header, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if !ALLOWED.contains(&header.alg) {
        return Err(JwtError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    if header.kid.is_none() {
        return Err(JwtError::MissingKid);
    }
    Ok(header)
}

fn unverified_claims(token: &str) -> Result<Claims, JwtError> {
    serde_json::from_slice(&payload_bytes(token)?).map_err(|_| JwtError::Malformed)
}

/// Every claim of `token` as it is written, without checking the signature: for tokens validated
/// before (a session's), or to read which zone and tenant a token claims before any key fetch.
///
/// # Errors
/// [`JwtError::Malformed`] when the payload is not a base64url-encoded JSON object.
pub fn unverified_payload(token: &str) -> Result<serde_json::Map<String, Value>, JwtError> {
    serde_json::from_slice(&payload_bytes(token)?).map_err(|_| JwtError::Malformed)
}

fn payload_bytes(token: &str) -> Result<Vec<u8>, JwtError> {
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    proptest! {
        /// A client's token is read for its zone and tenant before its signature is checked:
        /// whatever it holds is a claim set or `Malformed`, never a panic.
        #[test]
        fn unverified_reading_takes_any_bytes(header in ".{0,40}", payload in proptest::collection::vec(any::<u8>(), 0..200), raw in ".{0,200}") {
            let token = format!("{}.{}.sig", encode(header.as_bytes()), encode(&payload));
            for token in [token.as_str(), raw.as_str()] {
                match unverified_payload(token) {
                    Ok(map) => {
                        let direct = payload_bytes(token).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
                        prop_assert_eq!(Some(map), direct);
                    }
                    Err(error) => prop_assert!(matches!(error, JwtError::Malformed)),
                }
                if let Err(error) = unverified_claims(token) {
                    prop_assert!(matches!(error, JwtError::Malformed));
                }
            }
        }

        /// Claims of every shape the wire allows read back as written.
        #[test]
        fn claims_round_trip(zid in "[a-z0-9-]{0,20}", zdn in "[a-z]{0,12}", aud in proptest::collection::vec("[a-z!.]{1,12}", 0..4)) {
            let claims = serde_json::json!({"zid": zid, "ext_attr": {"zdn": zdn}, "aud": aud, "exp": 1});
            let token = format!("e30.{}.sig", encode(claims.to_string().as_bytes()));
            let read = unverified_payload(&token).expect("a JSON object");
            prop_assert_eq!(read.get("zid").and_then(Value::as_str), Some(zid.as_str()));
            let claims = unverified_claims(&token).expect("claims");
            prop_assert_eq!(claims.zid.as_deref(), Some(zid.as_str()));
        }
    }

    fn claims(aud: &[&str], scope: &[&str], cid: Option<&str>) -> Claims {
        serde_json::from_value(serde_json::json!({
            "aud": aud, "scope": scope, "cid": cid, "exp": 1
        }))
        .unwrap()
    }

    #[test]
    fn audience_follows_xssec() {
        let v = Validator::new("sb-app!t1", "app!t1", "uaa.example");
        assert!(v.audience_ok(&claims(&["sb-app!t1"], &[], None)));
        assert!(v.audience_ok(&claims(&["app!t1"], &[], None)));
        assert!(v.audience_ok(&claims(&["other"], &[], Some("sb-app!t1"))));
        assert!(v.audience_ok(&claims(&[], &["app!t1.Display"], None)));
        assert!(!v.audience_ok(&claims(&["app!t10"], &[], None)));
        assert!(!v.audience_ok(&claims(&["other"], &["app!t1.Display"], Some("x"))));
        assert!(!v.audience_ok(&claims(&[], &[], None)));
    }
}
