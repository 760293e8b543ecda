//! A trigger's `verify:` block compiled into the form the inbound checks
//! read (`inbound::verify`): header names parsed, secrets resolved to bytes,
//! an empty allow list told apart from none. Compiled once with the config,
//! so a request only reads them. The checks themselves live in
//! `inbound::verify`; only the shapes are here, where the config can build
//! them. `Debug` never shows a secret.

use std::fmt;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use super::runtime_trigger::{SignatureCheck, SignedTimestamp, Verify};
use super::{Encoding, SignaturePreset};

/// The header the generic `hmac-sha256` preset reads unless configured.
pub const DEFAULT_HMAC_HEADER: &str = "x-hmac-signature";

/// A trigger's `verify:` block, compiled. Every rule that is set must pass;
/// with none set, every request passes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VerifyRules {
    /// `signature: {preset, secret, tolerance}`.
    pub signature: Option<SignatureRule>,
    /// `ip_allow: [CIDR]`, matched against the client address (`inbound::verify`). An empty list
    /// allows nobody (fail closed), unlike `None`, which checks nothing.
    pub ip_allow: Option<Vec<IpNet>>,
    /// `bearer: SECRET`: accepted tokens (several for rotation).
    pub bearer: Option<Vec<Vec<u8>>>,
    /// `basic: {user, password}`.
    pub basic: Option<BasicAuth>,
}

/// A trigger's `verify.signature`: the scheme, its secrets and tolerance.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureRule {
    /// Which provider's scheme to check.
    pub preset: Preset,
    /// Secret bytes as configured (already resolved from env or file),
    /// newest first; any one matching passes. Empty means nothing can pass.
    pub secrets: Vec<Vec<u8>>,
    /// Largest allowed distance between the signed timestamp and our clock
    /// (timestamped presets only; `DEFAULT_TOLERANCE` is 5 minutes).
    pub tolerance: Duration,
    /// `ed25519`, `rsa-sha256`: where their signed timestamp is, if anywhere.
    pub timestamp: Option<SignedTimestamp>,
}

/// A signature scheme, one per provider (SPEC §3 `verify.signature.preset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// `hmac-sha256`: HMAC-SHA256 of the raw body in `header`, optionally
    /// after a literal `prefix` such as `sha256=`. Without a configured
    /// prefix, each signature may be bare or written `sha256=<sig>`, as
    /// hookyard's own signing writes it. Several comma-separated signatures
    /// are accepted (any matching passes), which is how hookyard itself
    /// signs with several secrets.
    HmacSha256 {
        /// Header carrying the signature (default `X-Hmac-Signature`).
        header: HeaderName,
        /// Hex (default) or base64.
        encoding: Encoding,
        /// Literal text before each signature, e.g. `sha256=`; when set it is
        /// required. When `None`, `sha256=` is optional.
        prefix: Option<String>,
    },
    /// `github`: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over
    /// `t.body`. Stripe's `whsec_…` secret is the raw key, as Stripe uses it.
    Stripe,
    /// `shopify`: `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// `slack`: `X-Slack-Signature: v0=<hex>` over `v0:<ts>:body`, with `ts`
    /// from `X-Slack-Request-Timestamp`.
    Slack,
    /// `standard-webhooks`: `webhook-signature: v1,<base64> [v1,<base64>…]`
    /// over `webhook-id.webhook-timestamp.body`; a `whsec_` secret is base64
    /// after the prefix.
    StandardWebhooks,
    /// `ed25519`: an Ed25519 signature of the raw body in `header` (several
    /// comma-separated accepted), checked with the sender's public key; no
    /// secrets. With no key (a config that did not compile one) nothing
    /// passes.
    Ed25519 {
        /// Header carrying the signature.
        header: HeaderName,
        /// Base64 (default) or hex.
        encoding: Encoding,
        /// The sender's public key.
        key: Option<ed25519_dalek::VerifyingKey>,
    },
    /// `rsa-sha256`: an RSA PKCS#1 v1.5 SHA-256 signature of the raw body in
    /// `header` (several comma-separated accepted), checked with the
    /// sender's RSA public key. Verification only: no RSA private key is
    /// ever held. With no key nothing passes.
    RsaSha256 {
        /// Header carrying the signature.
        header: HeaderName,
        /// Base64 (default) or hex.
        encoding: Encoding,
        /// The sender's public key.
        key: Option<rsa::RsaPublicKey>,
    },
    /// `highlevel`: `X-GHL-Signature`, base64 Ed25519 over the raw body,
    /// checked with `key`; when that header is absent and `legacy_key` is
    /// set (`legacy: true`), the legacy `X-WH-Signature`, base64 RSA-SHA256
    /// over the raw body. Then the body's `timestamp` must be within
    /// `tolerance` of our clock.
    Highlevel {
        /// HighLevel's Ed25519 public key.
        key: Option<ed25519_dalek::VerifyingKey>,
        /// HighLevel's legacy RSA public key, only while `legacy: true`.
        legacy_key: Option<rsa::RsaPublicKey>,
    },
}

/// `verify.basic`: the one user name and password a trigger accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// Expected user name.
    pub user: String,
    /// Expected password bytes (resolved from the secret).
    pub password: Vec<u8>,
}

/// Compile a trigger's `verify:` block into the rules inbound checks.
pub fn compile(v: &Verify) -> VerifyRules {
    VerifyRules {
        signature: v.signature.as_ref().map(signature_rule),
        // The config's empty list means "not configured".
        ip_allow: (!v.ip_allow.is_empty()).then(|| v.ip_allow.clone()),
        bearer: v.bearer.as_ref().map(|s| vec![s.expose().to_vec()]),
        basic: v.basic.as_ref().map(|b| BasicAuth {
            user: b.user.clone(),
            password: b.password.expose().to_vec(),
        }),
    }
}

fn signature_rule(check: &SignatureCheck) -> SignatureRule {
    let preset = match check.preset {
        SignaturePreset::HmacSha256 => Preset::HmacSha256 {
            // A header name the config accepted but HTTP does not cannot
            // match any request: fall back to the default so the check
            // still fails closed rather than panicking.
            header: HeaderName::try_from(check.header.to_ascii_lowercase())
                .unwrap_or_else(|_| HeaderName::from_static(DEFAULT_HMAC_HEADER)),
            encoding: check.encoding,
            prefix: (!check.prefix.is_empty()).then(|| check.prefix.clone()),
        },
        SignaturePreset::Github => Preset::Github,
        SignaturePreset::Stripe => Preset::Stripe,
        SignaturePreset::Shopify => Preset::Shopify,
        SignaturePreset::Slack => Preset::Slack,
        SignaturePreset::StandardWebhooks => Preset::StandardWebhooks,
        SignaturePreset::Ed25519 => Preset::Ed25519 {
            // As above: an unusable name fails closed (no such header).
            header: HeaderName::try_from(check.header.to_ascii_lowercase())
                .unwrap_or_else(|_| HeaderName::from_static("x-signature-ed25519")),
            encoding: check.encoding,
            key: check.public_key,
        },
        SignaturePreset::RsaSha256 => Preset::RsaSha256 {
            header: HeaderName::try_from(check.header.to_ascii_lowercase())
                .unwrap_or_else(|_| HeaderName::from_static("x-signature-rsa-sha256")),
            encoding: check.encoding,
            key: check.rsa_key.clone(),
        },
        SignaturePreset::Highlevel => Preset::Highlevel {
            key: check.public_key,
            legacy_key: check.rsa_key.clone(),
        },
    };
    SignatureRule {
        preset,
        secrets: check.secrets.iter().map(|s| s.expose().to_vec()).collect(),
        tolerance: check.tolerance,
        timestamp: check.timestamp.clone(),
    }
}

impl fmt::Debug for VerifyRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRules")
            .field("signature", &self.signature)
            .field("ip_allow", &self.ip_allow)
            .field("bearer", &self.bearer.as_ref().map(|b| b.len()))
            .field("basic", &self.basic)
            .finish()
    }
}

impl fmt::Debug for SignatureRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureRule")
            .field("preset", &self.preset)
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .field("timestamp", &self.timestamp.as_ref().map(|t| &t.shown))
            .finish()
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}
