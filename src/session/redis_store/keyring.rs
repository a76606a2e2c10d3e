//! Keys derived from the session secrets (HKDF-SHA256): AES-256-GCM for values, HMAC-SHA256 for
//! key names. Sealed value: `01 | key id (4) | nonce (12) | ciphertext | tag (16)`.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{hkdf, hmac};

use super::Error;

const FORMAT_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// What a key name is for; part of the HMAC input and of the name.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Session,
    Login,
    Refresh,
    /// The copy of a session kept a little longer than the session, for backend logout on expiry.
    Ended,
}

impl Kind {
    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Login => "login",
            Kind::Refresh => "refresh",
            Kind::Ended => "ended",
        }
    }
}

/// A Redis key name: `approuter:<kind>:<64 hex digits>`.
#[derive(Clone)]
pub(super) struct KeyName {
    pub text: String,
    /// The first half of the HMAC: identifies the session in the last-touch map.
    pub tag: [u8; 16],
}

impl KeyName {
    /// The hex part, shared by a session and its `ended` copy.
    pub fn digest_hex(&self) -> &str {
        self.text.rsplit(':').next().unwrap_or_default()
    }
}

struct SecretKeys {
    id: [u8; KEY_ID_LEN],
    aead: RandomizedNonceKey,
    names: hmac::Key,
}

/// Keys derived from the session secrets, newest first.
pub(super) struct Keyring {
    keys: Vec<SecretKeys>,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Keyring {
    pub fn new(secrets: &[String]) -> Result<Keyring, Error> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"approuter session store");
        let mut keys = Vec::with_capacity(secrets.len());
        for secret in secrets {
            let prk = salt.extract(secret.as_bytes());
            let expand = |info: &[u8], out: &mut [u8]| {
                prk.expand(&[info], Len(out.len()))
                    .and_then(|okm| okm.fill(out))
                    .map_err(|_| Error::KeyDerivation)
            };
            let mut aead = [0u8; 32];
            let mut names = [0u8; 32];
            let mut id = [0u8; KEY_ID_LEN];
            expand(b"value encryption (aes-256-gcm)", &mut aead)?;
            expand(b"key names (hmac-sha256)", &mut names)?;
            expand(b"key id", &mut id)?;
            keys.push(SecretKeys {
                id,
                aead: RandomizedNonceKey::new(&AES_256_GCM, &aead).map_err(|_| Error::KeyDerivation)?,
                names: hmac::Key::new(hmac::HMAC_SHA256, &names),
            });
        }
        if keys.is_empty() {
            return Err(Error::KeyDerivation);
        }
        Ok(Keyring { keys })
    }

    /// The key name of `subject` under secret number `index`.
    pub fn name(&self, index: usize, kind: Kind, namespace: &str, subject: &[u8]) -> KeyName {
        let mut context = hmac::Context::with_key(&self.keys[index].names);
        context.update(kind.label().as_bytes());
        context.update(&[0]);
        context.update(namespace.as_bytes());
        context.update(&[0]);
        context.update(subject);
        let digest = context.sign();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&digest.as_ref()[..16]);
        KeyName {
            text: format!("approuter:{}:{}", kind.label(), hex(digest.as_ref())),
            tag,
        }
    }

    /// The names of `subject` under every secret, newest first.
    pub fn names(&self, kind: Kind, namespace: &str, subject: &[u8]) -> Vec<KeyName> {
        (0..self.keys.len())
            .map(|index| self.name(index, kind, namespace, subject))
            .collect()
    }

    /// Seals `plain` with the newest key; `aad` (the key name) must be presented again to open it.
    pub fn seal(&self, aad: &[u8], plain: Vec<u8>) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let mut in_out = plain;
        let nonce = key.aead.seal_in_place_append_tag(Aad::from(aad), &mut in_out).ok()?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + in_out.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Some(sealed)
    }

    /// Opens a value sealed under any of the secrets; `None` for anything else.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_VERSION {
            return None;
        }
        let id = &sealed[1..1 + KEY_ID_LEN];
        let nonce = &sealed[1 + KEY_ID_LEN..HEADER_LEN];
        // Ids are 32 bits: try every key that carries this one.
        self.keys.iter().filter(|key| key.id == id).find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut in_out = sealed[HEADER_LEN..].to_vec();
            key.aead
                .open_in_place(nonce, Aad::from(aad), &mut in_out)
                .ok()
                .map(|plain| plain.to_vec())
        })
    }
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[(byte >> 4) as usize] as char);
        text.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn keyring(secrets: &[&str]) -> Keyring {
        Keyring::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn sealed_values_open_only_under_their_name_and_a_known_secret() {
        let new = keyring(&["the-new-session-secret", "the-old-session-secret"]);
        let old = keyring(&["the-old-session-secret"]);
        let other = keyring(&["a-different-session-secret"]);
        let sealed = old.seal(b"approuter:session:aa", b"{\"token\":1}".to_vec()).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"{\"token\":1}"), "encrypted");
        assert_eq!(new.open(b"approuter:session:aa", &sealed).unwrap(), b"{\"token\":1}");
        assert!(
            new.open(b"approuter:session:bb", &sealed).is_none(),
            "bound to its key name"
        );
        assert!(other.open(b"approuter:session:aa", &sealed).is_none(), "another secret");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(new.open(b"approuter:session:aa", &flipped).is_none(), "tampered");
        for garbage in [&b""[..], b"\x01abc", b"\x02\x00\x00\x00\x00"] {
            assert!(new.open(b"approuter:session:aa", garbage).is_none());
        }
    }

    #[test]
    fn key_names_hide_the_subject_and_depend_on_secret_kind_and_namespace() {
        let ring = keyring(&["the-new-session-secret", "the-old-session-secret"]);
        let id = SessionId::generate();
        let name = ring.name(0, Kind::Session, "app", id.as_bytes());
        assert!(name.text.starts_with("approuter:session:"));
        assert_eq!(name.digest_hex().len(), 64);
        assert!(!name.text.contains(&id.to_cookie_value()));
        assert_eq!(
            name.text,
            ring.name(0, Kind::Session, "app", id.as_bytes()).text,
            "stable"
        );
        for other in [
            ring.name(1, Kind::Session, "app", id.as_bytes()),
            ring.name(0, Kind::Refresh, "app", id.as_bytes()),
            ring.name(0, Kind::Session, "other-app", id.as_bytes()),
        ] {
            assert_ne!(other.digest_hex(), name.digest_hex());
        }
    }
}
