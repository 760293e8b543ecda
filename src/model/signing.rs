//! A target's signing scheme and keys, compiled once when the config (or an
//! API subscription) is loaded, so every delivery borrows them instead of
//! decoding secrets again. The signing itself is `deliver::sign`; the HMAC
//! math and the key formats are [`super::mac`].
//!
//! Under `standard-webhooks` a `whsec_` secret (or any other text) is an
//! HMAC key and signs `v1`; a `whsk_` secret is an Ed25519 seed and signs
//! `v1a`. No key is ever formatted: `Debug` shows only how many there are.

use ed25519_dalek::SigningKey;

use super::mac::{
    WHPK_PREFIX, WhsecError, WhskError, base64_encode, ed25519_seed, standard_webhooks_key,
};

/// A signing scheme (SPEC §5 `signing.scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `hmac-sha256`.
    HmacSha256,
    /// `standard-webhooks`.
    StandardWebhooks,
}

impl Scheme {
    /// Every scheme name accepted in config.
    pub const NAMES: [&'static str; 2] = ["hmac-sha256", "standard-webhooks"];

    /// The scheme called `name` in config.
    pub fn from_name(name: &str) -> Option<Scheme> {
        match name {
            "hmac-sha256" => Some(Scheme::HmacSha256),
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            _ => None,
        }
    }

    /// The config name of this scheme.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// One compiled signing key.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// An HMAC-SHA256 key (`hmac-sha256`, or Standard Webhooks `v1`).
    Hmac(Vec<u8>),
    /// An Ed25519 signing key (Standard Webhooks `v1a`, from a `whsk_`
    /// secret). Boxed: it is much larger than the HMAC variant.
    Ed25519(Box<SigningKey>),
}

impl Key {
    /// `whpk_` + base64 of the public key, for an Ed25519 key; `None` for
    /// an HMAC key (it has no public half).
    pub fn public_key(&self) -> Option<String> {
        match self {
            Key::Hmac(_) => None,
            Key::Ed25519(key) => Some(format!(
                "{WHPK_PREFIX}{}",
                base64_encode(key.verifying_key().as_bytes())
            )),
        }
    }
}

impl std::fmt::Debug for Key {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Hmac(_) => f.write_str("Key::Hmac(..)"),
            Key::Ed25519(_) => f.write_str("Key::Ed25519(..)"),
        }
    }
}

/// What is wrong with one configured secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A broken `whsec_` value.
    #[error(transparent)]
    Whsec(#[from] WhsecError),
    /// A broken `whsk_` value.
    #[error(transparent)]
    Whsk(#[from] WhskError),
}

/// Compile one secret for `scheme`. Config load calls this per secret to
/// name the broken one; [`Signing::new`] calls it for every secret.
pub fn compile_key(scheme: Scheme, secret: &[u8]) -> Result<Key, KeyError> {
    match scheme {
        Scheme::HmacSha256 => Ok(Key::Hmac(secret.to_vec())),
        Scheme::StandardWebhooks => match ed25519_seed(secret) {
            Some(seed) => Ok(Key::Ed25519(Box::new(SigningKey::from_bytes(&seed?)))),
            None => Ok(Key::Hmac(standard_webhooks_key(secret)?)),
        },
    }
}

/// The `whpk_` public key of a `whsk_` secret (what `hookyard keys public`
/// prints); `None` when `secret` is not a `whsk_` value.
pub fn public_key_of(secret: &[u8]) -> Option<Result<String, WhskError>> {
    let seed = ed25519_seed(secret)?;
    Some(seed.map(|seed| {
        let key = SigningKey::from_bytes(&seed);
        format!(
            "{WHPK_PREFIX}{}",
            base64_encode(key.verifying_key().as_bytes())
        )
    }))
}

/// A target's `signing:` block, compiled.
#[derive(Clone, PartialEq, Eq)]
pub struct Signing {
    /// Which scheme to sign with.
    pub scheme: Scheme,
    /// The keys, newest first (the order the signatures are sent in), or
    /// why the configured secrets cannot sign.
    keys: Result<Vec<Key>, SignError>,
}

impl std::fmt::Debug for Signing {
    /// Never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("scheme", &self.scheme)
            .field("keys", &self.keys.as_ref().map(Vec::len))
            .finish()
    }
}

/// Why a delivery could not be signed. Both are config mistakes, which
/// config load can catch up front with [`Signing::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No secret to sign with.
    #[error("signing is configured without a secret; name at least one secret")]
    NoSecret,
    /// The secret at `index` (0 = first listed) is a broken `whsec_` or
    /// `whsk_` value.
    #[error("signing secret #{number}: {source}", number = .index + 1)]
    BadSecret {
        /// Position of the secret in the configured list, from 0.
        index: usize,
        /// What is wrong with it.
        source: KeyError,
    },
}

impl Signing {
    /// Compile `secrets` (newest first) for `scheme`, once.
    pub fn new<S: AsRef<[u8]>>(scheme: Scheme, secrets: &[S]) -> Signing {
        Signing {
            scheme,
            keys: compile_keys(scheme, secrets),
        }
    }

    /// Check the secrets once, at config load: same errors as `sign`.
    pub fn check(&self) -> Result<(), SignError> {
        self.keys().map(|_| ())
    }

    /// The compiled keys, in order.
    pub fn keys(&self) -> Result<&[Key], SignError> {
        self.keys.as_deref().map_err(Clone::clone)
    }
}

fn compile_keys<S: AsRef<[u8]>>(scheme: Scheme, secrets: &[S]) -> Result<Vec<Key>, SignError> {
    // A zero-length key is never used: anyone could sign with it.
    if secrets.is_empty() || secrets.iter().any(|s| s.as_ref().is_empty()) {
        return Err(SignError::NoSecret);
    }
    secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| {
            compile_key(scheme, secret.as_ref())
                .map_err(|source| SignError::BadSecret { index, source })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;

    #[test]
    fn whsk_compiles_to_ed25519_and_whsec_to_hmac() {
        let seed = [1u8; 32];
        let whsk = format!("whsk_{}", base64_encode(&seed));
        let signing = Signing::new(
            Scheme::StandardWebhooks,
            &[whsk.as_bytes(), b"whsec_aGk=".as_slice()],
        );
        let keys = signing.keys().unwrap();
        assert!(matches!(&keys[0], Key::Ed25519(_)));
        assert_eq!(keys[1], Key::Hmac(b"hi".to_vec()));
        let public = SigningKey::from_bytes(&seed).verifying_key();
        assert_eq!(
            keys[0].public_key().unwrap(),
            format!("whpk_{}", base64_encode(public.as_bytes()))
        );
        assert_eq!(keys[1].public_key(), None);
        assert_eq!(public_key_of(whsk.as_bytes()), keys[0].public_key().map(Ok));
        assert_eq!(public_key_of(b"whsec_aGk="), None);
        assert_eq!(public_key_of(b"whsk_aGk="), Some(Err(WhskError)));
        // Debug never shows key material.
        let shown = format!("{signing:?} {keys:?}");
        assert!(!shown.contains(&base64_encode(&seed)), "{shown}");
        assert!(!shown.contains("[1, 1"), "{shown}");
    }

    #[test]
    fn a_broken_whsk_is_named_by_position() {
        let signing = Signing::new(Scheme::StandardWebhooks, &["whsec_aGk=", "whsk_aGk="]);
        let err = signing.check().unwrap_err();
        assert_eq!(
            err,
            SignError::BadSecret {
                index: 1,
                source: KeyError::Whsk(WhskError)
            }
        );
        assert!(err.to_string().starts_with("signing secret #2:"));
        assert!(!err.to_string().contains("aGk="));
        // Under hmac-sha256 every secret is raw bytes, `whsk_` included.
        let raw = Signing::new(Scheme::HmacSha256, &["whsk_aGk="]);
        assert_eq!(raw.keys().unwrap(), &[Key::Hmac(b"whsk_aGk=".to_vec())]);
    }
}
