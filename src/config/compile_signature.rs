//! Compile a trigger's `verify.signature` (see `compile_trigger.rs`): fill
//! in the preset's header, encoding and prefix, resolve the secrets, and for
//! the public-key presets (`ed25519`, `rsa-sha256`, `highlevel`) parse the
//! inline keys (not secrets). Every mistake is an error with its position; a
//! check that ends up with no secret or key fails closed at request time,
//! never open.

use std::time::Duration;

use super::error::Pos;
use super::leaf::Ctx;
use super::node::{Sp, StrOr};
use super::raw::*;
use super::runtime::*;

/// HighLevel's current signature header (Ed25519, base64).
pub const HIGHLEVEL_HEADER: &str = "X-GHL-Signature";
/// HighLevel's legacy signature header (RSA-SHA256, base64).
pub const HIGHLEVEL_LEGACY_HEADER: &str = "X-WH-Signature";

/// `timestamp:` of an `ed25519` or `rsa-sha256` check: `header:NAME` or a
/// JSONPath, the same two forms `idempotency_key` takes.
fn signed_timestamp(id: &str, s: &RawSignature, ctx: &mut Ctx<'_>) -> Option<SignedTimestamp> {
    let raw = s.timestamp.as_ref()?;
    if !matches!(
        s.preset,
        SignaturePreset::Ed25519 | SignaturePreset::RsaSha256
    ) {
        let name = preset_name(s.preset);
        let why = if s.preset == SignaturePreset::Highlevel {
            "`preset: highlevel` always reads the body's `timestamp`"
        } else {
            "this preset fixes where its timestamp is"
        };
        ctx.error(
            &raw.pos,
            format!("trigger `{id}`: `timestamp` only applies to `preset: ed25519` and `rsa-sha256`; {why} (`preset: {name}`)"),
        );
        return None;
    }
    let at = if let Some(h) = raw.value.strip_prefix("header:") {
        let h = h.trim();
        if h.is_empty() || http::HeaderName::try_from(h).is_err() {
            ctx.error(
                &raw.pos,
                format!("trigger `{id}`: `timestamp: header:…` needs a valid header name"),
            );
            return None;
        }
        KeySource::Header(h.to_ascii_lowercase())
    } else if raw.value.starts_with('$') {
        KeySource::Path(ctx.jsonpath(raw)?)
    } else {
        ctx.error(
            &raw.pos,
            format!("trigger `{id}`: invalid `timestamp` `{}`: write a JSONPath into the body like `$.timestamp`, or `header:X-Signature-Timestamp`", raw.value),
        );
        return None;
    };
    Some(SignedTimestamp {
        at,
        shown: raw.value.trim().to_owned(),
    })
}

/// Compile `s`, the `verify.signature` of trigger `id` at `pos`.
pub(super) fn signature(
    id: &str,
    s: &RawSignature,
    pos: &Pos,
    ctx: &mut Ctx<'_>,
) -> SignatureCheck {
    use SignaturePreset as P;
    let name = preset_name(s.preset);
    // The position of the first secret name (or the key), else the trigger.
    let at = s
        .secret
        .as_ref()
        .and_then(|list| list.0.first().map(|p| p.pos.clone()))
        .or_else(|| s.public_key.as_ref().map(|k| k.pos.clone()))
        .unwrap_or_else(|| pos.clone());
    let header_encoding = matches!(s.preset, P::HmacSha256 | P::Ed25519 | P::RsaSha256);
    if !header_encoding && (s.header.is_some() || s.encoding.is_some()) {
        ctx.error(&at, format!("trigger `{id}`: `header` and `encoding` only apply to `preset: hmac-sha256`, `ed25519` and `rsa-sha256`; `preset: {name}` fixes them"));
    }
    if s.preset != P::HmacSha256 && s.prefix.is_some() {
        ctx.error(&at, format!("trigger `{id}`: `prefix` only applies to `preset: hmac-sha256`; `preset: {name}` fixes it"));
    }
    if s.preset != P::Highlevel {
        if let Some(k) = &s.legacy_public_key {
            ctx.error(
                &k.pos,
                format!("trigger `{id}`: `legacy_public_key` only applies to `preset: highlevel`"),
            );
        }
        if let Some(l) = &s.legacy {
            ctx.error(
                &l.pos,
                format!("trigger `{id}`: `legacy` only applies to `preset: highlevel`"),
            );
        }
    }
    let (header, encoding, prefix) = match s.preset {
        P::HmacSha256 => ("X-Hmac-Signature", Encoding::Hex, ""),
        P::Github => ("X-Hub-Signature-256", Encoding::Hex, "sha256="),
        P::Stripe => ("Stripe-Signature", Encoding::Hex, ""),
        P::Shopify => ("X-Shopify-Hmac-Sha256", Encoding::Base64, ""),
        P::Slack => ("X-Slack-Signature", Encoding::Hex, "v0="),
        P::StandardWebhooks => ("webhook-signature", Encoding::Base64, "v1,"),
        P::Ed25519 | P::RsaSha256 => ("", Encoding::Base64, ""),
        P::Highlevel => (HIGHLEVEL_HEADER, Encoding::Base64, ""),
    };
    let mut public_key = None;
    let mut rsa_key = None;
    let mut secrets = Vec::new();
    match s.preset {
        P::Ed25519 | P::RsaSha256 | P::Highlevel => {
            if s.secret.is_some() {
                ctx.error(&at, format!("trigger `{id}`: `preset: {name}` checks with `public_key`, not `secret`: remove `secret` (the sender keeps the private key)"));
            }
            if s.preset != P::Highlevel && s.header.as_deref().is_none_or(str::is_empty) {
                ctx.error(&at, format!("trigger `{id}`: `preset: {name}` needs `header`: the request header carrying the signature"));
            }
            let kind = if s.preset == P::RsaSha256 {
                "RSA"
            } else {
                "Ed25519"
            };
            let text = key_text(s.public_key.as_ref(), ctx);
            match text.as_ref() {
                // Given, but unreadable (reported) or not read (--no-env).
                None if s.public_key.is_some() => {}
                // No default for `highlevel`: no public page publishing
                // HighLevel's key could be found and cited (SPEC §14).
                None => ctx.error(&at, format!("trigger `{id}`: `preset: {name}` needs `public_key`: the sender's {kind} public key (PEM or base64, inline)")),
                Some(text) if ctx.skip(text) => {}
                Some(text) if s.preset == P::RsaSha256 => match crate::model::mac::rsa_public_key(&text.value) {
                    Ok(key) => rsa_key = Some(key),
                    Err(e) => ctx.error(&text.pos, format!("trigger `{id}`: `public_key`: {e}")),
                },
                Some(text) => match crate::model::mac::ed25519_public_key(&text.value) {
                    Ok(key) => public_key = Some(key),
                    Err(e) => ctx.error(&text.pos, format!("trigger `{id}`: `public_key`: {e}")),
                },
            }
            if s.preset == P::Highlevel {
                rsa_key = highlevel_legacy(id, s, ctx);
            }
        }
        _ => {
            if let Some(k) = &s.public_key {
                ctx.error(&k.pos, format!("trigger `{id}`: `public_key` only applies to `preset: ed25519`, `rsa-sha256` and `highlevel`"));
            }
            match &s.secret {
                Some(list) => secrets = ctx.secret_list(list),
                None => ctx.error(&at, format!("trigger `{id}`: this signature preset needs `secret`: the name of the shared signing secret under `secrets:`")),
            }
        }
    }
    let timestamp = signed_timestamp(id, s, ctx);
    SignatureCheck {
        timestamp,
        preset: s.preset,
        secrets,
        header: s.header.clone().unwrap_or_else(|| header.to_owned()),
        encoding: s.encoding.unwrap_or(encoding),
        prefix: s.prefix.clone().unwrap_or_else(|| prefix.to_owned()),
        tolerance: ctx.duration(&s.tolerance, Duration::from_secs(300)),
        public_key,
        rsa_key,
    }
}

/// `highlevel`'s legacy RSA key: parsed whenever given (so a typo is caught
/// before `legacy` is switched on), kept only while `legacy: true`.
fn highlevel_legacy(id: &str, s: &RawSignature, ctx: &mut Ctx<'_>) -> Option<rsa::RsaPublicKey> {
    let legacy = s.legacy.as_ref().is_some_and(|l| l.value);
    let key = match key_text(s.legacy_public_key.as_ref(), ctx).as_ref() {
        // Given, but unreadable (reported) or not read (--no-env).
        None if s.legacy_public_key.is_some() => None,
        None => {
            if let Some(l) = s.legacy.as_ref().filter(|l| l.value) {
                ctx.error(&l.pos, format!("trigger `{id}`: `legacy: true` needs `legacy_public_key`: the RSA public key that verifies `{HIGHLEVEL_LEGACY_HEADER}` (PEM or base64 DER)"));
            }
            None
        }
        Some(text) if ctx.skip(text) => None,
        Some(text) => match crate::model::mac::rsa_public_key(&text.value) {
            Ok(key) => Some(key),
            Err(e) => {
                ctx.error(
                    &text.pos,
                    format!("trigger `{id}`: `legacy_public_key`: {e}"),
                );
                None
            }
        },
    };
    key.filter(|_| legacy)
}

/// A public key's text: inline, or the value of the secret it names, at
/// the key's position. `None` when it is absent, or a secret that is
/// unknown (reported), not text (reported) or not read (`--no-env`).
fn key_text(raw: Option<&Sp<StrOr<RawSecretRef>>>, ctx: &mut Ctx<'_>) -> Option<Sp<String>> {
    let raw = raw?;
    let value = match &raw.value {
        StrOr::Str(text) => text.clone(),
        StrOr::Map(r) => {
            let secret = ctx.secret(&r.secret)?;
            if ctx.no_env {
                return None;
            }
            let Some(text) = secret.expose_str() else {
                ctx.error(
                    &raw.pos,
                    format!(
                        "the secret `{}` is not UTF-8 text: a public key is PEM or base64",
                        secret.name
                    ),
                );
                return None;
            };
            text.to_owned()
        }
    };
    Some(Sp {
        value,
        pos: raw.pos.clone(),
    })
}

/// The config spelling of `preset`.
fn preset_name(preset: SignaturePreset) -> &'static str {
    match preset {
        SignaturePreset::HmacSha256 => "hmac-sha256",
        SignaturePreset::Github => "github",
        SignaturePreset::Stripe => "stripe",
        SignaturePreset::Shopify => "shopify",
        SignaturePreset::Slack => "slack",
        SignaturePreset::StandardWebhooks => "standard-webhooks",
        SignaturePreset::Ed25519 => "ed25519",
        SignaturePreset::RsaSha256 => "rsa-sha256",
        SignaturePreset::Highlevel => "highlevel",
    }
}
