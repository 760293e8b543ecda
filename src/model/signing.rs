//! A target's signing scheme and secrets, compiled once when the config (or
//! an API subscription) is loaded, so every delivery borrows them instead of
//! copying them. The signing itself is `deliver::sign`; the HMAC math is
//! [`super::mac`].

use std::borrow::Cow;

use super::mac::{WhsecError, standard_webhooks_key};

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

/// A target's `signing:` block, compiled.
#[derive(Clone, PartialEq, Eq)]
pub struct Signing {
    /// Which scheme to sign with.
    pub scheme: Scheme,
    /// Secret bytes as configured, newest first (that is the order the
    /// signatures are sent in).
    pub secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signing {
    /// Never the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
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
    /// The secret at `index` (0 = first listed) is a broken `whsec_` value.
    #[error("signing secret #{number}: {source}", number = .index + 1)]
    BadSecret {
        /// Position of the secret in the configured list, from 0.
        index: usize,
        /// What is wrong with it.
        source: WhsecError,
    },
}

impl Signing {
    /// Check the secrets once, at config load: same errors as [`sign`].
    pub fn check(&self) -> Result<(), SignError> {
        self.keys().map(|_| ())
    }

    /// The HMAC key for each secret, in order (a `hmac-sha256` secret is
    /// its own key and is borrowed, not copied).
    pub fn keys(&self) -> Result<Vec<Cow<'_, [u8]>>, SignError> {
        // A zero-length key is never used: anyone could sign with it.
        if self.secrets.is_empty() || self.secrets.iter().any(Vec::is_empty) {
            return Err(SignError::NoSecret);
        }
        match self.scheme {
            Scheme::HmacSha256 => Ok(self.secrets.iter().map(|s| Cow::from(&s[..])).collect()),
            Scheme::StandardWebhooks => self
                .secrets
                .iter()
                .enumerate()
                .map(|(index, secret)| {
                    standard_webhooks_key(secret)
                        .map(Cow::Owned)
                        .map_err(|source| SignError::BadSecret { index, source })
                })
                .collect(),
        }
    }
}
