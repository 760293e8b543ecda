//! Signature presets for inbound webhooks (SPEC §3), checked on the raw body
//! bytes before anything parses them.
//!
//! Each preset knows which headers its provider sends and what exactly was
//! signed; the math is in [`crate::model::mac`]. Several secrets may be configured
//! (rotation): any of them matching passes. Timestamped schemes (Stripe,
//! Slack, Standard Webhooks) also reject a timestamp further than `tolerance`
//! from `now`, in either direction, which is what stops a captured request
//! from being replayed later. `now` is an argument so tests need no clock.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use jiff::Timestamp;

use super::VerifyError;
use crate::config::KeySource;
use crate::model::mac::{any_key_matches, base64_decode, hex_decode, standard_webhooks_key};

mod ed25519;
mod highlevel;
mod rsa_sha256;
mod timestamp;

use timestamp::{check_age, check_timestamp, timestamp_text, timestamp_value};

/// How far a signed timestamp may be from our clock unless configured.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

pub use crate::config::verify_rules::{DEFAULT_HMAC_HEADER, Preset, SignatureRule};

/// How the generic `hmac-sha256` preset's signature is written: the config's
/// `encoding`. Hex digits are accepted in either case, base64 padded or not.
pub use crate::config::Encoding;

impl Preset {
    /// Every preset name accepted in config, for error messages and schema.
    pub const NAMES: [&'static str; 9] = [
        "hmac-sha256",
        "github",
        "stripe",
        "shopify",
        "slack",
        "standard-webhooks",
        "ed25519",
        "rsa-sha256",
        "highlevel",
    ];

    /// The preset called `name` in config, with default options
    /// (`hmac-sha256`: header `X-Hmac-Signature`, hex, no prefix; `ed25519`:
    /// header `X-Signature-Ed25519`, base64 and no key, so nothing passes
    /// until config gives one).
    pub fn from_name(name: &str) -> Option<Preset> {
        Some(match name {
            "hmac-sha256" => Preset::HmacSha256 {
                header: HeaderName::from_static(DEFAULT_HMAC_HEADER),
                encoding: Encoding::Hex,
                prefix: None,
            },
            "github" => Preset::Github,
            "stripe" => Preset::Stripe,
            "shopify" => Preset::Shopify,
            "slack" => Preset::Slack,
            "standard-webhooks" => Preset::StandardWebhooks,
            "ed25519" => Preset::Ed25519 {
                header: HeaderName::from_static("x-signature-ed25519"),
                encoding: Encoding::Base64,
                key: None,
            },
            "rsa-sha256" => Preset::RsaSha256 {
                header: HeaderName::from_static("x-signature-rsa-sha256"),
                encoding: Encoding::Base64,
                key: None,
            },
            "highlevel" => Preset::Highlevel {
                key: None,
                legacy_key: None,
            },
            _ => return None,
        })
    }

    /// The config name of this preset.
    pub fn name(&self) -> &'static str {
        match self {
            Preset::HmacSha256 { .. } => "hmac-sha256",
            Preset::Github => "github",
            Preset::Stripe => "stripe",
            Preset::Shopify => "shopify",
            Preset::Slack => "slack",
            Preset::StandardWebhooks => "standard-webhooks",
            Preset::Ed25519 { .. } => "ed25519",
            Preset::RsaSha256 { .. } => "rsa-sha256",
            Preset::Highlevel { .. } => "highlevel",
        }
    }

    /// Whether this scheme signs a timestamp (and so uses `tolerance`).
    pub fn is_timestamped(&self) -> bool {
        matches!(
            self,
            Preset::Stripe | Preset::Slack | Preset::StandardWebhooks | Preset::Highlevel { .. }
        )
    }
}

impl SignatureRule {
    /// A rule with the default tolerance.
    pub fn new(preset: Preset, secrets: Vec<Vec<u8>>) -> SignatureRule {
        SignatureRule {
            preset,
            secrets,
            tolerance: DEFAULT_TOLERANCE,
            timestamp: None,
        }
    }

    /// Check `body` as received with `headers` at time `now`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), VerifyError> {
        let check = |signed: &[u8]| {
            verify_signature(
                &self.preset,
                headers,
                signed,
                &self.secrets,
                self.tolerance,
                now,
            )
        };
        let Some(stamp) = &self.timestamp else {
            return check(body);
        };
        // The signature first: nothing unsigned is parsed.
        let signed = match &stamp.at {
            KeySource::Header(name) => {
                // No separator between the two, as Discord-style senders
                // sign. Digits could move between a header and a body that
                // starts with digits, but only within the same tolerance
                // window: the timestamp still bounds a replay.
                let text = header_text(headers, name)?;
                let mut signed = Vec::with_capacity(text.len() + body.len());
                signed.extend_from_slice(text.as_bytes());
                signed.extend_from_slice(body);
                check(&signed)?;
                timestamp_text(text).map_err(|problem| malformed(name, problem))?
            }
            KeySource::Path(path) => {
                check(body)?;
                let problem = |problem| VerifyError::BodyTimestamp {
                    field: stamp.shown.clone(),
                    problem,
                };
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|_| problem("cannot be read: the body is not JSON"))?;
                match path.query(&value).first() {
                    None | Some(serde_json::Value::Null) => return Err(problem("is missing")),
                    Some(v) => timestamp_value(v).map_err(problem)?,
                }
            }
        };
        check_age(&stamp.shown, signed, self.tolerance, now)
    }
}

/// Check the signature of `body` under `preset` with any of `secrets`.
///
/// Errors say which header was missing or malformed, that a timestamp was
/// out of tolerance, or that no signature matched; never a secret or the
/// expected signature.
pub fn verify_signature(
    preset: &Preset,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    // An empty key is never used: HMAC under "" is a signature anyone can
    // make. Config refuses empty secrets; this holds whatever the caller.
    // (`any_key_matches` skips empty keys, also ones derived from secrets.)
    // Ed25519 checks with a public key, not secrets.
    if let Preset::Ed25519 {
        header,
        encoding,
        key,
    } = preset
    {
        return ed25519::verify(headers, header.as_str(), *encoding, key.as_ref(), body);
    }
    // So does RSA, and HighLevel (Ed25519, or legacy RSA).
    if let Preset::RsaSha256 {
        header,
        encoding,
        key,
    } = preset
    {
        return rsa_sha256::verify(headers, header.as_str(), *encoding, key.as_ref(), body);
    }
    if let Preset::Highlevel { key, legacy_key } = preset {
        return highlevel::verify(
            headers,
            key.as_ref(),
            legacy_key.as_ref(),
            body,
            tolerance,
            now,
        );
    }
    if secrets.iter().all(Vec::is_empty) {
        return Err(VerifyError::NoSecret);
    }
    match preset {
        Preset::HmacSha256 {
            header,
            encoding,
            prefix,
        } => body_hmac(
            headers,
            header.as_str(),
            *encoding,
            match prefix {
                Some(p) => Prefix::Required(p),
                None => Prefix::Optional(HOOKYARD_PREFIX),
            },
            body,
            secrets,
        ),
        Preset::Github => body_hmac(
            headers,
            "x-hub-signature-256",
            Encoding::Hex,
            Prefix::Required("sha256="),
            body,
            secrets,
        ),
        Preset::Shopify => body_hmac(
            headers,
            "x-shopify-hmac-sha256",
            Encoding::Base64,
            Prefix::None,
            body,
            secrets,
        ),
        Preset::Stripe => stripe(headers, body, secrets, tolerance, now),
        Preset::Slack => slack(headers, body, secrets, tolerance, now),
        Preset::StandardWebhooks => standard_webhooks(headers, body, secrets, tolerance, now),
        // Checked above, before the secrets.
        Preset::Ed25519 { .. } | Preset::RsaSha256 { .. } | Preset::Highlevel { .. } => {
            Err(VerifyError::NoSecret)
        }
    }
}

/// The public-key presets' common check: the comma-separated signatures in
/// `header`, each written in `encoding`. `check` answers `None` for bytes
/// that are not a signature of the key's shape, else whether it verifies
/// the body. Every signature is checked (no early exit); any verifying
/// passes. `shape` says what a signature should look like when none does.
fn any_signature_verifies(
    headers: &HeaderMap,
    header: &str,
    encoding: Encoding,
    shape: &'static str,
    mut check: impl FnMut(&[u8]) -> Option<bool>,
) -> Result<(), VerifyError> {
    let value = header_text(headers, header)?;
    let mut seen = false;
    let mut verified = false;
    for part in value.split(',') {
        let part = part.trim();
        let decoded = match encoding {
            Encoding::Hex => hex_decode(part),
            Encoding::Base64 => base64_decode(part),
        };
        let Some(ok) = decoded.and_then(|bytes| check(&bytes)) else {
            continue;
        };
        seen = true;
        verified |= ok;
    }
    if !seen {
        return Err(malformed(header, shape));
    }
    if verified {
        Ok(())
    } else {
        Err(VerifyError::PublicKeyMismatch {
            header: header.to_owned(),
        })
    }
}

/// The value of header `name` as text; missing and non-text are errors.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, VerifyError> {
    let value = headers
        .get(name)
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?;
    let text = value
        .to_str()
        .map_err(|_| malformed(name, "contains characters other than visible ASCII"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(malformed(name, "is empty"));
    }
    Ok(text)
}

fn malformed(header: &str, problem: &'static str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.to_owned(),
        problem,
    }
}

/// What hookyard's own `hmac-sha256` signing writes before each signature
/// (SPEC §5), accepted by default so hookyard verifies hookyard.
pub const HOOKYARD_PREFIX: &str = "sha256=";

/// The text before each signature in a header.
#[derive(Debug, Clone, Copy)]
enum Prefix<'a> {
    /// Must be there (a configured `prefix`, GitHub's `sha256=`).
    Required(&'a str),
    /// May be there: the generic preset's default, which takes bare hex
    /// and hookyard's `sha256=<hex>` alike.
    Optional(&'a str),
    /// Never there (Shopify).
    None,
}

/// Schemes that sign the body alone: generic, GitHub, Shopify.
fn body_hmac(
    headers: &HeaderMap,
    header: &str,
    encoding: Encoding,
    prefix: Prefix<'_>,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<(), VerifyError> {
    let value = header_text(headers, header)?;
    let mut tags = Vec::new();
    // Commas are in neither the hex nor the base64 alphabet, so splitting on
    // them is safe; it accepts hookyard's own `sha256=<a>,sha256=<b>`.
    for part in value.split(',') {
        let part = part.trim();
        let digits = match prefix {
            Prefix::Required(prefix) => match part.strip_prefix(prefix) {
                Some(rest) => rest,
                None => continue,
            },
            Prefix::Optional(prefix) => part.strip_prefix(prefix).unwrap_or(part),
            Prefix::None => part,
        };
        let decoded = match encoding {
            Encoding::Hex => hex_decode(digits),
            Encoding::Base64 => base64_decode(digits),
        };
        if let Some(tag) = decoded {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        return Err(malformed(
            header,
            match (encoding, prefix) {
                (Encoding::Hex, Prefix::None) => "expected a hex signature",
                (Encoding::Hex, Prefix::Optional(_)) => {
                    "expected a hex signature, bare or as `sha256=<hex>` (several separated by commas)"
                }
                (Encoding::Hex, Prefix::Required(_)) => {
                    "expected the configured prefix then a hex signature"
                }
                (Encoding::Base64, Prefix::None) => "expected a base64 signature",
                (Encoding::Base64, Prefix::Optional(_)) => {
                    "expected a base64 signature, bare or after `sha256=`"
                }
                (Encoding::Base64, Prefix::Required(_)) => {
                    "expected the configured prefix then a base64 signature"
                }
            },
        ));
    }
    signed_by_any(secrets, &[body], &tags, header)
}

/// Stripe: `Stripe-Signature: t=…,v1=…` over `t.body`.
fn stripe(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    const HEADER: &str = "stripe-signature";
    let value = header_text(headers, HEADER)?;
    let mut timestamp = None;
    let mut tags = Vec::new();
    for item in value.split(',') {
        let Some((key, val)) = item.split_once('=') else {
            return Err(malformed(
                HEADER,
                "expected comma-separated key=value pairs",
            ));
        };
        match key.trim() {
            "t" if timestamp.is_some() => {
                return Err(malformed(HEADER, "has more than one t= timestamp"));
            }
            "t" => timestamp = Some(val.trim()),
            // v0 (test-mode legacy) and unknown schemes are ignored, as
            // Stripe's own libraries do.
            "v1" => tags.extend(hex_decode(val.trim())),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(malformed(HEADER, "has no t= timestamp"));
    };
    if tags.is_empty() {
        return Err(malformed(HEADER, "has no v1= hex signature"));
    }
    check_timestamp(HEADER, timestamp, tolerance, now)?;
    signed_by_any(secrets, &[timestamp.as_bytes(), b".", body], &tags, HEADER)
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:<ts>:body`.
fn slack(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    const SIGNATURE: &str = "x-slack-signature";
    const TIMESTAMP: &str = "x-slack-request-timestamp";
    let signature = header_text(headers, SIGNATURE)?;
    let timestamp = header_text(headers, TIMESTAMP)?;
    let tag = signature
        .strip_prefix("v0=")
        .and_then(hex_decode)
        .ok_or_else(|| malformed(SIGNATURE, "expected v0=<hex>"))?;
    check_timestamp(TIMESTAMP, timestamp, tolerance, now)?;
    let parts: [&[u8]; 4] = [b"v0:", timestamp.as_bytes(), b":", body];
    signed_by_any(secrets, &parts, &[tag], SIGNATURE)
}

/// Standard Webhooks: `webhook-signature: v1,<b64> …` over `id.ts.body`.
fn standard_webhooks(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    const ID: &str = "webhook-id";
    const TIMESTAMP: &str = "webhook-timestamp";
    const SIGNATURE: &str = "webhook-signature";
    let id = header_text(headers, ID)?;
    let timestamp = header_text(headers, TIMESTAMP)?;
    let signature = header_text(headers, SIGNATURE)?;
    // Other versions (`v1a,` asymmetric, future ones) are skipped, as the
    // spec asks: a sender may send several kinds side by side.
    let tags: Vec<Vec<u8>> = signature
        .split_ascii_whitespace()
        .filter_map(|item| item.strip_prefix("v1,"))
        .filter_map(base64_decode)
        .collect();
    if tags.is_empty() {
        return Err(malformed(SIGNATURE, "has no v1,<base64> signature"));
    }
    check_timestamp(TIMESTAMP, timestamp, tolerance, now)?;
    // A `whsec_` secret that is not base64 cannot match anything; config
    // load rejects it earlier with `standard_webhooks_key`.
    let keys: Vec<Vec<u8>> = secrets
        .iter()
        .filter_map(|secret| standard_webhooks_key(secret).ok())
        .collect();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    signed_by_any(&keys, &parts, &tags, SIGNATURE)
}

/// Pass when any of `secrets` signs `parts` into any of `tags`; otherwise a
/// mismatch reported on `header`, the one the sender should check.
fn signed_by_any(
    secrets: &[Vec<u8>],
    parts: &[&[u8]],
    tags: &[Vec<u8>],
    header: &str,
) -> Result<(), VerifyError> {
    if any_key_matches(secrets, parts, tags) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch {
            header: header.to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
#[path = "signature_tests.rs"]
mod tests;
